"""Device protocols and signal analysis: ECG readers and the STEMI/MI early warning (`devices.ecg`).

Devices may use `engine` (its errors, settings and YAML loader); they never import `adapters` or
`pathways`: a channel calls into `devices`, not the other way round.
"""
