"""FHIR R4 Subscriptions, delivered from outside the store: a change-event subscriber that
matches each committed change against the active Subscriptions, and the rest-hook destination
that sends the notifications of the `fhir-subscriptions` channel.

The subscriber (entry point `greenchannel.subscribers: fhir-subscriptions`) follows the store's
`ChangeFeed` under its own cursor. A `requested` Subscription is checked and set `active` (or
`error`, saying why). For a created or updated resource (R4 sends nothing on delete) it asks the
store's search whether the resource matches each active Subscription of its type (the criteria
plus `_id`). A rest-hook match becomes a message of the `fhir-subscriptions` channel, whose
dedup key (subscription and event number) makes an event seen twice one message; the channel's
`fhir-rest-hook` destination then POSTs to the endpoint (or, with a payload, PUTs the resource
version to `[endpoint]/[type]/[id]`) with the Subscription's headers, queued and retried, every
attempt in the journal. After `error_after_attempts` failed attempts the Subscription goes to
`error`; from its `end` on, to `off`. A websocket match sends `ping <id>` to the sockets bound
to it (`/fhir/websocket`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapters.fhir_websocket import Pings, pings_for
from adapters.http import HttpDestination, HttpDestinationConfig
from engine.connectors import ConnectorContext, Delivered, Inbound, Outbound
from engine.errors import DeliveryError, RejectedDeliveryError, RetryableDeliveryError
from engine.subscribers import SubscriberContext
from fhir_store import (
    ChangeEvent,
    ChangeFeed,
    FhirStore,
    FhirStoreError,
    Gone,
    NotFound,
    StoreUnavailable,
    VersionConflict,
    parse_search,
)

__all__ = [
    "CHANNEL",
    "RestHookDestination",
    "RestHookDestinationConfig",
    "RestHookDestinationFactory",
    "SubscriptionSubscriber",
    "SubscriptionSubscriberFactory",
    "parse_criteria",
]

log = logging.getLogger(__name__)

CHANNEL = "fhir-subscriptions"  # the channel whose destination delivers rest-hook notifications
MEDIA_TYPE = "application/json"
_CHANNEL_TYPES = ("rest-hook", "websocket")
_PAGE = 1000


@dataclass(frozen=True, slots=True)
class _Active:
    """An active Subscription as the subscriber matches against it."""

    id: str
    resource_type: str
    pairs: tuple[tuple[str, str], ...]
    channel_type: str
    end: datetime | None  # Subscription.end: no notifications from then on


def parse_criteria(criteria: object) -> tuple[str, list[tuple[str, str]]]:
    """`Observation?code=http://loinc.org|8867-4` as its type and decoded query pairs.

    Raises ValueError saying what is wrong; the search parameters are checked as a strict
    search would (an unknown parameter is an error, not ignored).
    """
    if not isinstance(criteria, str) or not criteria.strip():
        raise ValueError("Subscription.criteria is missing; give a search like Observation?code=…")
    resource_type, _, query = criteria.strip().partition("?")
    pairs = parse_qsl(query, keep_blank_values=True)
    try:
        parse_search(resource_type, [("_id", "x"), *pairs], strict=True)
    except FhirStoreError as error:
        raise ValueError(
            f"Subscription.criteria is not a search this server answers: {error}"
        ) from None
    return resource_type, pairs


def _check(subscription: dict[str, Any]) -> _Active:
    """The Subscription as matched, or ValueError saying why it cannot become active."""
    resource_type, pairs = parse_criteria(subscription.get("criteria"))
    channel = subscription.get("channel")
    channel_type = channel.get("type") if isinstance(channel, dict) else None
    if channel_type not in _CHANNEL_TYPES:
        raise ValueError(
            f"Subscription.channel.type {channel_type!r} is not supported; use rest-hook or "
            "websocket"
        )
    if channel_type == "rest-hook":
        assert isinstance(channel, dict)
        _http_config(channel, "POST", _endpoint(channel))
    end = _end_of(subscription.get("end"))
    return _Active(str(subscription["id"]), resource_type, tuple(pairs), str(channel_type), end)


def _end_of(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        end = datetime.fromisoformat(str(value))
    except ValueError:
        end = None
    if end is None or end.tzinfo is None:
        raise ValueError("Subscription.end must be an instant with a time zone")
    return end


def _endpoint(channel: dict[str, Any]) -> str:
    endpoint = channel.get("endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        raise ValueError("Subscription.channel.endpoint is required for a rest-hook")
    return endpoint


def _http_config(channel: dict[str, Any], method: str, url: str) -> HttpDestinationConfig:
    headers: dict[str, str] = {}
    for index, header in enumerate(channel.get("header") or []):
        name, colon, value = str(header).partition(":")
        if not colon:
            raise ValueError(f"Subscription.channel.header[{index}] is not 'Name: value'")
        headers[name.strip()] = value.strip()
    try:
        return HttpDestinationConfig(kind="http", url=url, method=method, headers=headers)
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"])
        field = "endpoint" if where == "url" else "header"
        raise ValueError(f"Subscription.channel.{field}: {problem['msg']}") from None


class SubscriptionSubscriber:
    """Matches change events against the active Subscriptions and sends the notifications."""

    def __init__(self, context: SubscriberContext, *, poll_interval_s: float = 1.0) -> None:
        self._context = context
        self._store = FhirStore(
            context.database, timezone=context.timezone, run_write=context.run_write
        )
        self._feed = ChangeFeed(
            context.database, poll_interval_s=poll_interval_s, run_write=context.run_write
        )
        self._pings: Pings = pings_for(context.database)
        self._active: dict[str, dict[str, _Active]] = {}  # by resource type, then id

    async def run(self) -> None:
        """Follow the change events from this subscriber's cursor until cancelled."""
        # Notifications are about changes from now on: a first start skips the history. The
        # cursor is placed before the Subscriptions are read, so one created in between is
        # an event after the cursor, not lost between the two.
        await self._feed.start(self._context.name, new="future")
        await self._load()
        async for events in self._feed.follow(self._context.name):
            for event in events:
                await self._handle(event)
            await self._feed.commit(self._context.name, events[-1].sequence)

    async def aclose(self) -> None:
        """Close the store's write connections."""
        await self._store.aclose()

    async def _load(self) -> None:
        """Every active or requested Subscription, as it is now."""
        offset = 0
        while True:
            query = parse_search(
                "Subscription",
                [("status", "active,requested"), ("_count", str(_PAGE)), ("_offset", str(offset))],
                strict=True,
            )
            page = await self._store.search(query)
            for content in page.contents:
                await self._consider(json.loads(content))
            if not page.more:
                return
            offset += _PAGE

    async def _handle(self, event: ChangeEvent) -> None:
        if event.resource_type == "Subscription":
            await self._refresh(event.resource_id)
            return
        if event.action == "delete":
            return  # R4: criteria apply to the new content; a deletion has none
        now = datetime.now(UTC)
        for active in list(self._active.get(event.resource_type, {}).values()):
            if active.end is not None and active.end <= now:
                await self._refresh(active.id)  # its time is up: it goes off
                continue
            if await self._matches(active, event):
                await self._notify(active, event)

    async def _refresh(self, subscription_id: str) -> None:
        try:
            subscription = await self._store.read("Subscription", subscription_id)
        except (NotFound, Gone):
            self._forget(subscription_id)
            return
        await self._consider(subscription)

    async def _consider(self, subscription: dict[str, Any]) -> None:
        subscription_id = str(subscription.get("id"))
        self._forget(subscription_id)
        status = subscription.get("status")
        if status not in ("requested", "active"):
            return
        try:
            active = _check(subscription)
        except ValueError as problem:
            await _store_status(self._store, subscription, "error", str(problem))
            return
        if active.end is not None and active.end <= datetime.now(UTC):
            await _store_status(self._store, subscription, "off", None)
            return
        if status == "requested":
            # Its own change event comes next and finds it active.
            await _store_status(self._store, subscription, "active", None)
            return
        self._active.setdefault(active.resource_type, {})[active.id] = active

    def _forget(self, subscription_id: str) -> None:
        for by_id in self._active.values():
            by_id.pop(subscription_id, None)

    async def _matches(self, active: _Active, event: ChangeEvent) -> bool:
        pairs = [("_id", event.resource_id), *active.pairs, ("_count", "1")]
        try:
            query = parse_search(active.resource_type, pairs, strict=False)
            return bool((await self._store.search(query)).contents)
        except StoreUnavailable:
            raise  # the subscriber is restarted and reads the event again
        except FhirStoreError as error:
            # Criteria the search refuses when it runs would stop every later event here:
            # the Subscription goes to error instead, saying why.
            self._forget(active.id)
            try:
                subscription = await self._store.read("Subscription", active.id)
            except (NotFound, Gone):
                return False
            reason = f"Subscription.criteria failed when searched: {error}"
            await _store_status(self._store, subscription, "error", reason)
            return False

    async def _notify(self, active: _Active, event: ChangeEvent) -> None:
        if active.channel_type == "websocket":
            self._pings.ping(active.id)
            return
        note = {
            "subscription": f"Subscription/{active.id}",
            "event": event.sequence,
            "action": event.action,
            "focus": event.reference,
        }
        receipt = await self._context.accept(
            CHANNEL,
            Inbound(
                raw=json.dumps(note).encode(),
                media_type=MEDIA_TYPE,
                received_at=datetime.now(self._context.timezone),
                origin=f"fhir-subscription://{active.id}",
                dedup_key=f"Subscription/{active.id}/event/{event.sequence}",
            ),
        )
        log.info(
            "fhir_subscription.notification_queued",
            extra={"message_id": receipt.message_id, "duplicate": receipt.duplicate},
        )


async def _store_status(
    store: FhirStore, subscription: dict[str, Any], status: str, error: str | None
) -> None:
    """Store the Subscription with a new status (and `error` text), unless it changed since."""
    updated = {key: value for key, value in subscription.items() if key != "error"}
    updated["status"] = status
    if error is not None:
        updated["error"] = error[:1000]
    version = int(subscription.get("meta", {}).get("versionId", 0))
    try:
        await store.update("Subscription", str(subscription["id"]), updated, version or None)
    except VersionConflict:
        pass  # changed meanwhile: its newer version's own event decides


class SubscriptionSubscriberFactory:
    """Entry point `greenchannel.subscribers: fhir-subscriptions`."""

    def build(self, context: SubscriberContext) -> SubscriptionSubscriber:
        """The subscriber on the engine's database; its cursor is named after the entry point."""
        return SubscriptionSubscriber(context)


class RestHookDestinationConfig(BaseModel):
    """Sends the rest-hook notifications of FHIR Subscriptions (the `fhir-subscriptions`
    channel): each message names a Subscription and the resource version that matched it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["fhir-rest-hook"] = Field(description="Always `fhir-rest-hook`.")
    error_after_attempts: int = Field(
        10,
        ge=1,
        description="After this many failed attempts of one notification, the Subscription is "
        "set to status `error` (with the reason in Subscription.error) and the message to ERROR.",
    )


class RestHookDestination:
    """Delivers one notification with the adapters.http destination, to the endpoint the
    Subscription has at the time of the attempt."""

    def __init__(self, store: FhirStore, config: RestHookDestinationConfig) -> None:
        self._store = store
        self._config = config
        self._http: dict[str, HttpDestination] = {}  # by the JSON of their config

    async def send(self, outbound: Outbound) -> Delivered:
        """Deliver one notification; raise RetryableDeliveryError or RejectedDeliveryError."""
        subscription_id, focus = _note_of(outbound.payload)
        subscription = await self._subscription(subscription_id)
        channel = subscription.get("channel")
        if not isinstance(channel, dict) or channel.get("type") != "rest-hook":
            raise RejectedDeliveryError(
                f"Subscription/{subscription_id} is no longer a rest-hook; nothing was sent"
            )
        try:
            method, url, body, media_type = await self._request(channel, focus)
            http = self._http_for(_http_config(channel, method, url))
        except ValueError as problem:
            raise RejectedDeliveryError(f"Subscription/{subscription_id}: {problem}") from None
        request = Outbound(
            message_id=outbound.message_id,
            channel=outbound.channel,
            destination=outbound.destination,
            payload=body,
            media_type=media_type,
            attempt=outbound.attempt,
        )
        try:
            return await http.send(request)
        except DeliveryError as error:
            final = isinstance(error, RejectedDeliveryError)
            if final or outbound.attempt >= self._config.error_after_attempts:
                await _store_status(self._store, subscription, "error", str(error))
                raise RejectedDeliveryError(
                    f"{error}; Subscription/{subscription_id} is now in error",
                    hint="fix the receiver, then set the Subscription's status back to requested",
                ) from error
            raise

    async def aclose(self) -> None:
        """Close the HTTP clients and the store's write connections."""
        for http in self._http.values():
            await http.aclose()
        self._http.clear()
        await self._store.aclose()

    async def _subscription(self, subscription_id: str) -> dict[str, Any]:
        try:
            subscription = await self._store.read("Subscription", subscription_id)
        except (NotFound, Gone):
            raise RejectedDeliveryError(
                f"Subscription/{subscription_id} no longer exists; nothing was sent"
            ) from None
        except StoreUnavailable as error:
            raise RetryableDeliveryError(str(error)) from error
        if subscription.get("status") != "active":
            raise RejectedDeliveryError(
                f"Subscription/{subscription_id} is {subscription.get('status')}, not active; "
                "nothing was sent"
            )
        return subscription

    async def _request(self, channel: dict[str, Any], focus: str) -> tuple[str, str, bytes, str]:
        """R4 rest-hook: without a payload, an empty POST to the endpoint; with one, a PUT of
        the resource version to `[endpoint]/[type]/[id]`."""
        endpoint = _endpoint(channel)
        payload = channel.get("payload")
        if not payload:
            return "POST", endpoint, b"", "application/fhir+json"
        resource_type, resource_id, _, version = focus.split("/")
        try:
            resource = await self._store.vread(resource_type, resource_id, version)
        except (NotFound, Gone):
            raise ValueError(f"{focus} is no longer readable") from None
        body = json.dumps(resource, ensure_ascii=False).encode()
        url = f"{endpoint.rstrip('/')}/{resource_type}/{resource_id}"
        return "PUT", url, body, str(payload)

    def _http_for(self, config: HttpDestinationConfig) -> HttpDestination:
        key = config.model_dump_json()
        http = self._http.get(key)
        if http is None:
            http = self._http[key] = HttpDestination(config)
        return http


def _note_of(payload: bytes) -> tuple[str, str]:
    """The Subscription id and the focus reference of a notification message."""
    try:
        note = json.loads(payload)
        subscription = note["subscription"].removeprefix("Subscription/")
        focus = note["focus"]
        if not isinstance(focus, str) or focus.count("/") != 3:
            raise ValueError("focus")
        return str(subscription), focus
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RejectedDeliveryError(
            "the message is not a FHIR Subscription notification (subscription, focus); "
            "only the fhir-subscriptions channel sends to fhir-rest-hook"
        ) from None


class RestHookDestinationFactory:
    """Entry point `greenchannel.destinations: fhir-rest-hook`."""

    config_model: ClassVar[type[BaseModel]] = RestHookDestinationConfig

    def build(self, config: Any, context: ConnectorContext) -> RestHookDestination:
        """A destination reading the Subscriptions from the FHIR store in `context.database`."""
        checked = RestHookDestinationConfig.model_validate(config)
        store = FhirStore(context.database, timezone=context.timezone, run_write=context.run_write)
        return RestHookDestination(store, checked)
