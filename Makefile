# The two commands of the README: `make run` and `make test`. Both install what they need
# into .venv first (again only when pyproject.toml changed).
VENV ?= .venv
PYTHON ?= python3
PG_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/postgres
# Test workers (pytest-xdist): two keep CI within 20 minutes on 2 cores (three were no faster:
# the suite is CPU-bound); TEST_WORKERS=0 runs everything in one process. `--dist loadscope`
# runs each test module on one worker, so that an expensive module fixture (the Synthea load,
# the replayed pathway scenarios) runs once: with `load` it ran on both workers at times.
# (`loadgroup` would group less, but does nothing with pytest 9.2 and xdist 3.8.)
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
# The tests start many engine and CLI processes: they keep their compiled bytecode even
# where the environment says not to (PYTHONDONTWRITEBYTECODE=1 on these machines), or every
# process compiles the project's ~230 modules again (~0.5 s each start).
test: $(VENV)/.installed lint
	env -u PYTHONDONTWRITEBYTECODE GREENCHANNEL_TEST_POSTGRES_URL=$$( [ -n "$(PG_URL)" ] && $(VENV)/bin/python -c "import psycopg,sys; psycopg.connect('$(PG_URL)'.replace('+psycopg',''), connect_timeout=3).close()" 2>/dev/null && echo "$(PG_URL)" ) \
	$(VENV)/bin/pytest -q -n $(TEST_WORKERS) --dist loadscope

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
