"""The UWB tables' revisions, u0001 onwards."""
