"""The registry staff's upload workflow: per case and registry an upload state (draft →
validated → queued → sending → accepted / rejected / retry_wait → dead_letter), field
overrides with reasons that every rebuild applies, the append-only upload log, and the
reconciliation of a month. The record itself comes from `pathways.registry`; the transport is
the registry's channel and its destination connector (`adapters.registry`)."""

from __future__ import annotations

from pathways.registry_upload.schema import migrate

__all__ = ["migrate"]
