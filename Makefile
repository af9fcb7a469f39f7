# Two commands: `make demo` and `make test`. Both do all set-up on a fresh Debian 12 machine.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo demo-ha test setup venv services lint bench clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q -U pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

services:
	bash scripts/install-packages.sh
	bash scripts/ensure-docker.sh
	bash scripts/build-base-image.sh

setup: venv services

demo: setup
	$(BIN)/python bench/offload.py

demo-ha: setup
	$(BIN)/python bench/ha.py --demo

test: setup
	$(BIN)/lint-imports  # the import contracts in pyproject.toml: the architecture, enforced
	$(BIN)/python -m pytest -q -p no:cacheprovider tests; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

lint: venv
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: setup
	for b in bench/*.py; do case $$b in */_*|*/nab_corpus.py|*/nab_score.py) ;; *) $(BIN)/python $$b || exit 1;; esac; done

clean:
	rm -rf $(VENV) build *.egg-info
