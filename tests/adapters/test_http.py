"""The HTTP source and destination, on real 127.0.0.1 sockets: a uvicorn listener under test and a
scripted uvicorn receiver for deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapters.http import (
    HTTPX_ERROR_CLASSES,
    HttpDestination,
    HttpDestinationFactory,
    HttpSource,
    HttpSourceFactory,
    convert_httpx_error,
)
from engine.connectors import ConnectorContext, Inbound, Outbound, Receipt
from engine.errors import (
    ConfigError,
    DecodeError,
    FramingError,
    InputError,
    RejectedDeliveryError,
    RetryableDeliveryError,
)

TOKEN = "test-token-3f9a"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
HL7 = b"MSH|^~\\&|HIS|ED|GC|ED|20261125173601+0800||ADT^A01|MSG0001|P|2.5.1\rPID|1||123\r"
SENTINEL_NAME = "ZHANG Sentinel"  # must never appear in an error message

Authorize = Callable[[str | None], Awaitable[bool]]


async def token_authorize(header: str | None) -> bool:
    return header == f"Bearer {TOKEN}"


@dataclass
class Journal:
    """Stands in for the engine's accept: records each Inbound, dedups on dedup_key."""

    inbounds: list[Inbound] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)

    async def accept(self, inbound: Inbound) -> Receipt:
        self.inbounds.append(inbound)
        if inbound.dedup_key is not None and inbound.dedup_key in self.keys:
            return Receipt(self.keys[inbound.dedup_key], duplicate=True)
        message_id = len(self.inbounds)
        if inbound.dedup_key is not None:
            self.keys[inbound.dedup_key] = message_id
        return Receipt(message_id, duplicate=False)


@pytest.fixture
async def database() -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine("sqlite+aiosqlite://")
    yield engine
    await engine.dispose()


def make_context(database: AsyncEngine, authorize: Authorize | None) -> ConnectorContext:
    return ConnectorContext(
        channel="test-http", data_dir=Path("."), database=database, authorize=authorize
    )


@contextlib.asynccontextmanager
async def running_source(
    database: AsyncEngine,
    accept: Callable[[Inbound], Awaitable[Receipt]],
    *,
    authorize: Authorize | None = token_authorize,
    **options: Any,
) -> AsyncIterator[HttpSource]:
    config = {"kind": "http", "host": "127.0.0.1", "port": 0, **options}
    source = HttpSourceFactory().build(config, make_context(database, authorize))
    await source.start()
    async with asyncio.TaskGroup() as group:
        serving = group.create_task(source.serve(accept))
        try:
            yield source
        finally:
            serving.cancel()
    await source.aclose()


@contextlib.asynccontextmanager
async def client_for(source: HttpSource) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{source.port}", timeout=5) as client:
        yield client


# --- source: authentication -------------------------------------------------------------------


@pytest.mark.anyio
async def test_request_without_or_with_wrong_token_is_401_with_bearer_challenge(
    database: AsyncEngine,
) -> None:
    journal = Journal()
    async with running_source(database, journal.accept) as source, client_for(source) as client:
        missing = await client.post("/", content=HL7)
        wrong = await client.post("/", content=HL7, headers={"Authorization": "Bearer nope"})
        elsewhere = await client.get("/no/such/path")
    for response in (missing, wrong, elsewhere):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["status"] == 401
    assert journal.inbounds == []


@pytest.mark.anyio
async def test_right_token_journals_the_body_and_answers_202(database: AsyncEngine) -> None:
    journal = Journal()
    headers = {
        **AUTH,
        "Content-Type": "x-application/hl7-v2+er7; charset=GB18030",
        "Idempotency-Key": "HIS-ED-MSG0001",
        "X-Correlation-Id": "MSG0001",
    }
    async with running_source(database, journal.accept) as source, client_for(source) as client:
        response = await client.post("/", content=HL7, headers=headers)
    assert response.status_code == 202
    assert response.json() == {"message_id": 1, "duplicate": False}
    (inbound,) = journal.inbounds
    assert inbound.raw == HL7
    assert inbound.media_type == "x-application/hl7-v2+er7"
    assert inbound.charset == "gb18030"
    assert inbound.dedup_key == "HIS-ED-MSG0001"
    assert inbound.correlation_id == "MSG0001"
    assert inbound.origin.startswith("http://127.0.0.1:")
    assert inbound.received_at.utcoffset() is not None
    assert inbound.problem is None


@pytest.mark.anyio
async def test_no_authorize_means_auth_disabled_and_default_media_type(
    database: AsyncEngine,
) -> None:
    journal = Journal()
    async with (
        running_source(database, journal.accept, authorize=None) as source,
        client_for(source) as client,
    ):
        response = await client.post("/", content=b"\x00\x01")
    assert response.status_code == 202
    assert journal.inbounds[0].media_type == "application/octet-stream"
    assert journal.inbounds[0].charset is None


@pytest.mark.anyio
async def test_resend_with_same_idempotency_key_passes_the_duplicate_receipt_through(
    database: AsyncEngine,
) -> None:
    journal = Journal()
    headers = {**AUTH, "Idempotency-Key": "k-1"}
    async with running_source(database, journal.accept) as source, client_for(source) as client:
        first = await client.post("/", content=HL7, headers=headers)
        again = await client.post("/", content=HL7, headers=headers)
    assert (first.status_code, first.json()) == (202, {"message_id": 1, "duplicate": False})
    assert (again.status_code, again.json()) == (200, {"message_id": 1, "duplicate": True})


@pytest.mark.anyio
async def test_answer_is_sent_only_after_accept_returns(database: AsyncEngine) -> None:
    entered, release = asyncio.Event(), asyncio.Event()

    async def slow_journal(inbound: Inbound) -> Receipt:
        entered.set()
        await release.wait()
        return Receipt(41, duplicate=False)

    async with running_source(database, slow_journal) as source, client_for(source) as client:
        async with asyncio.TaskGroup() as group:
            posting = group.create_task(client.post("/", content=HL7, headers=AUTH))
            async with asyncio.timeout(5):
                await entered.wait()
            await asyncio.sleep(0.1)
            assert not posting.done()
            release.set()
    assert posting.result().status_code == 202
    assert posting.result().json()["message_id"] == 41


# --- source: bad input is answered 4xx and still journalled -----------------------------------


@pytest.mark.anyio
async def test_body_over_limit_is_413_and_its_prefix_is_journalled_as_problem(
    database: AsyncEngine,
) -> None:
    journal = Journal()
    body = bytes(range(256)) * 8
    async with (
        running_source(database, journal.accept, max_body_bytes=300) as source,
        client_for(source) as client,
    ):
        response = await client.post("/", content=body, headers=AUTH)
    assert response.status_code == 413
    problem = response.json()
    assert problem["message_id"] == 1
    assert "journalled" in problem["detail"] and "300" in problem["detail"]
    (inbound,) = journal.inbounds
    assert inbound.raw == body[:300]
    assert isinstance(inbound.problem, FramingError)


@pytest.mark.anyio
async def test_media_type_outside_allow_list_is_415_and_journalled(database: AsyncEngine) -> None:
    journal = Journal()
    allowed = ["application/fhir+json", "text/*"]
    async with (
        running_source(database, journal.accept, allowed_media_types=allowed) as source,
        client_for(source) as client,
    ):
        refused = await client.post(
            "/", content=b"<x/>", headers={**AUTH, "Content-Type": "application/xml"}
        )
        taken = await client.post(
            "/", content=b"hi", headers={**AUTH, "Content-Type": "text/plain"}
        )
    assert refused.status_code == 415
    assert taken.status_code == 202
    assert isinstance(journal.inbounds[0].problem, InputError)
    assert journal.inbounds[1].problem is None


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("content_type", "status", "problem"),
    [
        ("not a media type", 415, InputError),
        ("text/plain; charset=no-such-charset", 415, DecodeError),
    ],
)
async def test_unusable_content_type_is_415_and_journalled(
    database: AsyncEngine, content_type: str, status: int, problem: type[InputError]
) -> None:
    journal = Journal()
    async with running_source(database, journal.accept) as source, client_for(source) as client:
        response = await client.post(
            "/", content=HL7, headers={**AUTH, "Content-Type": content_type}
        )
    assert response.status_code == status
    assert isinstance(journal.inbounds[0].problem, problem)


@pytest.mark.anyio
async def test_empty_body_is_400_and_journalled(database: AsyncEngine) -> None:
    journal = Journal()
    async with running_source(database, journal.accept) as source, client_for(source) as client:
        response = await client.post("/", content=b"", headers=AUTH)
    assert response.status_code == 400
    assert isinstance(journal.inbounds[0].problem, FramingError)


@pytest.mark.anyio
async def test_wrong_path_is_404_and_wrong_method_is_405(database: AsyncEngine) -> None:
    journal = Journal()
    async with (
        running_source(database, journal.accept, path="/his/adt") as source,
        client_for(source) as client,
    ):
        wrong_path = await client.post("/his", content=HL7, headers=AUTH)
        wrong_method = await client.get("/his/adt", headers=AUTH)
        right = await client.post("/his/adt", content=HL7, headers=AUTH)
    assert wrong_path.status_code == 404
    assert wrong_path.headers["content-type"] == "application/problem+json"
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "POST"
    assert right.status_code == 202
    assert len(journal.inbounds) == 1


# --- source: lifecycle ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_port_in_use_is_a_config_error_at_start(database: AsyncEngine) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = {"kind": "http", "host": "127.0.0.1", "port": port}
        source = HttpSourceFactory().build(config, make_context(database, None))
        with pytest.raises(ConfigError, match="already in use"):
            await source.start()


@pytest.mark.anyio
async def test_aclose_stops_a_serving_source_and_frees_the_port(database: AsyncEngine) -> None:
    journal = Journal()
    config = {"kind": "http", "host": "127.0.0.1", "port": 0}
    source = HttpSourceFactory().build(config, make_context(database, None))
    await source.start()
    port = source.port
    async with asyncio.TaskGroup() as group:
        serving = group.create_task(source.serve(journal.accept))
        async with httpx.AsyncClient() as client:
            response = await client.post(f"http://127.0.0.1:{port}/", content=HL7)
        assert response.status_code == 202
        await source.aclose()
    assert serving.done() and serving.exception() is None
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return cert, key


@pytest.mark.anyio
async def test_tls_source_receives_from_the_http_destination_trusting_its_ca_file(
    database: AsyncEngine, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    journal = Journal()
    async with (
        running_source(
            database, journal.accept, authorize=None, tls_certfile=str(cert), tls_keyfile=str(key)
        ) as source,
        destination(database, f"https://127.0.0.1:{source.port}/", ca_file=str(cert)) as sender,
    ):
        delivered = await sender.send(outbound())
    assert delivered.detail == "HTTP 202"
    assert json.loads(delivered.reply or b"") == {"message_id": 1, "duplicate": False}
    (inbound,) = journal.inbounds
    assert inbound.origin.startswith("https://127.0.0.1:")
    assert inbound.media_type == "application/fhir+json"
    assert inbound.dedup_key == "his-adt/fhir/812"  # the destination's idempotency key


@pytest.mark.anyio
async def test_unreadable_certificate_is_a_config_error_at_start(
    database: AsyncEngine, tmp_path: Path
) -> None:
    missing = str(tmp_path / "missing.pem")
    config = {"kind": "http", "host": "127.0.0.1", "port": 0, "tls_certfile": missing}
    source = HttpSourceFactory().build(config, make_context(database, None))
    with pytest.raises(ConfigError, match="TLS certificate"):
        await source.start()
    assert source.port == 0


def test_source_config_rejects_unknown_keys_and_bad_values() -> None:
    factory = HttpSourceFactory()
    for bad in (
        {"kind": "http", "port": 8080, "colour": "red"},
        {"kind": "http", "port": 70000},
        {"kind": "http", "port": 8080, "path": "no-slash"},
        {"kind": "http", "port": 8080, "allowed_media_types": ["json"]},
    ):
        with pytest.raises(ValidationError):
            factory.config_model.model_validate(bad)


# --- source: any input gets a 2xx or 4xx ------------------------------------------------------


@pytest.fixture
async def open_source(database: AsyncEngine) -> AsyncIterator[HttpSource]:
    journal = Journal()
    async with running_source(database, journal.accept, max_body_bytes=256) as source:
        yield source


content_types = st.one_of(
    st.none(),
    st.sampled_from(
        [
            b"application/json; charset=utf-8",
            b'text/plain; charset="gb18030"',
            b"text/plain; charset=",
            b"text/plain; charset=\xff\xfe",
            b";;;",
            b"/",
        ]
    ),
    st.binary(max_size=80).map(lambda value: value.replace(b"\r", b"").replace(b"\n", b"")),
)


@pytest.mark.anyio
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.binary(max_size=600), content_type=content_types)
async def test_any_body_and_content_type_get_a_2xx_or_4xx_answer(
    open_source: HttpSource, body: bytes, content_type: bytes | None
) -> None:
    head = [
        b"POST / HTTP/1.1",
        b"Host: 127.0.0.1",
        f"Authorization: Bearer {TOKEN}".encode(),
        b"Connection: close",
        f"Content-Length: {len(body)}".encode(),
    ]
    if content_type is not None:
        head.append(b"Content-Type: " + content_type)
    async with asyncio.timeout(5):
        reader, writer = await asyncio.open_connection("127.0.0.1", open_source.port)
        try:
            writer.write(b"\r\n".join(head) + b"\r\n\r\n" + body)
            await writer.drain()
            status_line = await reader.readline()
        finally:
            writer.close()
            await writer.wait_closed()
    status = int(status_line.split()[1])
    assert 200 <= status < 500


# --- destination ------------------------------------------------------------------------------


class QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers (pytest keeps Ctrl+C)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Receiver:
    url: str
    requests: list[tuple[dict[str, str], bytes]]


OPERATION_OUTCOME = {
    "resourceType": "OperationOutcome",
    "issue": [
        {
            "severity": "error",
            "code": "invalid",
            "diagnostics": f"birth date of {SENTINEL_NAME} is in the future",
            "expression": ["Patient.birthDate"],
        }
    ],
}


@contextlib.asynccontextmanager
async def scripted_receiver() -> AsyncIterator[Receiver]:
    """A real HTTP server answering by path: 201, 400 + OperationOutcome, 503, 409, too slow."""
    requests: list[tuple[dict[str, str], bytes]] = []
    stop = asyncio.Event()

    async def created(request: Request) -> Response:
        requests.append((dict(request.headers), await request.body()))
        return Response(b'{"resourceType":"Bundle"}', 201, media_type="application/fhir+json")

    async def invalid(request: Request) -> Response:
        return JSONResponse(OPERATION_OUTCOME, 400, media_type="application/fhir+json")

    async def big(request: Request) -> Response:
        return Response(b"x" * 200_000, 200, media_type="text/plain")

    async def slow(request: Request) -> Response:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(5):
                await stop.wait()
        return Response(b"late", 201)

    def status(code: int) -> Callable[[Request], Awaitable[Response]]:
        async def answer(request: Request) -> Response:
            return Response(b"", code)

        return answer

    app = Starlette(
        routes=[
            Route("/created", created, methods=["POST", "PUT"]),
            Route("/invalid", invalid, methods=["POST"]),
            Route("/big", big, methods=["POST"]),
            Route("/slow", slow, methods=["POST"]),
            Route("/unavailable", status(503), methods=["POST"]),
            Route("/conflict", status(409), methods=["POST"]),
            Route("/moved", status(307), methods=["POST"]),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, lifespan="off", log_config=None, access_log=False, timeout_graceful_shutdown=2
    )
    server = QuietServer(config)
    async with asyncio.TaskGroup() as group:
        # The socket already listens: requests queue in its backlog until uvicorn takes them.
        group.create_task(server.serve(sockets=[sock]))
        try:
            yield Receiver(f"http://127.0.0.1:{port}", requests)
        finally:
            stop.set()
            server.should_exit = True


@contextlib.asynccontextmanager
async def destination(
    database: AsyncEngine, url: str, **options: Any
) -> AsyncIterator[HttpDestination]:
    config = {"kind": "http", "url": url, **options}
    built = HttpDestinationFactory().build(config, make_context(database, None))
    try:
        yield built
    finally:
        await built.aclose()


def outbound(payload: bytes = b'{"resourceType":"Bundle"}', attempt: int = 1) -> Outbound:
    return Outbound(
        message_id=812,
        channel="his-adt",
        destination="fhir",
        payload=payload,
        media_type="application/fhir+json",
        attempt=attempt,
    )


@pytest.mark.anyio
async def test_2xx_is_delivered_with_the_reply_and_request_headers_are_set(
    database: AsyncEngine,
) -> None:
    async with (
        scripted_receiver() as receiver,
        destination(
            database,
            f"{receiver.url}/created",
            bearer_token="out-token",
            headers={"X-Sender": "greenchannel-ed"},
        ) as sender,
    ):
        delivered = await sender.send(outbound())
        await sender.send(outbound(attempt=2))
    assert delivered.detail == "HTTP 201"
    assert delivered.reply == b'{"resourceType":"Bundle"}'
    (first_headers, first_body), (second_headers, _) = receiver.requests
    assert first_body == b'{"resourceType":"Bundle"}'
    assert first_headers["content-type"] == "application/fhir+json"
    assert first_headers["authorization"] == "Bearer out-token"
    assert first_headers["x-sender"] == "greenchannel-ed"
    assert first_headers["idempotency-key"] == "his-adt/fhir/812"
    assert second_headers["idempotency-key"] == first_headers["idempotency-key"]


@pytest.mark.anyio
async def test_put_method_is_used_when_configured(database: AsyncEngine) -> None:
    async with (
        scripted_receiver() as receiver,
        destination(database, f"{receiver.url}/created", method="PUT") as sender,
    ):
        assert (await sender.send(outbound())).detail == "HTTP 201"


@pytest.mark.anyio
async def test_reply_is_capped_at_max_reply_bytes(database: AsyncEngine) -> None:
    async with (
        scripted_receiver() as receiver,
        destination(database, f"{receiver.url}/big", max_reply_bytes=1000) as sender,
    ):
        delivered = await sender.send(outbound())
    assert delivered.reply == b"x" * 1000


@pytest.mark.anyio
async def test_400_operation_outcome_is_rejected_naming_positions_not_values(
    database: AsyncEngine,
) -> None:
    async with (
        scripted_receiver() as receiver,
        destination(database, f"{receiver.url}/invalid") as sender,
    ):
        with pytest.raises(RejectedDeliveryError) as caught:
            await sender.send(outbound())
    message = str(caught.value)
    assert "HTTP 400" in message
    assert "error/invalid at Patient.birthDate" in message
    assert SENTINEL_NAME not in message


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("path", "options", "expected"),
    [
        ("/unavailable", {}, RetryableDeliveryError),
        ("/conflict", {}, RejectedDeliveryError),
        ("/conflict", {"retry_on_status": [409, "5xx"]}, RetryableDeliveryError),
        ("/unavailable", {"retry_on_status": [429]}, RejectedDeliveryError),
        ("/moved", {}, RejectedDeliveryError),
        ("/slow", {"timeout_s": 0.3}, RetryableDeliveryError),
    ],
)
async def test_status_and_timeout_map_to_delivery_error_class(
    database: AsyncEngine, path: str, options: dict[str, Any], expected: type[Exception]
) -> None:
    async with (
        scripted_receiver() as receiver,
        destination(database, receiver.url + path, **options) as sender,
    ):
        with pytest.raises(expected):
            await sender.send(outbound())


@pytest.mark.anyio
async def test_connection_refused_is_retryable(database: AsyncEngine) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with destination(database, f"http://127.0.0.1:{port}/x") as sender:
        with pytest.raises(RetryableDeliveryError, match="cannot connect") as caught:
            await sender.send(outbound())
    assert isinstance(caught.value.__cause__, httpx.ConnectError)


def _subclasses(base: type[Exception]) -> set[type[Exception]]:
    found = {base}
    for sub in base.__subclasses__():
        found |= _subclasses(sub)
    return found


def test_every_httpx_request_error_has_a_delivery_error_class() -> None:
    httpx_errors = {cls for cls in _subclasses(httpx.RequestError) if cls.__module__[:5] == "httpx"}
    assert httpx.TransportError in httpx_errors
    assert httpx_errors <= set(HTTPX_ERROR_CLASSES)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (httpx.ConnectError("refused"), RetryableDeliveryError),
        (httpx.ReadTimeout("slow"), RetryableDeliveryError),
        (httpx.RemoteProtocolError("closed"), RetryableDeliveryError),
        (httpx.LocalProtocolError("bad header"), RejectedDeliveryError),
        (httpx.UnsupportedProtocol("ftp"), RejectedDeliveryError),
    ],
)
def test_httpx_errors_convert_to_the_mapped_class(
    error: httpx.RequestError, expected: type[Exception]
) -> None:
    converted = convert_httpx_error(error, "http://lis.example/api")
    assert type(converted) is expected
    assert "http://lis.example/api" in str(converted)


def test_destination_config_rejects_bad_url_and_reserved_headers() -> None:
    model = HttpDestinationFactory.config_model
    for bad in (
        {"kind": "http", "url": "ftp://lis.example/"},
        {"kind": "http", "url": "/relative"},
        {"kind": "http", "url": "http://lis.example/", "headers": {"Content-Type": "x/y"}},
        {"kind": "http", "url": "http://lis.example/", "headers": {"X-A": "a\r\nb"}},
        {"kind": "http", "url": "http://lis.example/", "retry_on_status": [200]},
        {"kind": "http", "url": "http://lis.example/", "retry_on_status": ["6xx"]},
    ):
        with pytest.raises(ValidationError):
            model.model_validate(bad)


def test_destination_secret_is_masked_in_config_repr() -> None:
    config = HttpDestinationFactory.config_model.model_validate(
        {"kind": "http", "url": "http://lis.example/", "bearer_token": "out-token"}
    )
    assert "out-token" not in repr(config)
    assert json.loads(config.model_dump_json())["bearer_token"] == "**********"
