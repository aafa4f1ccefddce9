"""Registry uploaders: the chest pain center data platform's signed HTTP JSON interface
(`cpc`, a destination connector) and a faithful local platform for tests (`cpc_sim`)."""
