# `make test` and `make demo` build .venv on first use (torch 2.13.0 CPU first, then the project
# with torch pinned by a constraints file, so that no dependency — torchvision, timm,
# transformers — can upgrade it).
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
PIN := $(VENV)/constraints.txt

.PHONY: test demo bench lint format clean results-pages

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	echo "torch==2.13.0" > $(PIN)
	$(PIP) install -q -c $(PIN) -e '.[test]'
	touch $@

test: $(VENV)/.installed
	$(VENV)/bin/ruff format --check symlab tests benchmarks experiments notebooks docs/_ext
	$(VENV)/bin/ruff check symlab tests benchmarks experiments notebooks docs/_ext
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -n 2 -q --doctest-modules tests symlab

demo: $(VENV)/.installed
	$(PY) -m symlab.demo

bench: $(VENV)/.installed
	$(PIP) install -q -c $(PIN) -e '.[bench]'
	$(PY) -m benchmarks

# Regenerate docs/results/*.md (and the table in docs/experiments.md) from the job records.
RESULTS ?= results
SETTING ?= small
results-pages: $(VENV)/.installed
	$(PY) -m experiments.publish --results $(RESULTS) --setting $(SETTING)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff format symlab tests benchmarks experiments notebooks docs/_ext
	$(VENV)/bin/ruff check --fix symlab tests benchmarks experiments notebooks docs/_ext

clean:
	rm -rf $(VENV) build *.egg-info
