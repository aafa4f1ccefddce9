"""The SNTP client against a local SNTP server on a real UDP socket: the host's offset is
measured, and every kind of bad answer is a specific error that says what was wrong."""

from __future__ import annotations

import pytest

from devices.clock import KissOfDeathError, NtpResponseError, NtpTimeoutError, query_ntp
from tests.devices.clock.sntp_server import Fault, sntp_server

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("offset_s", [-7.25, 0.0, 42.5, 3600.0])
async def test_the_offset_of_a_server_clock_set_away_from_ours_is_measured(
    offset_s: float,
) -> None:
    async with sntp_server(offset_s) as (server, port):
        result = await query_ntp("127.0.0.1", port=port, timeout_s=2)
    assert server.requests == 1
    assert result.offset_s == pytest.approx(offset_s, abs=0.05)
    assert 0 <= result.delay_s < 0.5
    assert result.stratum == 2


@pytest.mark.parametrize(
    ("fault", "error", "says"),
    [
        ("short", NtpResponseError, "answered 40 bytes"),
        ("client-mode", NtpResponseError, "mode 3"),
        ("not-ours", NtpResponseError, "does not echo our request"),
        ("unsynchronised", NtpResponseError, "not synchronised"),
        ("kiss-rate", KissOfDeathError, "kiss-o'-death 'RATE'"),
    ],
)
async def test_a_bad_answer_is_a_clear_error(
    fault: Fault, error: type[Exception], says: str
) -> None:
    async with sntp_server(5.0, fault) as (_, port):
        with pytest.raises(error) as raised:
            await query_ntp("127.0.0.1", port=port, timeout_s=2)
    assert says in str(raised.value)
    assert f"127.0.0.1:{port}" in str(raised.value)


async def test_the_kiss_code_is_kept_for_the_operator() -> None:
    async with sntp_server(0.0, "kiss-rate") as (_, port):
        with pytest.raises(KissOfDeathError) as raised:
            await query_ntp("127.0.0.1", port=port, timeout_s=2)
    assert raised.value.code == "RATE"
    assert "refuses" in raised.value.hint


async def test_a_silent_server_times_out() -> None:
    async with sntp_server(0.0, "silent") as (_, port):
        with pytest.raises(NtpTimeoutError, match="no answer from NTP server"):
            await query_ntp("127.0.0.1", port=port, timeout_s=0.3)
