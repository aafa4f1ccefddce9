"""The chest pain platform's transport: the signature against registries.md's test vector, the
`registry sign` command, the `Error` text parser, masking, and the local platform on a real
port refusing what the real one refuses."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from adapters.registry.cpc import (
    BEIJING,
    clock_offset_s,
    mask_record,
    parse_envelope,
    parse_errors,
    request_headers,
    sign,
    signing_time,
)
from adapters.registry.cpc_sim import Platform, serve_platform
from engine.cli import main
from engine.errors import RejectedDeliveryError
from tests.adapters.registry_platform import APP_ID, HOSPITAL_ID, SECRET, complete_record

# registries.md A.1 "Signing test vector".
VECTOR_TIME = "20240612093045"
VECTOR_REQUEST_ID = "5d1c8a7e-2b3f-4c6d-9e8f-0a1b2c3d4e5f"
VECTOR_SIGN = "0fcf3133c84237e5e59431cc6dd17b42b910f25ec3f2bbe541458a7273527489"


def test_the_signature_matches_the_documented_test_vector() -> None:
    assert sign("greenchannel-demo-secret-0001", VECTOR_TIME, VECTOR_REQUEST_ID) == VECTOR_SIGN


def test_the_sign_command_prints_the_documented_signature(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["registry", "sign", "--time", VECTOR_TIME, "--request-id", VECTOR_REQUEST_ID]
    code = main([*argv, "--secret", "greenchannel-demo-secret-0001"])
    assert (code, capsys.readouterr().out.strip()) == (0, VECTOR_SIGN)


def test_the_time_header_is_beijing_time_whatever_the_instant_offset() -> None:
    in_utc = datetime(2024, 6, 11, 17, 30, 45, tzinfo=UTC)  # 01:30:45 next day in Beijing
    assert signing_time(in_utc) == "20240612013045"
    assert signing_time(datetime(2024, 6, 12, 1, 30, 45, tzinfo=BEIJING)) == "20240612013045"


def test_every_attempt_gets_a_new_request_id_and_signature() -> None:
    now = datetime.now(BEIJING)
    first = request_headers(app_id=APP_ID, secret_key=SECRET, now=now)
    second = request_headers(app_id=APP_ID, secret_key=SECRET, now=now)
    assert first["requestId"] != second["requestId"]
    assert first["sign"] != second["sign"]
    assert uuid.UUID(first["requestId"])


def test_the_platform_error_text_becomes_one_problem_per_message() -> None:
    problems = parse_errors("患者转归:并发症必填;人口基本信息：姓名必填；")
    assert [(p.block, p.message) for p in problems] == [
        ("患者转归", "患者转归:并发症必填;"),
        ("人口基本信息", "人口基本信息:姓名必填;"),
    ]
    assert parse_errors(None) == parse_errors("null") == parse_errors("") == ()


@given(st.one_of(st.none(), st.text(), st.integers(), st.lists(st.text())))
def test_any_error_field_gives_problems_never_an_exception(error: object) -> None:
    for problem in parse_errors(error):
        assert problem.message.endswith(";")
        assert problem.message.strip(";").strip()


@given(st.binary(max_size=300))
def test_any_message_is_an_upload_or_a_rejected_delivery(payload: bytes) -> None:
    try:
        envelope = parse_envelope(payload)
    except RejectedDeliveryError as error:
        assert "not a registry upload message" in str(error)
    else:
        assert isinstance(envelope.record, dict)


@given(st.text(max_size=60))
def test_any_date_header_gives_an_offset_or_none(header: str) -> None:
    offset = clock_offset_s(header, "20240612093045")
    assert offset is None or isinstance(offset, float)


def test_the_clock_offset_is_the_platforms_date_minus_our_signed_time() -> None:
    assert clock_offset_s("Wed, 12 Jun 2024 01:45:45 GMT", "20240612093045") == 900.0
    assert clock_offset_s(None, "20240612093045") is None


def test_name_id_number_and_phone_are_masked() -> None:
    masked = mask_record(complete_record())["RegisterInfo"]
    assert masked["NAME"] == "张*"
    assert masked["IDCARD"] == "1101**********1234"
    assert masked["CONTACT_PHONE"] == "138****5678"
    assert complete_record()["RegisterInfo"]["NAME"] == "张三"


def _record() -> dict[str, object]:
    record = complete_record()
    record["RegisterInfo"]["HOSPITAL_ID"] = HOSPITAL_ID  # type: ignore[index]
    return record


async def _post(
    base: str, record: object, *, secret: str = SECRET, **headers: str
) -> httpx.Response:
    signed = request_headers(app_id=APP_ID, secret_key=secret, now=datetime.now(BEIJING))
    signed.update(headers)
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"{base}/Services/v1.1/ChestPainCenter", json=record, headers=signed
        )


@pytest.mark.anyio
async def test_the_local_platform_saves_a_record_and_keeps_its_id_on_update() -> None:
    async with serve_platform(Platform(app_id=APP_ID, secret=SECRET)) as base:
        first = await _post(base, _record())
        register_id = first.json()["Data"]["REGISTER_ID"]
        update = _record()
        update["RegisterInfo"]["REGISTER_ID"] = register_id  # type: ignore[index]
        second = await _post(base, update)
        unknown = _record()
        unknown["RegisterInfo"]["REGISTER_ID"] = str(uuid.uuid4())  # type: ignore[index]
        third = await _post(base, unknown)

    assert first.status_code == 200 and first.json()["ResultCode"] == "200"
    assert second.json()["Data"]["REGISTER_ID"] == register_id
    assert (third.status_code, third.json()["Error"]) == (500, "人口基本信息:注册编号不存在;")


@pytest.mark.anyio
async def test_the_local_platform_refuses_a_wrong_secret_and_a_stale_time() -> None:
    platform = Platform(app_id=APP_ID, secret=SECRET, max_skew_s=300)
    async with serve_platform(platform) as base:
        wrong_secret = await _post(base, _record(), secret="not-the-secret")
        stale = (datetime.now(BEIJING) - timedelta(minutes=10)).strftime("%Y%m%d%H%M%S")
        request_id = str(uuid.uuid4())
        late = await _post(
            base, _record(), time=stale, requestId=request_id, sign=sign(SECRET, stale, request_id)
        )
        wrong_app = await _post(base, _record(), appId="someone-else")

    for refused in (wrong_secret, late, wrong_app):
        assert refused.status_code == 403
        assert refused.json() == {
            "ResultCode": "403",
            "Message": "签名无效",
            "Error": None,
            "Data": None,
        }
    assert [r["why"] for r in platform.requests] == [
        "bad signature",
        "time outside the window",
        "unknown appId",
    ]
    assert platform.records == {}


@pytest.mark.anyio
async def test_the_local_platform_names_missing_required_fields_in_its_own_style() -> None:
    record = _record()
    del record["FirstAIDInfo"]["CW_ZXLY_FIRST_MC_TIME"]  # type: ignore[attr-defined]
    record["RegisterInfo"]["NAME"] = ""  # type: ignore[index]
    record["RegisterInfo"]["STATUS"] = 2  # type: ignore[index]
    async with serve_platform(Platform(app_id=APP_ID, secret=SECRET)) as base:
        refused = await _post(base, record)

    assert refused.status_code == 500
    error = refused.json()["Error"]
    assert "人口基本信息:姓名必填;" in error
    assert "急救信息:首次医疗接触必填;" in error
    assert "患者转归:患者转归必填;" in error  # a complete record needs its outcome block


@pytest.mark.anyio
async def test_the_local_platform_reports_its_own_clock_in_the_date_header() -> None:
    platform = Platform(app_id=APP_ID, secret=SECRET, clock_offset_s=3600)
    async with serve_platform(platform) as base:
        response = await _post(base, _record())
    date = email_date(response.headers["date"])
    assert abs((date - datetime.now(BEIJING)).total_seconds() - 3600) < 5
    assert len(response.headers.get_list("date")) == 1


def email_date(text: str) -> datetime:
    import email.utils

    return email.utils.parsedate_to_datetime(text)
