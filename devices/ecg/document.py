"""The recording and its machine reading as one plain JSON document: what the ECG channel's
mapping (`mappings/devices/ecg.yaml`) reads to build the FHIR Observation and DiagnosticReport.

The signal part is done here, once: each lead as the text of a FHIR `SampledData.data` (whole
µV, origin 0, factor 1, one sample every `period_ms`), and the reading's numbers rounded to what
a clinician reads. How those become FHIR (codes, references, ids) is the mapping's business.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from devices.ecg.analysis import EcgReading
from devices.ecg.model import STANDARD_LEADS, Ecg, with_derived_limb_leads

__all__ = ["DOCUMENT_KIND", "recording_document", "sampled_data"]

DOCUMENT_KIND = "ecg-recording"


def sampled_data(samples: np.ndarray[Any, Any]) -> str:
    """A lead as `SampledData.data`: whole µV separated by single spaces."""
    return " ".join(map(str, np.rint(samples).astype(np.int64).tolist()))


def recording_document(
    ecg: Ecg, reading: EcgReading, *, raw: bytes, file_format: str
) -> dict[str, Any]:
    """The document for one recording. `raw` is what arrived (its digest names the recording
    when the device gives no acquisition time); `file_format` says which reader read it."""
    leads = with_derived_limb_leads(ecg.leads)
    period_ms = 1000.0 / ecg.sampling_rate_hz
    criteria = [
        {
            "rule": c.rule,
            "leads": list(c.leads),
            "threshold_mv": c.threshold_mv,
            "st_mv": [{"lead": lead, "mv": round(mv, 3)} for lead, mv in c.st_mv.items()],
        }
        for c in reading.criteria
    ]
    return {
        "kind": DOCUMENT_KIND,
        "digest": hashlib.sha256(raw).hexdigest()[:32],
        "format": file_format,
        "acquired_at": ecg.acquired_at.isoformat(timespec="seconds") if ecg.acquired_at else None,
        "device": ecg.device,
        "device_statements": list(ecg.device_statements),
        "patient": {
            "id": ecg.patient.id,
            "sex": ecg.patient.sex,
            "age_years": ecg.patient.age_years,
        },
        "sampling_rate_hz": round(ecg.sampling_rate_hz, 3),
        "period_ms": round(period_ms, 6),
        "samples": ecg.samples,
        "leads": [
            {"name": name, "data": sampled_data(leads[name])}
            for name in STANDARD_LEADS
            if name in leads
        ],
        "reading": {
            "stemi": reading.stemi,
            "territory": list(reading.territory),
            "leads_elevated": sorted(
                {lead for c in reading.criteria if "elevation" in c.rule for lead in c.leads},
                key=_lead_order,
            ),  # fmt: skip
            "criteria": criteria,
            "st": [
                {"lead": lead, "j_mv": values["j"], "j60_mv": values["j60"]}
                for lead, values in sorted(reading.st_mv.items(), key=lambda kv: _lead_order(kv[0]))
            ],
            "mi_probability": round(reading.mi_probability, 3),
            "heart_rate": round(reading.heart_rate),
            "qrs_ms": round(reading.qrs_ms),
            "flags": list(reading.flags),
            "criteria_version": reading.criteria_version,
        },
    }


def _lead_order(lead: str) -> int:
    return STANDARD_LEADS.index(lead) if lead in STANDARD_LEADS else len(STANDARD_LEADS)
