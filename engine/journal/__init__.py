"""The message journal: every message in and out, with its raw bytes, status and delivery attempts.

This package owns the journal tables and every query on them. Sessions and connections are passed
in by the caller, who owns the transaction; nothing here commits except `JournalWriter`, the
group-commit writer that makes "ACK after journal" cheap.
"""

from __future__ import annotations

from engine.journal._admin import (
    ContentPrunedError,
    MessageDetail,
    count_by_status,
    count_deliveries_by_status,
    get_message,
    list_messages,
    matching_message_ids,
    prune_content,
    prune_metadata,
    reprocess,
)
from engine.journal._tables import (
    ContentKind,
    DeliveryAttempt,
    DeliveryStatus,
    DestinationDelivery,
    JournalMessage,
    MessageContent,
    MessageStatus,
    MessageSummary,
)
from engine.journal._work import (
    QueuedDelivery,
    queued_deliveries,
    received_batch,
    record_attempts,
    refresh_message_status,
    store_outcomes,
)
from engine.journal._writer import JournalWriter, journal_inbound

__all__ = [
    "ContentKind",
    "ContentPrunedError",
    "DeliveryAttempt",
    "DeliveryStatus",
    "DestinationDelivery",
    "JournalMessage",
    "JournalWriter",
    "MessageContent",
    "MessageDetail",
    "MessageStatus",
    "MessageSummary",
    "QueuedDelivery",
    "count_by_status",
    "count_deliveries_by_status",
    "get_message",
    "journal_inbound",
    "list_messages",
    "matching_message_ids",
    "prune_content",
    "prune_metadata",
    "queued_deliveries",
    "received_batch",
    "record_attempts",
    "refresh_message_status",
    "reprocess",
    "store_outcomes",
]
