"""What the registry upload tests share: a complete CPC record as the platform wants it (a walk-in
NSTEMI case still in progress), the local platform's credentials, and a credentials file."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

APP_ID = "gc-test-app"
SECRET = "greenchannel-demo-secret-0001"
HOSPITAL_ID = "hospital-test-0001"

_RECORD: dict[str, Any] = {
    "RegisterInfo": {
        "NAME": "张三",
        "GENDER": "1",
        "AGE": 58,
        "CREDENTIALS_TYPE": "1",
        "IDCARD": "110101196801011234",
        "CONTACT_PHONE": "13812345678",
        "STATUS": 1,
    },
    "FirstAIDInfo": {
        "ATTACK_TIME": "2026-10-02T07:40:00",
        "CONSCIOUSNESS_TYPE": "1",
        "RESPIRATION_RATE": 18,
        "PULSE_RATE": 88,
        "HEART_RATE": 88,
        "BLOOD_PRESSURE": "142/90",
        "DISTRESS_CASE": "1",
        "CW_COMING_WAY_CODE": "3",
        "CW_ZXLY_ARRIVED_HOSPITAL_TIME": "2026-10-02T08:31:00",
        "CW_ZXLY_FIRST_MC_TIME": "2026-10-02T08:32:00",
        "CW_ZXLY_FIRST_DOCTOR_TIME": "2026-10-02T08:35:00",
    },
    "TreatmentInfo": {
        "HAS_ECG_IMAGE": "1",
        "REMOTE_ECG_TRANSMISSION": "2",
        "IS_CTNT": "1",
        "IS_NOTICE_IMCD": "0",
        "CP_DIAGNOSIS_CODE": "2",
    },
}


def complete_record() -> dict[str, Any]:
    """A fresh copy: tests change it."""
    return copy.deepcopy(_RECORD)


def write_credentials(data_dir: Path, base_url: str, *, secret: str = SECRET) -> Path:
    """The connector's credentials file in `data_dir` (where the shipped channel looks)."""
    path = data_dir / "secrets" / "registry-cpc.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(
            {
                "base_url": base_url,
                "version": "v1.1",
                "app_id": APP_ID,
                "secret_key": secret,
                "hospital_id": HOSPITAL_ID,
            }
        ),
        encoding="utf-8",
    )
    return path
