"""The internal source: a channel that listens to nothing outside and is fed by change-event
subscribers inside the engine (`SubscriberContext.accept`), such as FHIR Subscriptions.

Registered under `greenchannel.sources` as `internal`. Its messages are journalled, filtered,
transformed, queued and retried like any other channel's.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from engine.connectors import Accept, ConnectorContext

__all__ = ["InternalSource", "InternalSourceConfig", "InternalSourceFactory"]


class InternalSourceConfig(BaseModel):
    """A source fed from inside the engine by a change-event subscriber."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["internal"] = Field(
        description="Always `internal`: messages come from a subscriber inside the engine."
    )


class InternalSource:
    """Opens nothing; the channel's messages arrive through the engine, not through `serve`."""

    async def start(self) -> None:
        """Nothing to open."""

    async def serve(self, accept: Accept) -> None:
        """Wait until cancelled."""
        await asyncio.Event().wait()

    async def aclose(self) -> None:
        """Nothing to close."""


class InternalSourceFactory:
    """Entry point `greenchannel.sources: internal`."""

    config_model: ClassVar[type[BaseModel]] = InternalSourceConfig

    def build(self, config: Any, context: ConnectorContext) -> InternalSource:
        """Check the config and build the source."""
        InternalSourceConfig.model_validate(config)
        return InternalSource()
