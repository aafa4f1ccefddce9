"""A faithful local chest pain center data platform (CPC 2.1) for tests and for trying the upload
without the real one: `greenchannel registry-sim --port N --app-id A --secret S`.

It does what registries.md A.1 documents the platform doing, from the wire up:
- checks the `time`, `appId`, `requestId` and `sign` headers: a wrong app id, a wrong signature
  or a `time` outside its window (`--max-skew-s`) is HTTP 403 `{"ResultCode":"403","Message":
  "签名无效"}`; its `Date` header carries its own clock (`--clock-offset-s` skews it);
- checks the required fields of the blocks (A.4 "Req", the arrival mode's fields, the
  outcome block once `STATUS` is 2 (complete) — an open case has no outcome yet), plus any
  `--require Block.FIELD` (a platform whose rules moved on), and answers HTTP 500 with
  `Error` in its `块:消息;` style;
- answers a first save with a new `Data.REGISTER_ID`, an update (REGISTER_ID sent) with the same
  id, and an unknown REGISTER_ID with a 500;
- keeps its records in `--store FILE` (JSON) if given, so a restarted platform still knows them.

Test hooks under `/_sim/` (not part of the platform): `GET /_sim/records`, `GET /_sim/requests`,
and `POST /_sim/faults {"status": 503, "count": 2, "error": null}` to answer the next requests
with a transient failure (`{"slow_s": 40}`: store the record, answer too late).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email.utils
import hmac
import json
import os
import threading
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from adapters.registry.cpc import BEIJING, TIME_FORMAT
from pathways.registry_upload.platform import sign

__all__ = ["Platform", "build_app", "register", "run", "serve_platform"]

BLOCK_NAMES = {
    "RegisterInfo": "人口基本信息",
    "FirstAIDInfo": "急救信息",
    "TreatmentInfo": "胸痛诊疗",
    "TreatmentPciInfo": "导管室",
    "OutComeInfo": "患者转归",
}
# A.4 "Req": always required, with the label the platform's messages use.
REQUIRED: dict[str, dict[str, str]] = {
    "RegisterInfo": {
        "HOSPITAL_ID": "医院ID",
        "NAME": "姓名",
        "GENDER": "性别",
        "AGE": "年龄",
        "CREDENTIALS_TYPE": "证件类型",
    },
    "FirstAIDInfo": {
        "ATTACK_TIME": "发病时间",
        "CONSCIOUSNESS_TYPE": "意识",
        "RESPIRATION_RATE": "呼吸",
        "PULSE_RATE": "脉搏",
        "HEART_RATE": "心率",
        "BLOOD_PRESSURE": "血压",
        "DISTRESS_CASE": "病情评估",
        "CW_COMING_WAY_CODE": "来院方式",
    },
    "TreatmentInfo": {
        "HAS_ECG_IMAGE": "心电图",
        "REMOTE_ECG_TRANSMISSION": "远程心电图传输",
        "IS_CTNT": "肌钙蛋白",
        "IS_NOTICE_IMCD": "心内科会诊",
        "CP_DIAGNOSIS_CODE": "初步诊断",
    },
}
# Required by arrival mode (FirstAIDInfo.CW_COMING_WAY_CODE).
BY_ARRIVAL_MODE: dict[str, dict[str, str]] = {
    "1": {
        "CW_120_HELP_TIME": "呼救时间",
        "CW_120_FIRST_MC_TIME": "首次医疗接触",
        "CW_120_ARRIVED_HOSPITAL_TIME": "到达医院大门",
    },
    "2": {
        "CW_ZY_TRANS_TYPE": "转院类型",
        "CW_ZY_FIRST_MC_TIME": "首次医疗接触",
        "CW_ZY_ARRIVED_HOSPITAL_TIME": "到达本院大门",
    },
    "3": {
        "CW_ZXLY_ARRIVED_HOSPITAL_TIME": "到达本院大门",
        "CW_ZXLY_FIRST_MC_TIME": "首次医疗接触",
    },
    "4": {
        "CW_YNFB_ATTACK_DEPARTMENT": "发病科室",
        "CW_YNFB_FIRST_MC_TIME": "首次医疗接触",
    },
}
# Required once the record is complete (RegisterInfo.STATUS 2).
WHEN_COMPLETE: dict[str, str] = {
    "CP_DIAGNOSIS_CODE": "出院诊断",
    "DIAGNOSIS_TIME": "确诊时间",
    "IS_HEART_FAILURE": "院内新发心衰",
    "OUTCOME_CODE": "患者转归",
}


def _present(value: Any) -> bool:
    return value not in (None, "") and value != [] and value != {}


class Platform:
    """The platform's state: its clock, its credentials, its records and the faults to play."""

    def __init__(
        self,
        *,
        app_id: str,
        secret: str,
        max_skew_s: float = 300.0,
        clock_offset_s: float = 0.0,
        store: Path | None = None,
        extra_required: list[str] | None = None,
    ) -> None:
        self.app_id = app_id
        self.secret = secret
        self.max_skew_s = max_skew_s
        self.clock_offset_s = clock_offset_s
        self.store = store
        self.extra_required = list(extra_required or [])
        self.records: dict[str, dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []  # what arrived, headers and outcome
        # For the next requests: {"status": 503, "error": None} answers that instead;
        # {"slow_s": 5} saves the record, then answers only after that long (a lost answer).
        self.faults: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        if store is not None and store.is_file():
            self.records = json.loads(store.read_text(encoding="utf-8"))

    def now(self) -> datetime:
        return datetime.now(BEIJING) + timedelta(seconds=self.clock_offset_s)

    def _save(self) -> None:
        if self.store is None:
            return
        temporary = self.store.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.records, ensure_ascii=False), encoding="utf-8")
        os.replace(temporary, self.store)

    def check_headers(self, headers: Any) -> str | None:
        """Why the request is refused (403), or None."""
        time, app_id = headers.get("time"), headers.get("appId")
        request_id, signature = headers.get("requestId"), headers.get("sign")
        if not (time and app_id and request_id and signature):
            return "missing header"
        if app_id != self.app_id:
            return "unknown appId"
        try:
            sent = datetime.strptime(time, TIME_FORMAT).replace(tzinfo=BEIJING)
        except ValueError:
            return "time is not yyyyMMddHHmmss"
        if abs((self.now() - sent).total_seconds()) > self.max_skew_s:
            return "time outside the window"
        if not hmac.compare_digest(sign(self.secret, time, request_id), signature.lower()):
            return "bad signature"
        return None

    def problems(self, record: dict[str, Any]) -> list[str]:
        """The platform's validation messages (`块:消息`) for a record."""
        found: list[str] = []

        def need(block: str, field: str, label: str) -> None:
            content = record.get(block)
            if not isinstance(content, dict) or not _present(content.get(field)):
                found.append(f"{BLOCK_NAMES.get(block, block)}:{label}必填")

        for block, fields in REQUIRED.items():
            for field, label in fields.items():
                need(block, field, label)
        register = record.get("RegisterInfo") or {}
        if str(register.get("CREDENTIALS_TYPE", "0")) not in ("0", ""):
            need("RegisterInfo", "IDCARD", "证件号")
        first_aid = record.get("FirstAIDInfo") or {}
        mode = str(first_aid.get("CW_COMING_WAY_CODE") or "")
        for field, label in BY_ARRIVAL_MODE.get(mode, {}).items():
            need("FirstAIDInfo", field, label)
        if str(register.get("STATUS")) == "2":
            for field, label in WHEN_COMPLETE.items():
                need("OutComeInfo", field, label)
        for path in self.extra_required:
            block, _, field = path.partition(".")
            need(block, field, field)
        return found

    def save(self, record: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Store a record: (HTTP status, answer)."""
        register = record.get("RegisterInfo")
        problems = self.problems(record)
        register_id = register.get("REGISTER_ID") if isinstance(register, dict) else None
        with self._lock:
            if register_id and register_id not in self.records:
                problems.append("人口基本信息:注册编号不存在")
            if problems:
                return 500, _answer("500", "操作失败", "".join(f"{p};" for p in problems))
            register_id = register_id or str(uuid.uuid4())
            self.records[register_id] = record
            self._save()
        return 200, _answer("200", "操作成功", None, {"REGISTER_ID": register_id})


def _answer(code: str, message: str, error: Any, data: Any = None) -> dict[str, Any]:
    return {"ResultCode": code, "Message": message, "Error": error, "Data": data}


def build_app(platform: Platform) -> FastAPI:
    """The platform's HTTP interface (and the `/_sim/` test hooks)."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    def reply(status: int, body: dict[str, Any]) -> Response:
        # The platform's own clock in the Date header: what a client compares its time with.
        date = email.utils.format_datetime(platform.now(), usegmt=False)
        return JSONResponse(body, status_code=status, headers={"Date": date})

    @app.post("/Services/{version}/ChestPainCenter")
    async def chest_pain_center(version: str, request: Request) -> Response:
        seen: dict[str, Any] = {
            "requestId": request.headers.get("requestId"),
            "time": request.headers.get("time"),
            "version": version,
        }
        platform.requests.append(seen)
        refused = platform.check_headers(request.headers)
        if refused is not None:
            seen["status"] = 403
            seen["why"] = refused
            return reply(403, _answer("403", "签名无效", None))
        fault = platform.faults.pop(0) if platform.faults else {}
        if "status" in fault:
            status = int(fault["status"])
            seen["status"] = status
            return reply(status, _answer(str(status), "服务器错误", fault.get("error")))
        try:
            record = json.loads(await request.body())
        except ValueError:
            record = None
        if not isinstance(record, dict):
            seen["status"] = 500
            return reply(500, _answer("500", "操作失败", "请求参数:格式错误;"))
        status, body = platform.save(record)
        seen["status"] = status
        if "slow_s" in fault:
            await asyncio.sleep(float(fault["slow_s"]))
        return reply(status, body)

    @app.get("/_sim/records")
    async def records() -> dict[str, Any]:
        return platform.records

    @app.get("/_sim/requests")
    async def requests() -> list[dict[str, Any]]:
        return platform.requests

    @app.post("/_sim/faults")
    async def faults(request: Request) -> dict[str, Any]:
        asked = dict(await request.json())
        count = int(asked.pop("count", 1))
        platform.faults += [asked] * count
        return {"queued_faults": len(platform.faults)}

    return app


def register(parser: argparse.ArgumentParser) -> None:
    """a local chest pain center data platform (CPC 2.1) to upload to in tests and trials"""
    parser.description = (
        "Serve a faithful local chest pain center data platform: signed headers, clock window,\n"
        "required fields, record ids, and the platform's 403 / 500 answers."
    )
    parser.epilog = (
        "example:\n  greenchannel registry-sim --port 8601 --app-id demo-app "
        "--secret greenchannel-demo-secret-0001 --store var/cpc-sim.json\n\n"
        "Then point the registry-cpc credentials at base_url http://127.0.0.1:8601."
    )
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--secret", required=True, help="the secretKey it checks signatures with")
    parser.add_argument("--max-skew-s", type=float, default=300.0, help="time window (s)")
    parser.add_argument(
        "--clock-offset-s", type=float, default=0.0, help="run the platform's clock off by this"
    )
    parser.add_argument("--store", type=Path, help="keep records in this JSON file")
    parser.add_argument(
        "--require",
        action="append",
        default=[],
        metavar="Block.FIELD",
        help="also require this field (a platform whose rules moved on)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted."""
    platform = Platform(
        app_id=args.app_id,
        secret=args.secret,
        max_skew_s=args.max_skew_s,
        clock_offset_s=args.clock_offset_s,
        store=args.store,
        extra_required=args.require,
    )
    print(f"registry-sim: CPC platform on http://{args.host}:{args.port}", flush=True)
    asyncio.run(_server(platform, args.host, args.port).serve())
    return 0


def _server(platform: Platform, host: str, port: int) -> Any:
    import uvicorn

    return uvicorn.Server(
        uvicorn.Config(
            build_app(platform),
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            date_header=False,  # ours, from the platform's (possibly skewed) clock
        )
    )


@contextlib.asynccontextmanager
async def serve_platform(
    platform: Platform, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[str]:
    """Serve the platform with uvicorn until the block ends (requests in flight finish);
    yields its base URL. Port 0 picks a free one."""
    server = _server(platform, host, port)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # raises what stopped it (port in use)
                raise OSError(f"registry-sim could not listen on {host}:{port}")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        await task
