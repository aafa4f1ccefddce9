"""Writers that turn a real PTB-XL record into the formats no public sample was found for:
GE MUSE XML (base64 int16 per lead, I, II, V1-V6 only), a 12-lead HL7 aECG, and a DICOM 12-Lead
ECG Waveform written by pydicom. The tests read them back and compare with the record."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
from lxml import etree
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from devices.ecg.model import STANDARD_LEADS, Ecg

TWELVE_LEAD_SOP = "1.2.840.10008.5.1.4.1.1.9.1.1"
MUSE_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")


def _counts(signal: np.ndarray, per_bit: float) -> np.ndarray:
    return np.round(signal / per_bit).astype("<i2")


def write_muse(ecg: Ecg, path: Path, *, per_bit: float = 4.88) -> Path:
    root = etree.Element("RestingECG")
    patient = etree.SubElement(root, "PatientDemographics")
    for tag, text in (("PatientID", "GC-TEST-1"), ("PatientAge", "56"), ("AgeUnits", "YEARS"),
                      ("Gender", "FEMALE")):  # fmt: skip
        etree.SubElement(patient, tag).text = text
    test = etree.SubElement(root, "TestDemographics")
    for tag, text in (("AcquisitionDevice", "MAC55"), ("AcquisitionDate", "03-21-2012"),
                      ("AcquisitionTime", "10:21:49")):  # fmt: skip
        etree.SubElement(test, tag).text = text
    median = etree.SubElement(root, "Waveform")
    etree.SubElement(median, "WaveformType").text = "Median"
    rhythm = etree.SubElement(root, "Waveform")
    etree.SubElement(rhythm, "WaveformType").text = "Rhythm"
    etree.SubElement(rhythm, "SampleBase").text = f"{ecg.sampling_rate_hz:g}"
    etree.SubElement(rhythm, "SampleExponent").text = "0"
    for name in MUSE_LEADS:
        counts = _counts(ecg.leads[name], per_bit)
        lead = etree.SubElement(rhythm, "LeadData")
        etree.SubElement(lead, "LeadByteCountTotal").text = str(counts.nbytes)
        etree.SubElement(lead, "LeadSampleCountTotal").text = str(len(counts))
        etree.SubElement(lead, "LeadAmplitudeUnitsPerBit").text = f"{per_bit:g}"
        etree.SubElement(lead, "LeadAmplitudeUnits").text = "MICROVOLTS"
        etree.SubElement(lead, "LeadID").text = name
        etree.SubElement(lead, "WaveFormData").text = base64.b64encode(counts.tobytes()).decode()
    path.write_bytes(etree.tostring(root, xml_declaration=True, encoding="ISO-8859-1"))
    return path


def write_aecg(ecg: Ecg, path: Path, *, scale_uv: float = 2.5) -> Path:
    ns = "urn:hl7-org:v3"
    xsi = "http://www.w3.org/2001/XMLSchema-instance"

    def sub(parent: etree._Element, tag: str, **attrs: str) -> etree._Element:
        return etree.SubElement(parent, f"{{{ns}}}{tag}", attrs)

    root = etree.Element(f"{{{ns}}}AnnotatedECG", nsmap={None: ns, "xsi": xsi})
    sub(sub(root, "effectiveTime"), "center", value="20210304081500+0100")
    subject = sub(
        sub(sub(sub(sub(root, "componentOf"), "timepointEvent"), "componentOf"),
            "subjectAssignment"), "subject")  # fmt: skip
    trial = sub(subject, "trialSubject")
    sub(trial, "id", root="2.16.840.1.113883.3.456", extension="GC-TEST-2")
    sub(sub(trial, "subjectDemographicPerson"), "administrativeGenderCode", code="M")
    series = sub(sub(root, "component"), "series")
    sub(series, "code", code="RHYTHM")
    sequences = sub(sub(series, "component"), "sequenceSet")
    time = sub(sub(sequences, "component"), "sequence")
    sub(time, "code", code="TIME_ABSOLUTE")
    value = sub(time, "value", **{f"{{{xsi}}}type": "GLIST_TS"})
    sub(value, "head", value="20210304081500")
    sub(value, "increment", value=f"{1000 / ecg.sampling_rate_hz:g}", unit="ms")
    for name in STANDARD_LEADS:
        sequence = sub(sub(sequences, "component"), "sequence")
        sub(sequence, "code", code=f"MDC_ECG_LEAD_{name.upper()}")
        value = sub(sequence, "value", **{f"{{{xsi}}}type": "SLIST_PQ"})
        sub(value, "origin", value="0", unit="uV")
        sub(value, "scale", value=f"{scale_uv:g}", unit="uV")
        sub(value, "digits").text = " ".join(map(str, _counts(ecg.leads[name], scale_uv)))
    path.write_bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8"))
    return path


def write_dicom(ecg: Ecg, path: Path, *, sensitivity_uv: float = 1.0, unit: str = "uV") -> Path:
    """A 12-Lead ECG Waveform Storage object; `unit` is what the file claims (uV or mV)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = TWELVE_LEAD_SOP
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = TWELVE_LEAD_SOP
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "ECG"
    ds.PatientID = "GC-TEST-3"
    ds.PatientSex = "M"
    ds.PatientAge = "035Y"
    ds.Manufacturer = "greenchannel tests"
    ds.AcquisitionDateTime = "20190612143005"
    ds.TimezoneOffsetFromUTC = "+0800"
    group = Dataset()
    group.WaveformOriginality = "ORIGINAL"
    group.NumberOfWaveformChannels = len(STANDARD_LEADS)
    group.NumberOfWaveformSamples = ecg.samples
    group.SamplingFrequency = ecg.sampling_rate_hz
    group.WaveformBitsAllocated = 16
    group.WaveformSampleInterpretation = "SS"
    channels = []
    for name in STANDARD_LEADS:
        source = Dataset()
        source.CodeValue = name
        source.CodingSchemeDesignator = "SCPECG"
        source.CodeMeaning = f"Lead {name}"
        units = Dataset()
        units.CodeValue = unit
        units.CodingSchemeDesignator = "UCUM"
        units.CodeMeaning = unit
        channel = Dataset()
        channel.ChannelSourceSequence = [source]
        channel.ChannelSensitivity = sensitivity_uv
        channel.ChannelSensitivityUnitsSequence = [units]
        channel.ChannelSensitivityCorrectionFactor = 1
        channel.ChannelBaseline = 0
        channel.ChannelSampleSkew = 0
        channel.WaveformBitsStored = 16
        channels.append(channel)
    group.ChannelDefinitionSequence = channels
    samples = np.stack([_counts(ecg.leads[n], sensitivity_uv) for n in STANDARD_LEADS], axis=1)
    group.WaveformData = samples.astype("<i2").tobytes()
    ds.WaveformSequence = [group]
    ds.save_as(path, enforce_file_format=True)
    return path
