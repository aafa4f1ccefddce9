"""The greenchannel engine: journal, channel runtime, queues, mapping language, API and CLI.

It knows no protocol, no FHIR store and no clinical concept: connectors, parsers, HTTP
routers and commands arrive through entry points (see `engine.plugins`).
"""

from __future__ import annotations

from engine.connectors import (
    Accept,
    ConnectorContext,
    Delivered,
    Destination,
    DestinationFactory,
    Inbound,
    Outbound,
    Parser,
    Receipt,
    Source,
    SourceFactory,
)
from engine.errors import (
    ConfigError,
    DecodeError,
    DeliveryError,
    FramingError,
    GreenchannelError,
    InputError,
    MappingError,
    ParseError,
    RejectedDeliveryError,
    RetryableDeliveryError,
)

__all__ = [
    "Accept",
    "ConfigError",
    "ConnectorContext",
    "DecodeError",
    "Delivered",
    "DeliveryError",
    "Destination",
    "DestinationFactory",
    "FramingError",
    "GreenchannelError",
    "Inbound",
    "InputError",
    "MappingError",
    "Outbound",
    "ParseError",
    "Parser",
    "Receipt",
    "RejectedDeliveryError",
    "RetryableDeliveryError",
    "Source",
    "SourceFactory",
]
