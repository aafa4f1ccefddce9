"""One running engine: database, journal, channel runtime, HTTP API and pruning, wired together.

`Engine.run()` is what `greenchannel serve` runs; tests start it in-process the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from importlib.metadata import entry_points
from typing import Any

import uvicorn
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from starlette.requests import HTTPConnection

from engine import journal
from engine.api import build_api_router
from engine.auth import TokenGate, ensure_admin_token, hash_token
from engine.channels import Channel, load_channel, load_channel_dir
from engine.connectors import Inbound, Receipt
from engine.database import create_database_engine, migrate
from engine.errors import ConfigError
from engine.pipeline import compile_channel
from engine.plugins import Plugins, load_plugins
from engine.runtime import Runtime
from engine.settings import Settings
from engine.stats import Stats
from engine.subscribers import ReportsPending, Subscriber, SubscriberContext, run_subscribers

__all__ = ["Engine"]

log = logging.getLogger(__name__)

MIGRATIONS = "greenchannel.migrations"


class _HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the engine decides how to stop (channels
    first, then HTTP), and uvicorn must not re-raise the signal and kill the process midway."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Engine:
    """Everything one `serve` process runs."""

    def __init__(self, settings: Settings, *, plugins: Plugins | None = None) -> None:
        self.settings = settings
        self.plugins = plugins or load_plugins()
        self.database: AsyncEngine = create_database_engine(settings.resolved_database_url)
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.database, expire_on_commit=False
        )
        self.stats = Stats()
        self.gate = TokenGate(self.database)
        self.runtime = Runtime(
            database=self.database,
            data_dir=settings.data_dir,
            stats=self.stats,
            now=self.now,
            authorize=self.authorize,
            worker_batch=settings.worker_batch,
            processing_gather_s=settings.processing_gather_ms / 1000,
            processing_workers=settings.processing_workers,
            journal_batch_max=settings.journal.batch_max,
            journal_queue_max=settings.journal.queue_max,
            extra={"settings": settings},
        )
        self.http_port: int | None = None
        self.admin_token_file: Any = None
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self.subscribers: dict[str, Subscriber] = {}  # the running ones, by name

    def now(self) -> datetime:
        return datetime.now(tz=self.settings.tz)

    async def authorize(self, authorization: str | None) -> bool:
        return await self.role_for(authorization) is not None

    async def role_for(self, authorization: str | None) -> str | None:
        """The role of the request's token (the settings' admin token is an admin's)."""
        found = await self.identify(authorization)
        return found[0] if found is not None else None

    async def identify(self, authorization: str | None) -> tuple[str, str] | None:
        """(role, name) of the request's token; the settings' admin token is `admin`'s."""
        admin = self.settings.admin_token
        if admin is not None and authorization:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() == "bearer" and hash_token(token.strip()) == hash_token(
                admin.get_secret_value()
            ):
                return "admin", "admin"
        return await self.gate.identify(authorization)

    # -- start-up ------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Migrate the database and make sure an admin token exists."""
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            await migrate(self.database)
            for entry in entry_points(group=MIGRATIONS):
                await entry.load()(self.database)
        except OSError as exc:
            raise ConfigError(
                f"cannot reach the database ({exc.strerror or exc})",
                key="database_url",
                hint="check GREENCHANNEL_DATABASE_URL and that the server is running",
            ) from exc
        except Exception as exc:
            if type(exc).__module__.startswith(("sqlalchemy", "psycopg", "sqlite3")):
                # The driver's first line says which: refused, unknown database, bad password.
                reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:300]
                raise ConfigError(
                    f"cannot open the database: {reason}",
                    key="database_url",
                    hint="check GREENCHANNEL_DATABASE_URL and that the server is running",
                ) from exc
            raise
        self.admin_token_file = await ensure_admin_token(
            self.database, self.settings.data_dir, self.now()
        )
        await self.gate.load()

    def channel_files(self) -> tuple[dict[str, Channel], list[ConfigError]]:
        return load_channel_dir(self.settings.resolved_channels_dir, self.plugins)

    def compile(self, channel: Channel) -> Any:
        return compile_channel(
            channel,
            mappings_dir=self.settings.resolved_mappings_dir,
            plugins=self.plugins,
            default_charset=self.settings.default_charset,
            default_tz=self.settings.tz,
        )

    async def deploy_from_file(self, name: str) -> Channel:
        folder = self.settings.resolved_channels_dir
        path = next(
            (p for p in (folder / f"{name}.yaml", folder / f"{name}.yml") if p.is_file()), None
        )
        channel: Channel | None = None
        if path is not None:
            channel = load_channel(path, self.plugins)
        else:
            files, _ = self.channel_files()
            channel = files.get(name)
        if channel is None or channel.name != name:
            raise ConfigError(f"no channel named {name!r} in {folder}")
        await self.deploy(channel)
        return channel

    async def deploy(self, channel: Channel) -> None:
        compiled = await asyncio.to_thread(self.compile, channel)
        await self.runtime.deploy(compiled)

    async def deploy_all(self) -> list[str]:
        """Deploy every enabled channel; any invalid file refuses the whole start."""
        files, problems = self.channel_files()
        if problems:
            raise ConfigError(
                "\n".join(str(p) for p in problems), hint="fix the channel files listed"
            )
        compiled = [self.compile(c) for c in files.values() if c.spec.enabled]
        for item in compiled:
            await self.runtime.deploy(item)
        return [c.channel.name for c in compiled]

    # -- change-event subscribers ------------------------------------------------------------

    def subscriber_context(self, name: str) -> SubscriberContext:
        """What subscriber `name` gets: the database, and a way into the channels."""
        return SubscriberContext(
            name=name,
            database=self.database,
            data_dir=self.settings.data_dir,
            timezone=self.settings.tz,
            accept=self.accept,
            run_write=self.runtime.writes.run,
            # Plugins read their own sections of the settings (e.g. `clocks`) from here.
            extra={"settings": self.settings},
        )

    def subscribers_pending(self) -> dict[str, int]:
        """Each running subscriber's work beyond its cursor, for those that report it."""
        return {
            name: subscriber.pending()
            for name, subscriber in sorted(self.subscribers.items())
            if isinstance(subscriber, ReportsPending)
        }

    async def accept(self, channel: str, inbound: Inbound) -> Receipt:
        """Journal a message on `channel` as its source would; returns after the commit."""
        return await self.runtime._accept_for(channel)(inbound)

    # -- operations --------------------------------------------------------------------------

    async def journal_counts(
        self,
    ) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str, str], int]]:
        async with self.sessions() as session:
            return (
                await journal.count_by_status(session),
                await journal.count_deliveries_by_status(session),
            )

    async def reprocess(self, ids: list[int]) -> list[int]:
        """Journal each message's raw content again as a new message, in the given order."""
        new_ids: list[int] = []
        channels: set[str] = set()
        now = self.now()
        for start in range(0, len(ids), 200):
            async with self.sessions() as session, session.begin():
                for message_id in ids[start : start + 200]:
                    try:
                        new_id = await journal.reprocess(session, message_id, now)
                    except journal.ContentPrunedError:
                        continue
                    if new_id is not None:
                        new_ids.append(new_id)
                        # The copy is on the original's channel; the original is already in
                        # the session's identity map, so this costs no query.
                        original = await session.get(journal.JournalMessage, message_id)
                        if original is not None:
                            channels.add(original.channel)
        for channel in channels:
            self.runtime.wake(channel)
        return new_ids

    async def prune(self) -> dict[str, int]:
        """Apply the retention settings once; returns how many rows were pruned."""
        retention = self.settings.retention
        now = self.now()
        totals = {"content": 0, "metadata": 0}
        for kind, days, prune in (
            ("content", retention.content_days, journal.prune_content),
            ("metadata", retention.metadata_days, journal.prune_metadata),
        ):
            cutoff = now - timedelta(days=days)
            while True:
                async with self.sessions() as session, session.begin():
                    n = await prune(session, cutoff, retention.batch_size)
                totals[kind] += n
                if n < retention.batch_size:
                    break
        log.info("journal.pruned", extra=totals)
        return totals

    # -- HTTP ----------------------------------------------------------------------------------

    def http_app(self) -> FastAPI:
        # An HTTPConnection, not a Request: websocket endpoints need the token too.
        async def require_token(request: HTTPConnection) -> None:
            found = await self.identify(request.headers.get("authorization"))
            role, name = found if found is not None else (None, None)
            request.state.role = role  # what `engine.auth.require_role` checks
            request.state.token_name = name  # who acted (`engine.auth.token_name`)
            if role is None:
                raise HTTPException(
                    401,
                    "a valid API token is required: send 'Authorization: Bearer <token>' "
                    f"(the first admin token is in {self.settings.data_dir / 'admin.token'})",
                    headers={"WWW-Authenticate": "Bearer"},
                )

        app = FastAPI(
            title="greenchannel",
            docs_url=None,
            redoc_url=None,
            openapi_url=None,
            dependencies=[Depends(require_token)],
        )
        app.state.engine = self
        app.include_router(build_api_router())
        for name, build in sorted(self.plugins.routers.items()):
            router = build(self.database)
            app.include_router(router)
            log.info("http.router_mounted", extra={"router": name})

        @app.get("/api/openapi.json", include_in_schema=False)
        async def openapi() -> JSONResponse:
            return JSONResponse(app.openapi())

        return app

    @contextlib.contextmanager
    def _stop_on_signals(self) -> Iterator[asyncio.Event]:
        stop = self._stop
        loop = asyncio.get_running_loop()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError):  # not the main thread
                pass
        try:
            yield stop
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)

    def stop(self) -> None:
        """Ask a running engine to stop gracefully (what SIGTERM does)."""
        self._stop.set()

    def _bind(self) -> socket.socket:
        host, port = self.settings.http_host, self.settings.http_port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(
                f"cannot listen on {host}:{port} ({exc.strerror})",
                key="http_port",
                hint="choose another --http-port or stop what is using it",
            ) from exc
        sock.listen(1024)
        sock.setblocking(False)
        self.http_port = sock.getsockname()[1]
        return sock

    # -- run -----------------------------------------------------------------------------------

    async def run(self, on_ready: Callable[[Engine], None] | None = None) -> None:
        """Start everything and serve until cancelled or a stop signal arrives."""
        # Signals are ours from the first instant: a SIGTERM during start-up stops cleanly too.
        with self._stop_on_signals() as stop:
            await self._run(stop, on_ready)

    async def _run(self, stop: asyncio.Event, on_ready: Callable[[Engine], None] | None) -> None:
        await self.prepare()
        sock = self._bind()
        app = self.http_app()
        server = _HttpServer(
            uvicorn.Config(
                app,
                lifespan="off",
                log_config=None,
                access_log=False,
                timeout_graceful_shutdown=5,
            )
        )
        scheduler = AsyncIOScheduler(timezone=self.settings.tz)
        stopping: float | None = None
        try:
            # uvicorn's lifespan is off, so the plugin routers' own lifespans (each closes
            # what its router opened, database connections above all) run here, around
            # everything, ending after the HTTP server; they never ran before, and their
            # connections stayed open until the process ended.
            async with app.router.lifespan_context(app), asyncio.TaskGroup() as group:
                started = asyncio.Event()
                runtime_task = group.create_task(self.runtime.run(started), name="runtime")
                await started.wait()
                await self.deploy_all()
                # After the channels: what subscribers accept has somewhere to go.
                subscribers_task = group.create_task(
                    run_subscribers(
                        self.plugins.subscribers, self.subscriber_context, self.subscribers
                    ),
                    name="subscribers",
                )
                http_task = group.create_task(server.serve(sockets=[sock]), name="http")
                scheduler.add_job(
                    self.prune,
                    "interval",
                    minutes=self.settings.retention.interval_minutes,
                    id="prune",
                    max_instances=1,
                    coalesce=True,
                )
                scheduler.start()
                # uvicorn offers only a flag for "started"; it flips within milliseconds.
                while not server.started and not http_task.done():  # noqa: ASYNC110
                    await asyncio.sleep(0.02)
                self.ready.set()
                if on_ready is not None:
                    on_ready(self)
                await stop.wait()
                # Each stage is logged, so that a stop that hangs (systemd kills it after its
                # timeout) shows in the log where it stands; `kill -USR1` dumps the stacks.
                stopping = time.monotonic()
                log.info("engine.stopping")
                # Subscribers and sources stop first so nothing new arrives; workers finish
                # their batch. A subscriber's unfinished events come again after the restart.
                subscribers_task.cancel()
                await asyncio.wait([subscribers_task])
                log.info("engine.stopping.subscribers_stopped")
                await self.runtime.shutdown()
                log.info("engine.stopping.channels_undeployed")
                server.should_exit = True
                await http_task
                log.info("engine.stopping.http_closed")
                runtime_task.cancel()
        finally:
            with contextlib.suppress(Exception):
                scheduler.shutdown(wait=False)
            sock.close()
            await self.database.dispose()
        if stopping is not None:
            log.info("engine.stopped", extra={"seconds": round(time.monotonic() - stopping, 3)})
