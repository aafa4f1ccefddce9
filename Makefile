# The two commands of the README: `make run` and `make test`. Both install what they need
# into .venv first (again only when pyproject.toml changed).
VENV ?= .venv
PYTHON ?= python3
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
# Test workers (pytest-xdist): two keep CI within 20 minutes on 2 cores; TEST_WORKERS=0 runs
# everything in one process.
TEST_WORKERS ?= 2

.PHONY: run test lint bench

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test]'
	touch $@

run: $(VENV)/.installed
	$(VENV)/bin/greenchannel serve

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# PostgreSQL tests run when the server answers on 127.0.0.1:5432 (always on these machines
# and in CI); set PG_URL= to skip them.
test: $(VENV)/.installed lint
	GREENCHANNEL_TEST_POSTGRES_URL=$$( [ -n "$(PG_URL)" ] && $(VENV)/bin/python -c "import psycopg,sys; psycopg.connect('$(PG_URL)'.replace('+psycopg',''), connect_timeout=3).close()" 2>/dev/null && echo "$(PG_URL)" ) \
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS)

# Figures, not asserts: MLLP journal+ACK vs python-hl7's bare server, end to end, FHIR store
# (bulk writes, the Synthea load, small transactions, a search mix).
bench: $(VENV)/.installed
	cd bench && ../$(VENV)/bin/python mllp_throughput.py
	cd bench && ../$(VENV)/bin/python end_to_end.py
	$(VENV)/bin/python bench/fhir_store_write.py
	cd bench && ../$(VENV)/bin/python fhir_synthea_load.py
	cd bench && ../$(VENV)/bin/python fhir_small_transaction.py
	cd bench && ../$(VENV)/bin/python fhir_search_mix.py
	$(VENV)/bin/python bench/qc_report.py
