"""Transports and formats of the national registries (registries.md C.1): the chest pain center
data platform's signed HTTP JSON interface (`cpc`, a destination connector), a faithful local
platform for tests (`cpc_sim`), and the file templates of the registries without an API
(`files`)."""
