"""Transports of the national registries (registries.md C.1): the chest pain center data
platform's signed HTTP JSON interface (`cpc`, a destination connector) and a faithful local
platform for tests (`cpc_sim`). The file templates of the registries without an API are
documents, not transports: pathways/registry/files.py."""
