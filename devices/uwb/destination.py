"""The `uwb-zones` destination: what a UWB channel delivers to. Each message (a Pozyx or Sewio
position message, a zone change, a badge tap) goes through `UwbProcessor`: zone entries and
exits of bound wristbands into their Encounters, taps into Observations.

Registered under `greenchannel.destinations` as `uwb-zones`. A payload that cannot be read or a
tag nobody registered is rejected (the message goes to ERROR with the reason and can be
reprocessed once the tag is registered); an Encounter not in the store yet, or a busy database,
is retried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from devices.clock.config import clock_settings
from devices.clock.reader import SavedClocks
from devices.clock.registry import source_id_for
from devices.uwb.errors import UnknownTag, UwbPayloadError
from devices.uwb.positions import UwbProcessor
from devices.uwb.zones import load_zones
from engine.connectors import ConnectorContext, Delivered, Outbound
from engine.errors import RejectedDeliveryError, RetryableDeliveryError
from fhir_store import FhirStore, FhirStoreError

__all__ = ["UwbZonesConfig", "UwbZonesDestination", "UwbZonesDestinationFactory"]


class UwbZonesConfig(BaseModel):
    """Applies UWB messages to the wristbands' encounters in the built-in FHIR store."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["uwb-zones"] = Field(description="Always `uwb-zones`.")
    zones_file: Path | None = Field(
        None, description="The zones file; default config/zones.yaml of the installation."
    )


class UwbZonesDestination:
    def __init__(self, processor: UwbProcessor, store: FhirStore) -> None:
        self._processor = processor
        self._store = store

    async def send(self, outbound: Outbound) -> Delivered:
        try:
            outcome = await self._processor.handle(outbound.payload)
        except (UwbPayloadError, UnknownTag) as exc:
            raise RejectedDeliveryError(str(exc)) from exc
        except FhirStoreError as exc:
            message = f"FHIR store {exc.status} {exc.code}: {exc.message}"
            if exc.retryable:
                raise RetryableDeliveryError(message) from exc
            raise RejectedDeliveryError(message) from exc
        return Delivered(detail=outcome.detail())

    async def aclose(self) -> None:
        await self._store.aclose()


class UwbZonesDestinationFactory:
    """Entry point `greenchannel.destinations: uwb-zones`."""

    config_model: ClassVar[type[BaseModel]] = UwbZonesConfig

    def build(self, config: Any, context: ConnectorContext) -> UwbZonesDestination:
        checked = (
            config if isinstance(config, UwbZonesConfig) else UwbZonesConfig.model_validate(config)
        )
        zones = load_zones(checked.zones_file)  # a wrong zones file refuses the deploy
        # references are not checked: the HIS's resources arrive in any order (as adapters/fhir)
        store = FhirStore(
            context.database,
            timezone=context.timezone,
            run_write=context.run_write,
            check_references=False,
        )
        # the gateway's clock, as the monitor estimates it from the fixes' own times
        clocks = clock_settings(getattr(context.extra.get("settings"), "clocks", None))
        processor = UwbProcessor(
            context.database,
            store,
            zones,
            context.timezone,
            run_write=context.run_write,
            clocks=SavedClocks(context.database, clocks),
            clock_source=source_id_for(context.channel, None),
        )
        return UwbZonesDestination(processor, store)
