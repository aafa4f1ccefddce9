"""HTTP connectors: a source that journals POSTed bodies behind its own listener, and a
destination that delivers messages with httpx, mapping every failure to a delivery error class.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import errno
import hashlib
import json
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime, tzinfo
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any, ClassVar, Literal

import httpx
import uvicorn
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from adapters._parse_check import parse_problem, warm_up_parser
from adapters.hl7v2 import message_time, read_header, sender_of
from engine.connectors import Accept, ConnectorContext, Delivered, Inbound, Outbound
from engine.errors import (
    ConfigError,
    DecodeError,
    DeliveryError,
    FramingError,
    InputError,
    RejectedDeliveryError,
    RetryableDeliveryError,
)

__all__ = [
    "HTTPX_ERROR_CLASSES",
    "HttpDestination",
    "HttpDestinationConfig",
    "HttpDestinationFactory",
    "HttpSource",
    "HttpSourceConfig",
    "HttpSourceFactory",
    "convert_httpx_error",
]

log = logging.getLogger(__name__)

DEFAULT_MEDIA_TYPE = "application/octet-stream"
MAX_KEY_CHARS = 200  # the journal's dedup_key column
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}")
_MEDIA_RANGE = re.compile(rf"{_TOKEN}/(?:{_TOKEN}|\*)")
_HEADER_NAME = re.compile(_TOKEN)
_RESERVED_HEADERS = frozenset({"content-type", "content-length", "host", "transfer-encoding"})

Authorize = Callable[[str | None], Awaitable[bool]]


class HttpSourceConfig(BaseModel):
    """An HTTP listener: every POST body to `path` becomes one journalled message."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["http"] = Field(description="Selects the HTTP source.")
    host: str = Field(
        "0.0.0.0",
        description="Address to listen on: 0.0.0.0 for every IPv4 interface, 127.0.0.1 for "
        "this machine only, :: for IPv6.",
    )
    port: int = Field(ge=0, le=65535, description="TCP port to listen on (0 picks a free port).")
    path: str = Field(
        "/",
        pattern=r"^/[^{}\s?#]*$",
        description="URL path that accepts messages, e.g. /his/adt. Other paths answer 404.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024,
        gt=0,
        description="Largest accepted body. A larger one is answered 413 and its first "
        "max_body_bytes are journalled as an ERROR message, so nothing is lost silently.",
    )
    allowed_media_types: tuple[str, ...] = Field(
        (),
        description="Content-Types accepted (e.g. application/fhir+json, text/*). Empty "
        "accepts any. Others are answered 415 and journalled as ERROR messages.",
    )
    media_type: str | None = Field(
        None,
        description="Journal every body with this media type (e.g. x-application/hl7-v2+er7) "
        "instead of the sender's Content-Type, for senders that label their messages wrongly.",
    )
    parse_check: bool = Field(
        False,
        description="Parse each body with the installed parser for its media type before "
        "answering: a body the parser refuses (an unreadable or implausible ECG recording, "
        "bad JSON) is journalled as an ERROR message and answered 422 with the parser's "
        "reason and location. Off by default: it parses every message twice.",
    )
    read_timeout_s: float = Field(
        30.0, gt=0, description="Deadline for receiving a whole body; a slower sender gets 408."
    )
    max_connections: int = Field(
        100, gt=0, description="Concurrent connections served; more are answered 503."
    )
    shutdown_timeout_s: float = Field(
        10.0,
        gt=0,
        description="On stop, how long requests in progress may take to finish.",
    )
    tls_certfile: Path | None = Field(
        None, description="PEM certificate (chain) file: serve HTTPS instead of HTTP."
    )
    tls_keyfile: Path | None = Field(
        None, description="PEM private key for tls_certfile, if it is not in the same file."
    )

    @field_validator("allowed_media_types")
    @classmethod
    def _check_media_ranges(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        normalised = tuple(item.strip().lower() for item in value)
        for item in normalised:
            if not _MEDIA_RANGE.fullmatch(item):
                raise ValueError(f"{item!r} is not a media type like text/plain or text/*")
        return normalised


class HttpSource:
    """Listens on its own port; answers 202 only after the body is journalled (200 for a resend)."""

    def __init__(self, config: HttpSourceConfig, context: ConnectorContext) -> None:
        self._config = config
        self._context = context
        self._scheme = "https" if config.tls_certfile else "http"
        self._accept: Accept | None = None
        self._sock: socket.socket | None = None
        self._server: _QuietServer | None = None
        self._stopped = asyncio.Event()
        self._stopped.set()

    @property
    def port(self) -> int:
        """The bound port (useful when the config asked for port 0); 0 before `start()`."""
        return int(self._sock.getsockname()[1]) if self._sock is not None else 0

    async def start(self) -> None:
        """Bind and listen, so a port in use or a bad certificate is a ConfigError now."""
        if self._sock is not None:
            return
        sock = await self._bind()
        if self._config.parse_check:
            warm_up_parser(self._config.media_type)
        config = uvicorn.Config(
            self._build_app(),
            host=self._config.host,
            port=int(sock.getsockname()[1]),
            lifespan="off",
            log_config=None,
            access_log=False,
            ws="none",
            proxy_headers=False,
            server_header=False,
            limit_concurrency=self._config.max_connections,
            timeout_graceful_shutdown=int(self._config.shutdown_timeout_s + 0.999),
            ssl_certfile=self._config.tls_certfile,
            ssl_keyfile=self._config.tls_keyfile,
        )
        try:
            # Loading reads the certificate files: keep that off the event loop.
            await asyncio.to_thread(config.load)
        except BaseException as exc:
            sock.close()
            if not isinstance(exc, OSError):  # ssl.SSLError is an OSError
                raise
            raise ConfigError(
                f"cannot load the TLS certificate or key: {exc.strerror or type(exc).__name__}",
                key="source.tls_certfile",
                hint="check that the PEM files exist and are readable",
            ) from exc
        self._sock = sock
        self._server = _QuietServer(config)
        log.info(
            "http_source.listening", extra={"channel": self._context.channel, "port": self.port}
        )

    async def serve(self, accept: Accept) -> None:
        """Serve requests until cancelled; in-progress requests get shutdown_timeout_s to finish."""
        await self.start()
        assert self._server is not None and self._sock is not None
        server, sock = self._server, self._sock
        self._accept = accept
        self._stopped.clear()
        try:
            await server.serve(sockets=[sock])
        except asyncio.CancelledError:
            server.should_exit = True
            if server.started:
                try:
                    async with asyncio.timeout(self._config.shutdown_timeout_s + 1.0):
                        await server.shutdown(sockets=[sock])
                except TimeoutError:
                    log.warning("http_source.shutdown_timeout", extra={"port": self.port})
            raise
        finally:
            sock.close()
            self._sock = None
            self._server = None
            self._stopped.set()

    async def aclose(self) -> None:
        """Stop listening; a running `serve` finishes its requests and returns."""
        if self._server is not None:
            self._server.should_exit = True
        if not self._stopped.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._config.shutdown_timeout_s + 1.0):
                    await self._stopped.wait()
        elif self._sock is not None:
            self._sock.close()
            self._sock = None
            self._server = None

    async def _bind(self) -> socket.socket:
        host, port = self._config.host, self._config.port
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
            )
        except socket.gaierror as exc:
            raise ConfigError(f"cannot resolve host {host!r}", key="source.host") from exc
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(min(self._config.max_connections, socket.SOMAXCONN))
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if exc.errno == errno.EADDRINUSE:
                reason = f"port {port} on {host} is already in use"
            elif exc.errno == errno.EACCES:
                reason = f"no permission to listen on port {port} (ports below 1024 need it)"
            else:
                reason = f"cannot listen on {host}:{port}: {exc.strerror}"
            raise ConfigError(
                reason, key="source.port", hint="choose a free port or stop the other listener"
            ) from exc
        return sock

    def _build_app(self) -> Starlette:
        app = Starlette(
            routes=[Route(self._config.path, self._receive, methods=["POST"])],
            middleware=[Middleware(_AuthGate, authorize=self._context.authorize)],
            exception_handlers={HTTPException: _http_exception},
        )
        app.router.redirect_slashes = False
        return app

    async def _receive(self, request: Request) -> Response:
        accept = self._accept
        if accept is None:  # not serving yet: cannot journal, so do not take the message
            return _problem(503, "the source is not ready; retry shortly")
        client = request.client
        origin = f"{self._scheme}://{client.host}:{client.port}" if client else self._scheme + "://"
        limit = self._config.max_body_bytes
        try:
            async with asyncio.timeout(self._config.read_timeout_s):
                body, complete = await _read_limited(request, limit)
        except TimeoutError:
            log.info("http_source.body_timeout", extra={"origin": origin})
            return _problem(408, f"the body did not arrive within {self._config.read_timeout_s} s")
        except ClientDisconnect:
            # The sender gave up before the body was complete and got no answer: it still
            # holds the message and will resend it, so nothing is journalled.
            log.info("http_source.client_disconnected", extra={"origin": origin})
            return Response(status_code=400)

        media_type, charset, status, problem = self._judge(request.headers, body, complete)
        media_type = self._config.media_type or media_type
        if problem is None and self._config.parse_check:
            problem = await parse_problem(
                body, media_type, charset or self._context.default_charset
            )
            status = 422 if problem is not None else status
        inbound = Inbound(
            raw=body,
            media_type=media_type,
            received_at=datetime.now(self._context.timezone),
            origin=origin,
            dedup_key=_key(request.headers.get("idempotency-key")),
            charset=charset,
            correlation_id=_short(request.headers.get("x-correlation-id"), MAX_KEY_CHARS) or None,
            problem=problem,
            # The sender's clock against the receipt time (devices.clock): see `_stamp`.
            **_stamp(body, media_type, charset or self._context.default_charset, request.headers,
                     self._context.timezone),
        )  # fmt: skip
        receipt = await accept(inbound)
        found = {"message_id": receipt.message_id, "duplicate": receipt.duplicate}
        if problem is None:
            return JSONResponse(found, status_code=200 if receipt.duplicate else 202)
        detail = f"{problem.message}; the message was journalled with status ERROR"
        extra: dict[str, Any] = {**found, "bytes": len(body)}
        if problem.location:
            extra["location"] = problem.location
        return _problem(status, detail, close=not complete, extra=extra)

    def _judge(
        self, headers: Headers, body: bytes, complete: bool
    ) -> tuple[str, str | None, int, InputError | None]:
        """Media type, charset, and the answer status with the problem if the body is unusable."""
        parsed = _parse_content_type(headers.get("content-type"))
        media_type, charset = parsed or (DEFAULT_MEDIA_TYPE, None)
        limit = self._config.max_body_bytes
        if not complete:
            reason = f"the body exceeds max_body_bytes ({limit}); the first {limit} bytes were kept"
            return media_type, charset, 413, FramingError(reason, location="HTTP body")
        if parsed is None:
            where = "Content-Type header"
            problem = InputError("not a valid media type", location=where, ack_code="AR")
            return media_type, None, 415, problem
        allowed = self._config.allowed_media_types
        if allowed and not _media_type_allowed(media_type, allowed):
            reason = (
                f"media type {_short(media_type, 80)} is not accepted; use {', '.join(allowed)}"
            )
            problem = InputError(reason, location="Content-Type header", ack_code="AR")
            return media_type, charset, 415, problem
        if charset is not None and not _known_charset(charset):
            reason = f"unknown charset {_short(charset, 40)!r}"
            where = "Content-Type header"
            return (
                media_type,
                None,
                415,
                DecodeError(reason, charset=charset, offset=0, location=where),
            )
        if not body:
            return media_type, charset, 400, FramingError("the body is empty", location="HTTP body")
        return media_type, charset, 202, None


class HttpSourceFactory:
    """Entry point `greenchannel.sources: http`."""

    config_model: ClassVar[type[BaseModel]] = HttpSourceConfig

    def build(self, config: Any, context: ConnectorContext) -> HttpSource:
        """Build an HTTP source; nothing is bound until `start()`."""
        return HttpSource(HttpSourceConfig.model_validate(config), context)


class HttpDestinationConfig(BaseModel):
    """Delivers each message as one HTTP request to a fixed URL."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["http"] = Field(description="Selects the HTTP destination.")
    url: str = Field(description="Where to send, e.g. https://lis.example/api/results.")
    method: Literal["POST", "PUT"] = Field("POST", description="HTTP method.")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Static request headers. Content-Type comes from the message's media type.",
    )
    bearer_token: SecretStr | None = Field(
        None,
        description="Sent as `Authorization: Bearer <token>`; supply it from the environment "
        "or a secrets file, never from the repository.",
    )
    idempotency_header: str | None = Field(
        "Idempotency-Key",
        description="Header carrying `<channel>/<destination>/<message id>`, the same on every "
        "retry, so a receiver can recognise a resend. Null sends none.",
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Deadline for connecting.")
    timeout_s: float = Field(
        30.0, gt=0, description="Deadline for a whole attempt: connect, send and read the reply."
    )
    max_reply_bytes: int = Field(
        64 * 1024, gt=0, description="The reply body is kept (with the attempt) up to this size."
    )
    retry_on_status: tuple[int | Literal["4xx", "5xx"], ...] = Field(
        (408, 425, 429, "5xx"),
        description="Response statuses that are retried with backoff; any other 3xx/4xx/5xx "
        "puts the message in ERROR. Codes (503) or classes (5xx).",
    )
    ca_file: Path | None = Field(
        None, description="PEM file of the CA certificates to trust for https (e.g. a hospital CA)."
    )

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        try:
            url = httpx.URL(value)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a valid URL: {exc}") from exc
        if url.scheme not in ("http", "https") or not url.host:
            raise ValueError("must be an absolute http:// or https:// URL")
        return value

    @field_validator("headers")
    @classmethod
    def _check_headers(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if not _HEADER_NAME.fullmatch(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if name.lower() in _RESERVED_HEADERS:
                raise ValueError(f"{name} is set by the destination itself")
            if any(char in header for char in "\r\n\0"):
                raise ValueError(f"the value of {name} contains a line break or NUL")
        return value

    @field_validator("idempotency_header")
    @classmethod
    def _check_idempotency_header(cls, value: str | None) -> str | None:
        if value is not None and not _HEADER_NAME.fullmatch(value):
            raise ValueError(f"{value!r} is not a valid header name")
        return value

    @field_validator("retry_on_status")
    @classmethod
    def _check_statuses(cls, value: tuple[int | str, ...]) -> tuple[int | str, ...]:
        for status in value:
            if isinstance(status, int) and not 300 <= status <= 599:
                raise ValueError(f"{status} is not an HTTP error status (300-599)")
        return value


# Every httpx request error, mapped to what the engine does with the message. A test fails
# when httpx grows an exception that is not listed here.
HTTPX_ERROR_CLASSES: Mapping[type[httpx.RequestError], tuple[type[DeliveryError], str]] = {
    httpx.RequestError: (RetryableDeliveryError, "the request failed"),
    httpx.TransportError: (RetryableDeliveryError, "the connection failed"),
    httpx.TimeoutException: (RetryableDeliveryError, "timed out"),
    httpx.ConnectTimeout: (RetryableDeliveryError, "timed out connecting"),
    httpx.ReadTimeout: (RetryableDeliveryError, "timed out waiting for the reply"),
    httpx.WriteTimeout: (RetryableDeliveryError, "timed out sending the request"),
    httpx.PoolTimeout: (RetryableDeliveryError, "no free connection in the pool"),
    httpx.NetworkError: (RetryableDeliveryError, "network error"),
    httpx.ConnectError: (RetryableDeliveryError, "cannot connect (refused or unreachable)"),
    httpx.ReadError: (RetryableDeliveryError, "the connection broke while reading the reply"),
    httpx.WriteError: (RetryableDeliveryError, "the connection broke while sending"),
    httpx.CloseError: (RetryableDeliveryError, "the connection failed to close"),
    httpx.ProxyError: (RetryableDeliveryError, "the proxy failed"),
    httpx.ProtocolError: (RetryableDeliveryError, "HTTP protocol error"),
    httpx.RemoteProtocolError: (RetryableDeliveryError, "the receiver broke the HTTP protocol"),
    # Errors in the request we build: resending the same request cannot succeed.
    httpx.LocalProtocolError: (RejectedDeliveryError, "the request is not valid HTTP"),
    httpx.UnsupportedProtocol: (RejectedDeliveryError, "the URL scheme is not http or https"),
    httpx.DecodingError: (RejectedDeliveryError, "the reply could not be decoded"),
    httpx.TooManyRedirects: (RejectedDeliveryError, "too many redirects"),
}


def convert_httpx_error(exc: httpx.RequestError, target: str) -> DeliveryError:
    """The delivery error for an httpx failure, by the most specific class in the table."""
    for cls in type(exc).__mro__:
        if cls in HTTPX_ERROR_CLASSES:
            error_class, reason = HTTPX_ERROR_CLASSES[cls]
            return error_class(f"{reason} ({target}, {type(exc).__name__})")
    return RetryableDeliveryError(f"the request failed ({target}, {type(exc).__name__})")


class HttpDestination:
    """Sends each message with one reused httpx client; the status decides the outcome."""

    def __init__(self, config: HttpDestinationConfig) -> None:
        self._config = config
        self._client: httpx.AsyncClient | None = None  # made on first use, then reused
        self._client_lock = asyncio.Lock()
        url = httpx.URL(config.url)
        port = f":{url.port}" if url.port else ""
        self._target = f"{url.scheme}://{url.host}{port}{url.path}"  # no credentials or query
        self._retry_codes = {s for s in config.retry_on_status if isinstance(s, int)}
        self._retry_classes = {int(s[0]) for s in config.retry_on_status if isinstance(s, str)}

    async def send(self, outbound: Outbound) -> Delivered:
        """Deliver one message; raise RetryableDeliveryError or RejectedDeliveryError."""
        headers = {"Content-Type": outbound.media_type}
        if self._config.idempotency_header:
            key = f"{outbound.channel}/{outbound.destination}/{outbound.message_id}"
            headers[self._config.idempotency_header] = key
        with self._delivery_errors():
            async with asyncio.timeout(self._config.timeout_s):
                client = await self._open_client()
                async with client.stream(
                    self._config.method, self._config.url, content=outbound.payload, headers=headers
                ) as response:
                    reply = await _read_capped(response, self._config.max_reply_bytes)
        status = response.status_code
        if 200 <= status < 300:
            return Delivered(reply=reply or None, detail=f"HTTP {status}")
        described = _describe_reply(reply, response.headers.get("content-type", ""))
        message = f"HTTP {status} from {self._target}{described}"
        if status in self._retry_codes or status // 100 in self._retry_classes:
            raise RetryableDeliveryError(message)
        if 300 <= status < 400:
            raise RejectedDeliveryError(
                message, hint="redirects are not followed; set the final url"
            )
        raise RejectedDeliveryError(message)

    async def aclose(self) -> None:
        """Close the pooled connections."""
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def _open_client(self) -> httpx.AsyncClient:
        async with self._client_lock:
            if self._client is None:
                ca_file = self._config.ca_file
                try:
                    # Loading the trust store reads files: not on the event loop.
                    verify = await asyncio.to_thread(ssl.create_default_context, cafile=ca_file)
                except (OSError, ssl.SSLError) as exc:
                    raise RetryableDeliveryError(
                        "cannot load the CA certificates of destination.ca_file",
                        hint="fix the file; the messages stay queued until then",
                    ) from exc
                headers = {"Accept-Encoding": "identity", "User-Agent": "greenchannel"}
                headers.update(self._config.headers)
                if self._config.bearer_token is not None:
                    token = self._config.bearer_token.get_secret_value()
                    headers["Authorization"] = f"Bearer {token}"
                self._client = httpx.AsyncClient(
                    headers=headers,
                    timeout=httpx.Timeout(
                        self._config.timeout_s, connect=self._config.connect_timeout_s
                    ),
                    follow_redirects=False,
                    trust_env=False,  # settings come from the channel file, not the environment
                    verify=verify,
                )
            return self._client

    @contextlib.contextmanager
    def _delivery_errors(self) -> Iterator[None]:
        """Translate httpx failures and our own deadline into delivery errors, once, here."""
        try:
            yield
        except httpx.RequestError as exc:
            raise convert_httpx_error(exc, self._target) from exc
        except TimeoutError as exc:
            reason = f"no complete reply within {self._config.timeout_s} s ({self._target})"
            raise RetryableDeliveryError(reason) from exc


class HttpDestinationFactory:
    """Entry point `greenchannel.destinations: http`."""

    config_model: ClassVar[type[BaseModel]] = HttpDestinationConfig

    def build(self, config: Any, context: ConnectorContext) -> HttpDestination:
        """Build the destination; its client is made on the first send."""
        config = HttpDestinationConfig.model_validate(config)
        if config.ca_file is not None and not config.ca_file.is_file():
            raise ConfigError(f"no CA file at {config.ca_file}", key="destination.ca_file")
        return HttpDestination(config)


class _QuietServer(uvicorn.Server):
    """A uvicorn server that leaves the process's signal handlers to the engine."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class _AuthGate:
    """ASGI middleware: every request passes `context.authorize` before anything else."""

    def __init__(self, app: ASGIApp, authorize: Authorize | None) -> None:
        self._app = app
        self._authorize = authorize

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._authorize is not None and scope["type"] == "http":
            if not await self._authorize(Headers(scope=scope).get("authorization")):
                response = _problem(
                    401,
                    "a valid bearer token is required",
                    headers={"WWW-Authenticate": 'Bearer realm="greenchannel"'},
                )
                await response(scope, receive, send)
                return
        await self._app(scope, receive, send)


def _problem(
    status: int,
    detail: str,
    *,
    close: bool = True,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> JSONResponse:
    """An RFC 9457 problem document; `close` when the request body may be left unread."""
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status}
    body["detail"] = detail
    all_headers = dict(headers or {})
    if close:
        all_headers["Connection"] = "close"
    return JSONResponse(
        {**body, **(extra or {})},
        status_code=status,
        headers=all_headers,
        media_type="application/problem+json",
    )


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    details = {404: "no endpoint at this path", 405: "this endpoint only accepts POST"}
    detail = details.get(exc.status_code, HTTPStatus(exc.status_code).phrase)
    return _problem(exc.status_code, detail, headers=exc.headers)


async def _read_limited(request: Request, limit: int) -> tuple[bytes, bool]:
    """Read at most `limit` bytes of the body; False if there was more (left unread)."""
    chunks: list[bytes] = []
    size = 0
    async with contextlib.aclosing(request.stream()) as stream:
        async for chunk in stream:
            if size + len(chunk) > limit:
                chunks.append(chunk[: limit - size])
                return b"".join(chunks), False
            chunks.append(chunk)
            size += len(chunk)
    return b"".join(chunks), True


async def _read_capped(response: httpx.Response, limit: int) -> bytes:
    """The first `limit` bytes of a reply, undecoded; the rest is never read."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_raw():
        chunks.append(chunk[: limit - size])
        size += len(chunks[-1])
        if size >= limit:
            break
    return b"".join(chunks)


def _parse_content_type(value: str | None) -> tuple[str, str | None] | None:
    """(media type, charset) from a Content-Type value; None if it is malformed."""
    if value is None or not value.strip():
        return DEFAULT_MEDIA_TYPE, None
    head, _, params = value.partition(";")
    media_type = head.strip().lower()
    if not _MEDIA_TYPE.fullmatch(media_type):
        return None
    charset = None
    for param in params.split(";"):
        name, equals, param_value = param.partition("=")
        if equals and name.strip().lower() == "charset":
            charset = param_value.strip().strip('"').strip().lower() or None
    return media_type, charset


def _media_type_allowed(media_type: str, allowed: tuple[str, ...]) -> bool:
    major = media_type.split("/", 1)[0]
    return media_type in allowed or f"{major}/*" in allowed


def _known_charset(charset: str) -> bool:
    try:
        codecs.lookup(charset)
    except (LookupError, ValueError):
        return False
    return True


def _key(value: str | None) -> str | None:
    """A sender's idempotency key as a dedup key; long ones are hashed to fit the journal."""
    if not value:
        return None
    if len(value) <= MAX_KEY_CHARS:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogateescape")).hexdigest()


def _short(value: str | None, limit: int) -> str:
    """A single printable line of at most `limit` characters."""
    if not value:
        return ""
    return "".join(char if char.isprintable() else "?" for char in value[:limit])


def _describe_reply(reply: bytes, content_type: str) -> str:
    """Positions and codes from an OperationOutcome or problem reply, never its free text."""
    if "json" not in content_type.lower():
        return ""
    try:
        document = json.loads(reply)
    except (ValueError, RecursionError):
        return ""
    if not isinstance(document, dict):
        return ""
    if document.get("resourceType") == "OperationOutcome":
        issues = document.get("issue")
        described = (
            [_describe_issue(i) for i in issues[:3] if isinstance(i, dict)]
            if isinstance(issues, list)
            else []
        )
        return f"; OperationOutcome: {', '.join(described)}" if described else "; OperationOutcome"
    title = document.get("title")
    return f"; {_short(title, 80)}" if isinstance(title, str) and title else ""


def _describe_issue(issue: dict[str, Any]) -> str:
    def text(value: Any) -> str:
        return _short(value, 80) if isinstance(value, str) else "?"

    where = issue.get("expression") or issue.get("location")
    at = f" at {text(where[0])}" if isinstance(where, list) and where else ""
    return f"{text(issue.get('severity'))}/{text(issue.get('code'))}{at}"


def _stamp(
    body: bytes, media_type: str, charset: str, headers: Headers, zone: tzinfo
) -> dict[str, Any]:
    """`sent_at` and `sender` of a POSTed message, for the clock monitor: an HL7 v2 body's
    MSH-7 and MSH-3/MSH-4 (as over MLLP); any other body's HTTP `Date` header (RFC 9110: the
    time the sender made the request, by its own clock, whole seconds), the channel being the
    source. A device's *content* time (an ECG's acquisition) is no sample: a recording may be
    uploaded minutes or days after it was made, which would read as a clock far behind.
    Nothing usable gives nothing, never an error."""
    if media_type.split(";")[0].strip().lower().startswith("x-application/hl7-v2"):
        try:
            header = read_header(body, charset, strict=False)
        except InputError:
            return {}
        return {"sent_at": message_time(header, zone), "sender": sender_of(header)}
    date = headers.get("date")
    if not date:
        return {}
    try:
        sent_at = parsedate_to_datetime(date)
    except (TypeError, ValueError, IndexError):
        return {}
    return {"sent_at": sent_at} if sent_at.tzinfo is not None else {}
