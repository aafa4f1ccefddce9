"""The revisions of the device clock tables."""
