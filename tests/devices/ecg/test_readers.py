"""Each reader gives the leads, sampling rate and µV values the file's own header promises:
WFDB and Philips Sierra on the real files of ../shared/data/ecg, the FDA's minimal aECG sample,
and MUSE, aECG and DICOM files written from a real PTB-XL record (tests/devices/ecg/formats.py)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from devices.ecg import analyze, read_ecg
from devices.ecg.model import STANDARD_LEADS
from tests.devices.ecg.conftest import SAMPLES
from tests.devices.ecg.formats import write_aecg, write_dicom, write_muse

CST = timezone(timedelta(hours=8))


def _expected_microvolts(header: Path) -> dict[str, np.ndarray]:
    """Each signal in µV computed from the `.hea` text itself (format 16, units mV): the
    signal files' int16 samples, minus the baseline, over the gain (adc units per mV)."""
    lines = [line for line in header.read_text().splitlines() if line and line[0] != "#"]
    signals, samples = int(lines[0].split()[1]), int(lines[0].split()[3])
    specs = [line.split() for line in lines[1 : 1 + signals]]
    expected = {}
    for file in dict.fromkeys(spec[0] for spec in specs):
        in_file = [spec for spec in specs if spec[0] == file]
        adc = np.fromfile(header.with_name(file), dtype="<i2").reshape(samples, len(in_file))
        for column, spec in enumerate(in_file):
            gain = spec[2].split("/")[0]
            baseline = int(gain.split("(")[1].rstrip(")")) if "(" in gain else 0
            expected[spec[-1]] = (adc[:, column] - baseline) / float(gain.split("(")[0]) * 1000
    return expected


@pytest.mark.parametrize("record", ["ptbxl/records100/00000/00001_lr", "ptb/s0010_re"])
def test_wfdb_leads_are_microvolts_as_the_header_gain_says(ecg_data: Path, record: str) -> None:
    path = ecg_data / record
    expected = _expected_microvolts(path.with_name(path.name + ".hea"))
    ecg = read_ecg(path)
    assert list(ecg.leads)[:12] == list(STANDARD_LEADS)
    assert len(ecg.leads) == len(expected)
    by_name = {name.upper(): signal for name, signal in ecg.leads.items()}
    for name, signal in expected.items():
        np.testing.assert_allclose(by_name[name.upper()], signal, atol=1e-6)


def test_ptbxl_record_is_12_leads_at_100_hz(ptbxl_record: Path) -> None:
    ecg = read_ecg(ptbxl_record.with_name(ptbxl_record.name + ".hea"))
    assert (ecg.sampling_rate_hz, ecg.samples, len(ecg.leads)) == (100.0, 1000, 12)


def test_ptb_record_has_15_leads_at_1000_hz_and_the_patient_from_its_comments(
    ecg_data: Path,
) -> None:
    ecg = read_ecg(ecg_data / "ptb" / "s0010_re")
    assert ecg.sampling_rate_hz == 1000.0
    assert list(ecg.leads)[12:] == ["vx", "vy", "vz"]
    assert (ecg.patient.sex, ecg.patient.age_years) == ("female", 81)


def test_sierra_acute_mi_from_the_ambulance_monitor(sierra: Path) -> None:
    ecg = read_ecg(sierra / "129DYPRG.XML")
    assert list(ecg.leads) == list(STANDARD_LEADS)
    assert ecg.sampling_rate_hz == 500.0
    assert ecg.samples == 5000  # 10 s; the 11th second holds only the calibration pulse
    for signal in ecg.leads.values():  # <signalresolution>5</signalresolution>: 5 µV steps
        assert np.all(np.mod(signal, 5) == 0)
    assert ecg.acquired_at == datetime(2011, 12, 1, 7, 27, 34, tzinfo=CST)
    assert ecg.device is not None and ecg.device.startswith("HeartstartMRx")
    assert (ecg.patient.sex, ecg.patient.age_years) == ("male", 50)
    assert ">>> Acute MI <<<" in ecg.device_statements
    assert "***" in repr(ecg) and "1112010721168bdc" not in repr(ecg)


@pytest.mark.parametrize(
    ("name", "device_rate"),
    [
        ("129DYPRG.XML", 41),
        ("3191723_ZZDEMOPTONLY_1-04_orig.xml", 84),
        ("2020-5-18_15-48-11.xml", 64),
        ("ad4d3d80-d165_1-04_orig.xml", 41),
    ],
)
def test_xli_decoding_gives_the_heart_rate_the_device_measured(
    sierra: Path, name: str, device_rate: int
) -> None:
    """A wrong LZW or delta step gives noise, not beats: the rate the Philips device printed
    in <heartrate> is the check that the decoded waveform is the recorded one."""
    assert analyze(read_ecg(sierra / name)).heart_rate == pytest.approx(device_rate, abs=3)


def test_sierra_1_04_in_utf16_has_the_patient_age_from_the_birth_date(sierra: Path) -> None:
    ecg = read_ecg(sierra / "3191723_ZZDEMOPTONLY_1-04_orig.xml")
    assert ecg.patient.age_years == 60  # born 1950-01-01, recorded 2010-01-19
    assert ecg.patient.sex == "male"


def test_fda_minimum_aecg_sample() -> None:
    ecg = read_ecg(SAMPLES / "fda-minimum-aecg.xml")
    assert list(ecg.leads) == ["II"]
    assert ecg.sampling_rate_hz == 500.0  # increment 0.002 s
    np.testing.assert_allclose(ecg.leads["II"][:5], [-5.0, -5.0, -5.0, -5.0, -7.5])  # × 2.5 µV
    assert ecg.acquired_at == datetime(2002, 11, 22, 9, 10, tzinfo=CST)  # center, no offset
    assert ecg.patient.id == "SBJ-123"


def test_aecg_written_from_a_ptbxl_record_reads_back(ptbxl_record: Path, tmp_path: Path) -> None:
    original = read_ecg(ptbxl_record)
    ecg = read_ecg(write_aecg(original, tmp_path / "ecg.xml", scale_uv=2.5))
    assert list(ecg.leads) == list(STANDARD_LEADS)
    assert ecg.sampling_rate_hz == 100.0
    for name in STANDARD_LEADS:
        np.testing.assert_allclose(ecg.leads[name], original.leads[name], atol=1.25)
    assert ecg.acquired_at == datetime(2021, 3, 4, 8, 15, tzinfo=timezone(timedelta(hours=1)))
    assert ecg.patient.sex == "male"


def test_muse_derives_the_four_limb_leads_it_does_not_send(
    ptbxl_record: Path, tmp_path: Path
) -> None:
    original = read_ecg(ptbxl_record)
    ecg = read_ecg(write_muse(original, tmp_path / "muse.xml", per_bit=4.88))
    assert list(ecg.leads) == list(STANDARD_LEADS)
    assert ecg.sampling_rate_hz == 100.0
    np.testing.assert_allclose(ecg.leads["V2"], original.leads["V2"], atol=2.44)
    for name in ("III", "aVR", "aVL", "aVF"):  # Einthoven and Goldberger from I and II
        np.testing.assert_allclose(ecg.leads[name], original.leads[name], atol=15)
    assert ecg.acquired_at == datetime(2012, 3, 21, 10, 21, 49, tzinfo=CST)
    assert (ecg.patient.sex, ecg.patient.age_years, ecg.device) == ("female", 56, "MAC55")


@pytest.mark.parametrize(("unit", "sensitivity"), [("uV", 1.0), ("mV", 0.005)])
def test_dicom_waveform_scales_by_channel_sensitivity_and_unit(
    ptbxl_record: Path, tmp_path: Path, unit: str, sensitivity: float
) -> None:
    original = read_ecg(ptbxl_record)
    scaled = type(original)(
        leads={n: s / 1000.0 if unit == "mV" else s for n, s in original.leads.items()},
        sampling_rate_hz=original.sampling_rate_hz,
        source=original.source,
    )
    path = write_dicom(scaled, tmp_path / "ecg.dcm", sensitivity_uv=sensitivity, unit=unit)
    ecg = read_ecg(path)
    assert list(ecg.leads) == list(STANDARD_LEADS)
    assert ecg.sampling_rate_hz == 100.0
    step = sensitivity * (1000.0 if unit == "mV" else 1.0)
    for name in STANDARD_LEADS:
        np.testing.assert_allclose(ecg.leads[name], original.leads[name], atol=step / 2 + 1e-6)
    assert ecg.acquired_at == datetime(2019, 6, 12, 14, 30, 5, tzinfo=CST)
    assert (ecg.patient.sex, ecg.patient.age_years) == ("male", 35)
