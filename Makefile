# The two commands README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench chaos install clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/falbridge demo

test: $(STAMP)
	$(PY) -m pytest

# README, "Performance": needs PostgreSQL's server binaries and wrk (installed here from
# Debian's packages when missing).
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -q wrk >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; } || \
		{ echo "bench: cannot run: wrk is missing and could not be installed (apt-get install wrk)"; exit 2; }
	$(PY) bench/all.py

# The chaos run (bench/chaos.py) on PostgreSQL: `make chaos`, or `make chaos N=10000`.
N ?= 2000
chaos: $(STAMP)
	$(PY) bench/chaos.py --jobs $(N) --database postgresql

clean:
	rm -rf $(VENV) var .pytest_cache
