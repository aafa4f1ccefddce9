"""Who may use the pathway API: the roles of DESIGN.md's tokens, one place for every router.

Reads (cases, timelines, clocks, archive, QC, alerts, the score list) are for clinicians,
registry staff and admins; manual activation, node entries and corrections, facts and scores
stored on a case are for clinicians and admins. A token of another role gets 403.
"""

from __future__ import annotations

from fastapi import Depends
from fastapi.params import Depends as DependsParam

from engine.auth import require_role

__all__ = ["ENTRY_ROLES", "READ_ROLES", "may_enter", "may_read"]

READ_ROLES = ("clinician", "registry-staff", "admin")
ENTRY_ROLES = ("clinician", "admin")

may_read: DependsParam = Depends(require_role(*READ_ROLES))
may_enter: DependsParam = Depends(require_role(*ENTRY_ROLES))
