# The two commands README promises: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint audit mutate bench chaos install clean

# The install is editable in strict mode: a tree of links under build/ maps each folder to
# its falbridge.* name, which mypy can read (the default mode's import hook it cannot). A
# link tree holds the files that existed at install time, so a new or removed file means
# reinstalling: MANIFEST lists them and changes only when the list does.
MANIFEST := $(VENV)/.manifest
$(shell mkdir -p $(VENV) && find falbridge models worker webhooks sandbox migrations -type f \
	-not -path '*/__pycache__/*' | LC_ALL=C sort > $(MANIFEST).new && \
	(cmp -s $(MANIFEST).new $(MANIFEST) || mv $(MANIFEST).new $(MANIFEST)))

$(STAMP): pyproject.toml $(MANIFEST)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' --config-settings editable_mode=strict
	touch $(STAMP)

install: $(STAMP)

# `make demo KEEP=1`: afterwards the stack and its dashboard stay up until Ctrl-C.
demo: $(STAMP)
	$(VENV)/bin/falbridge demo $(if $(KEEP),--keep-running)

# The gate `make test` runs first: ruff's lint and format, then mypy through the link
# tree (.ci/typecheck.py also fails if mypy did not see every module of the product).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) .ci/typecheck.py

test: $(STAMP) lint
	$(PY) -m pytest

# Mutation testing of the modules that decide trust and correctness (.ci/mutation.toml):
# on demand, not in CI; about an hour on two cores. `make mutate M=models/states.py` for one.
MUTATE_STAMP := $(VENV)/.mutate-installed
$(MUTATE_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,mutate]' --config-settings editable_mode=strict
	touch $(MUTATE_STAMP)

mutate: $(MUTATE_STAMP)
	$(PY) .ci/mutate.py $(M)

# Known vulnerabilities in what is installed (pip-audit, OSV's database; needs it online).
audit: $(STAMP)
	$(PY) .ci/audit.py

# README, "Performance": needs PostgreSQL's server binaries and wrk (installed here from
# Debian's packages when missing).
bench: $(STAMP)
	@command -v wrk >/dev/null 2>&1 || apt-get install -y -q wrk >/dev/null 2>&1 || \
		{ apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; } || \
		{ echo "bench: cannot run: wrk is missing and could not be installed (apt-get install wrk)"; exit 2; }
	$(PY) bench/all.py

# The chaos run (bench/chaos.py) on PostgreSQL: `make chaos`, or `make chaos N=10000`;
# `make chaos FLOW=on` runs it with flow control on (FALBRIDGE_MAX_IN_FLIGHT=FLOW_CAP).
N ?= 2000
FLOW ?= off
FLOW_CAP ?= 40
chaos: $(STAMP)
	$(PY) bench/chaos.py --jobs $(N) --database postgresql $(if $(filter on,$(FLOW)),--flow-cap $(FLOW_CAP))

clean:
	rm -rf $(VENV) var build .pytest_cache .mypy_cache .ruff_cache
