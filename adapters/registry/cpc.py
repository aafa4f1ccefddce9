"""The chest pain center data platform (中国胸痛中心数据填报平台, CPC 2.1): request signing and the
`registry-cpc` destination connector that uploads one case's record per message.

Transport (registries.md A.1): `POST {base_url}/Services/{version}/ChestPainCenter`, JSON body
`{"RegisterInfo": …, "FirstAIDInfo": …, …}`, headers `time` (Beijing time yyyyMMddHHmmss),
`appId`, `requestId` (a new UUID per attempt) and `sign` = lowercase hex HMAC-SHA256 with the
secret key over upper(time + requestId). A first save has no REGISTER_ID and gets one back; every
later save sends it.

How answers are classed (the engine's delivery errors do the queueing and the backoff):

| answer | case state | engine |
|---|---|---|
| 200 with `Data.REGISTER_ID` | accepted, id kept | sent |
| 403 | rejected: `clock` if its Date differs from our clock, else `signature` | ERROR |
| 500 with `Error` text | rejected, the `块:消息;` reasons on the case | ERROR, no retry |
| 500 with empty `Error`, 502/503/504, timeout, refused | retry_wait | retried with backoff |
| the `dead_letter_after`-th transient failure | dead_letter | ERROR |

Credentials (base URL, app id, secret key, hospital id) come from the environment
(`GREENCHANNEL_REGISTRY_CPC_*`) or a secrets file outside the repository, read again at every
attempt so a rotated key counts without a redeploy.
"""

from __future__ import annotations

import email.utils
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.engine import Connection

from engine.connectors import ConnectorContext, Delivered, Outbound
from engine.errors import DeliveryError, RejectedDeliveryError, RetryableDeliveryError
from pathways.registry_upload.platform import (
    CpcCredentials,
    CredentialsMissing,
    load_credentials,
    sign,
)
from pathways.registry_upload.workflow import Attempt, Problem, mark_sending, record_attempt

__all__ = [
    "BEIJING",
    "clock_offset_s",
    "CpcCredentials",
    "CpcDestination",
    "CpcDestinationConfig",
    "CpcDestinationFactory",
    "load_credentials",
    "mask_record",
    "parse_envelope",
    "parse_errors",
    "request_headers",
    "sign",
    "signing_time",
]

log = logging.getLogger(__name__)

BEIJING = timezone(timedelta(hours=8), "CST")
TIME_FORMAT = "%Y%m%d%H%M%S"
_EMPTY_ERRORS = (None, "", "null", "NULL", "None")
RESPONSE_MAX_BYTES = 1024 * 1024


def signing_time(now: datetime) -> str:
    """The `time` header: Beijing local time, yyyyMMddHHmmss."""
    if now.tzinfo is None:
        raise ValueError("signing_time needs an aware datetime")
    return now.astimezone(BEIJING).strftime(TIME_FORMAT)


def request_headers(
    *, app_id: str, secret_key: str, now: datetime, request_id: str | None = None
) -> dict[str, str]:
    """The four signed headers of one attempt (a new requestId unless one is given)."""
    time = signing_time(now)
    rid = request_id or str(uuid.uuid4())
    return {
        "time": time,
        "appId": app_id,
        "requestId": rid,
        "sign": sign(secret_key, time, rid),
        "Content-Type": "application/json; charset=utf-8",
    }


def parse_errors(error: Any) -> tuple[Problem, ...]:
    """The platform's `Error` text (`患者转归:并发症必填;基本信息:姓名必填;`) as problems;
    None, "null" and "" are no errors at all."""
    if error in _EMPTY_ERRORS or not isinstance(error, str):
        return ()
    problems = []
    for part in error.replace("；", ";").split(";"):
        text = part.strip()
        if not text:
            continue
        block, colon, message = text.replace("：", ":").partition(":")
        problems.append(
            Problem(block.strip(), f"{block.strip()}:{message.strip()};")
            if colon
            else Problem("", f"{text};")
        )
    return tuple(problems)


def _mask_text(value: Any, keep_start: int, keep_end: int) -> Any:
    if not isinstance(value, str) or not value:
        return value
    if len(value) <= keep_start + keep_end:
        return value[:1] + "*" * (len(value) - 1)
    end = value[len(value) - keep_end :]  # value[-0:] would be all of it
    return value[:keep_start] + "*" * (len(value) - keep_start - keep_end) + end


def mask_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record with the patient's name, ID number and phone masked (张**, 1101…1234,
    138****5678), for anything kept outside the audited journal."""
    masked = json.loads(json.dumps(record))
    register = masked.get("RegisterInfo")
    if isinstance(register, dict):
        register["NAME"] = _mask_text(register.get("NAME"), 1, 0)
        register["IDCARD"] = _mask_text(register.get("IDCARD"), 4, 4)
        register["CONTACT_PHONE"] = _mask_text(register.get("CONTACT_PHONE"), 3, 4)
    return {k: v for k, v in masked.items()}


class CpcDestinationConfig(BaseModel):
    """Uploads each message of the channel (one case's record, queued by the registry
    workflow) to the chest pain center data platform, signed, and reports the outcome onto the
    case and into the upload log."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["registry-cpc"] = Field(description="Always `registry-cpc`.")
    credentials_file: str = Field(
        "secrets/registry-cpc.yaml",
        description="YAML with base_url, version, app_id, secret_key, hospital_id, relative to "
        "the data dir; GREENCHANNEL_REGISTRY_CPC_<KEY> variables take precedence. Read at every "
        "attempt, so a rotated key needs no redeploy.",
    )
    timeout_s: float = Field(30.0, gt=0, description="Deadline of one request, connect to reply.")
    dead_letter_after: int = Field(
        8,
        ge=1,
        description="Transient failures (network, timeout, 5xx without validation text) of one "
        "upload before it goes to dead_letter (the message to ERROR) for registry staff.",
    )
    clock_tolerance_s: float = Field(
        30.0,
        gt=0,
        description="On a 403, a difference between the platform's Date header and our clock "
        "larger than this is reported as a clock problem, not a wrong key.",
    )
    log_bodies: Literal["full", "masked", "none"] = Field(
        "full",
        description="What the upload log keeps of each request body: all of it, with name, ID "
        "number and phone masked, or nothing (the payload hash is always kept).",
    )


@dataclass(frozen=True, slots=True)
class _Envelope:
    case_id: str
    registry: str
    spec_version: str | None
    mapping_version: str | None
    payload_hash: str | None
    triggered_by: str
    record: dict[str, Any]


def parse_envelope(payload: bytes) -> _Envelope:
    """The upload message as the workflow journalled it; RejectedDeliveryError otherwise."""
    try:
        data = json.loads(payload)
        record = data["record"]
        if not isinstance(record, dict):
            raise TypeError("record is not an object")
        return _Envelope(
            case_id=str(data["case_id"]),
            registry=str(data.get("registry", "cpc")),
            spec_version=data.get("spec_version"),
            mapping_version=data.get("mapping_version"),
            payload_hash=data.get("payload_hash"),
            triggered_by=str(data.get("triggered_by") or "automatic"),
            record=record,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise RejectedDeliveryError(
            f"not a registry upload message ({type(exc).__name__}: {exc}); messages of this "
            "channel come from `greenchannel registry upload` or POST /api/registry/cpc/upload"
        ) from None


@dataclass(frozen=True, slots=True)
class _Verdict:
    outcome: str  # accepted, rejected, retry
    detail: str
    kind: str | None = None
    problems: tuple[Problem, ...] = ()
    register_id: str | None = None


class CpcDestination:
    """Sends one upload per message; the engine's queue gives order, retries and backoff."""

    def __init__(self, config: CpcDestinationConfig, context: ConnectorContext) -> None:
        self._config = config
        self._context = context
        path = Path(config.credentials_file)
        self._credentials_file = path if path.is_absolute() else context.data_dir / path
        self._client = httpx.AsyncClient(timeout=config.timeout_s, trust_env=False)

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._client.aclose()

    def _now(self) -> datetime:
        return datetime.now(BEIJING).replace(microsecond=0)

    async def _write(self, work: Any) -> Any:
        if self._context.run_write is not None:
            return await self._context.run_write(work)
        async with self._context.database.begin() as connection:
            return await connection.run_sync(work)

    async def send(self, outbound: Outbound) -> Delivered:
        """Upload one case's record; raise RetryableDeliveryError or RejectedDeliveryError."""
        envelope = parse_envelope(outbound.payload)
        started = self._now()

        def sending(connection: Connection) -> str | None:
            return mark_sending(
                connection,
                envelope.case_id,
                envelope.registry,
                message_id=outbound.message_id,
                attempt=outbound.attempt,
                now=started,
            )

        register_id: str | None = await self._write(sending)
        try:
            credentials = load_credentials(self._credentials_file)
        except CredentialsMissing as exc:
            verdict = _Verdict("rejected", str(exc), kind="config")
            await self._record(envelope, outbound, started, verdict, None, None, None, None)
            raise RejectedDeliveryError(str(exc)) from None
        body = _request_body(envelope.record, register_id, credentials.hospital_id)
        headers = request_headers(
            app_id=credentials.app_id,
            secret_key=credentials.secret_key.get_secret_value(),
            now=datetime.now(BEIJING),
        )
        content = json.dumps(body, ensure_ascii=False).encode("utf-8")
        status: int | None = None
        response_text: str | None = None
        try:
            response = await self._client.post(credentials.url, content=content, headers=headers)
            status = response.status_code
            response_text = response.content[:RESPONSE_MAX_BYTES].decode("utf-8", "replace")
            verdict = self._judge(response, headers["time"])
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            # Nothing reached the platform: retrying is always safe.
            verdict = _Verdict(
                "retry",
                f"cannot reach {credentials.base_url} ({type(exc).__name__}: {exc})",
                kind="transport",
            )
        except httpx.TransportError as exc:
            verdict = _sent_without_answer(exc, self._config.timeout_s, register_id)
        if verdict.outcome == "retry" and outbound.attempt >= self._config.dead_letter_after:
            verdict = _Verdict(
                "dead_letter",
                f"gave up after {outbound.attempt} attempts; last: {verdict.detail}",
                kind=verdict.kind,
            )
        await self._record(
            envelope,
            outbound,
            started,
            verdict,
            headers["requestId"],
            self._logged_body(body),
            status,
            response_text,
        )
        log.info(
            "registry.upload_attempt",
            extra={
                "case_id": envelope.case_id,
                "message_id": outbound.message_id,
                "attempt": outbound.attempt,
                "outcome": verdict.outcome,
                "http_status": status,
            },
        )
        if verdict.outcome == "accepted":
            return Delivered(
                reply=(response_text or "").encode("utf-8"),
                detail=f"REGISTER_ID {verdict.register_id}",
            )
        error: DeliveryError
        if verdict.outcome == "retry":
            error = RetryableDeliveryError(verdict.detail)
        else:
            error = RejectedDeliveryError(verdict.detail, hint=_hint(verdict.kind))
        raise error

    def _logged_body(self, body: dict[str, Any]) -> str | None:
        if self._config.log_bodies == "none":
            return None
        shown = mask_record(body) if self._config.log_bodies == "masked" else body
        return json.dumps(shown, ensure_ascii=False)

    def _judge(self, response: httpx.Response, sent_time: str) -> _Verdict:
        status = response.status_code
        try:
            answer = response.json()
        except ValueError:
            answer = None
        answer = answer if isinstance(answer, dict) else {}
        if status == 200:
            data = answer.get("Data")
            register_id = data.get("REGISTER_ID") if isinstance(data, dict) else None
            if str(answer.get("ResultCode")) == "200" and register_id:
                return _Verdict("accepted", "accepted", register_id=str(register_id))
            return _Verdict(
                "rejected",
                "HTTP 200 without ResultCode 200 and Data.REGISTER_ID; the platform's answer "
                "is in the upload log",
                kind="protocol",
            )
        if status == 403:
            return self._forbidden(response, sent_time, answer)
        if status == 500:
            problems = parse_errors(answer.get("Error"))
            if problems:
                return _Verdict(
                    "rejected",
                    "the platform refused the record: " + "".join(str(p) for p in problems),
                    kind="validation",
                    problems=problems,
                )
            return _Verdict("retry", "HTTP 500 without validation errors", kind="transport")
        if status >= 500:
            return _Verdict("retry", f"HTTP {status} from the platform", kind="transport")
        return _Verdict(
            "rejected",
            f"HTTP {status} from the platform (message {answer.get('Message')!r})",
            kind="http",
        )

    def _forbidden(
        self, response: httpx.Response, sent_time: str, answer: dict[str, Any]
    ) -> _Verdict:
        """A 403 is a bad signature or a `time` outside the platform's window: the response's
        Date header tells which."""
        message = answer.get("Message") or "签名无效"
        offset = clock_offset_s(response.headers.get("date"), sent_time)
        if offset is not None and abs(offset) > self._config.clock_tolerance_s:
            ahead = "ahead of" if offset > 0 else "behind"
            detail = (
                f"HTTP 403 ({message}): the platform's clock is {abs(offset):.0f} s {ahead} "
                "ours (its Date header against our signed time), so the signed `time` is "
                "outside its window: set this server's clock right (NTP), then upload again"
            )
            return _Verdict(
                "rejected", detail, kind="clock", problems=(Problem("签名", f"签名:{detail};"),)
            )
        agree = (
            f"our clocks agree within {abs(offset):.0f} s"
            if offset is not None
            else "the platform sent no Date header to compare clocks"
        )
        detail = (
            f"HTTP 403 ({message}): the signature was refused and {agree}, so the app id or "
            "secret key is wrong: check app_id and secret_key of the registry-cpc credentials"
        )
        return _Verdict(
            "rejected", detail, kind="signature", problems=(Problem("签名", f"签名:{detail};"),)
        )

    async def _record(
        self,
        envelope: _Envelope,
        outbound: Outbound,
        started: datetime,
        verdict: _Verdict,
        request_id: str | None,
        request_body: str | None,
        status: int | None,
        response_text: str | None,
    ) -> None:
        attempt = Attempt(
            case_id=envelope.case_id,
            registry=envelope.registry,
            message_id=outbound.message_id,
            attempt=outbound.attempt,
            outcome=verdict.outcome,
            triggered_by=envelope.triggered_by,
            started_at=started,
            finished_at=self._now(),
            spec_version=envelope.spec_version,
            mapping_version=envelope.mapping_version,
            payload_hash=envelope.payload_hash,
            request_id=request_id,
            request_body=request_body,
            http_status=status,
            response_body=response_text,
            detail=verdict.detail,
            register_id=verdict.register_id,
            problems=verdict.problems,
            problem_kind=verdict.kind,
        )
        await self._write(lambda connection: record_attempt(connection, attempt))


def _sent_without_answer(
    exc: httpx.TransportError, timeout_s: float, register_id: str | None
) -> _Verdict:
    """The request may have reached the platform, but no answer came back (a read timeout, a
    dropped connection). An update may simply be sent again; a first save may have created the
    case without us learning its REGISTER_ID, and sending it again would create it twice (the
    platform has no lookup): registry staff check the platform first (registries.md C.5)."""
    what = (
        f"no answer within {timeout_s:g} s"
        if isinstance(exc, httpx.TimeoutException)
        else f"the connection failed after the request was sent ({type(exc).__name__})"
    )
    if register_id:
        return _Verdict("retry", what, kind="transport")
    detail = (
        f"{what}: the platform may have stored this first save without telling us its "
        "REGISTER_ID. Look the case up on the platform: if it is there, enter its REGISTER_ID "
        "(POST /api/registry/cpc/cases/{id}/register-id), else upload the case again"
    )
    return _Verdict(
        "rejected", detail, kind="unknown_outcome", problems=(Problem("上传", f"上传:{detail};"),)
    )


def _request_body(
    record: dict[str, Any], register_id: str | None, hospital_id: str
) -> dict[str, Any]:
    """The record as sent: the hospital's id, and the platform's record id on an update (a
    first save must not carry one)."""
    body = json.loads(json.dumps(record))
    register = body.setdefault("RegisterInfo", {})
    register.pop("REGISTER_ID", None)
    if register_id:
        register["REGISTER_ID"] = register_id
    register["HOSPITAL_ID"] = hospital_id
    return dict(body)


def clock_offset_s(date_header: str | None, sent_time: str) -> float | None:
    """The platform's clock minus ours, from its Date header and the `time` we signed."""
    if not date_header:
        return None
    try:
        theirs = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError):
        return None
    if theirs.tzinfo is None:
        return None
    ours = datetime.strptime(sent_time, TIME_FORMAT).replace(tzinfo=BEIJING)
    return (theirs - ours).total_seconds()


def _hint(kind: str | None) -> str:
    return {
        "validation": "correct the source data or enter an override, then upload the case again",
        "clock": "synchronise this server's clock (NTP), then upload the case again",
        "signature": "fix app_id / secret_key in the registry-cpc credentials, then upload again",
        "config": "set the registry-cpc credentials, then upload the case again",
        "unknown_outcome": "check the platform for the case before sending it again",
    }.get(kind or "", "registry staff: look at the case's upload log, then upload it again")


class CpcDestinationFactory:
    """Entry point `greenchannel.destinations: registry-cpc`."""

    config_model: ClassVar[type[BaseModel]] = CpcDestinationConfig

    def build(self, config: Any, context: ConnectorContext) -> CpcDestination:
        """Check the config and build the destination."""
        return CpcDestination(CpcDestinationConfig.model_validate(config), context)
