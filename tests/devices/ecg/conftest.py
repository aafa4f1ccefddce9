"""Paths to the real ECG recordings in ../shared/data/ecg (see its SOURCES.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

SAMPLES = Path(__file__).parent / "samples"


@pytest.fixture
def ecg_data(shared_data: Path) -> Path:
    return shared_data / "ecg"


@pytest.fixture
def ptbxl_record(ecg_data: Path) -> Path:
    """A normal PTB-XL record (100 Hz, 12 leads, 10 s), path without extension."""
    return ecg_data / "ptbxl" / "records100" / "00000" / "00001_lr"


@pytest.fixture
def sierra(ecg_data: Path) -> Path:
    return ecg_data / "sierra"
