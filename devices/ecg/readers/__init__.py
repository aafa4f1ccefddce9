"""Readers of ECG files into one `Ecg`: WFDB, Philips Sierra XML, HL7 aECG, GE MUSE XML, DICOM."""
