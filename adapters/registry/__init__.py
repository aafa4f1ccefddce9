"""Transports and formats of the national registries (registries.md C.1): the file templates
of the registries without an API (`files`)."""
