# The two commands of the README:
#   make build   set up, execute every chapter with papermill (cpu profile), render _build/html
#   make test    set up, print the machine's speed, build the book with warnings as errors, train every
#                model of the book in one pool, then unit tests, book hygiene, the nbval regression of
#                every committed chapter notebook and the browser check; a table of seconds per phase
#                ends the output
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# trained models are cached here (shared by all chapters; delete to retrain from scratch)
export REPRODIFF_CACHE ?= $(CURDIR)/.cache/reprodiff
export PYTHONUNBUFFERED := 1
CHAPTERS := $(sort $(wildcard book/[0-9][0-9]_*.py))
# seconds per phase of `make test`, printed as a table at the end of pytest (see conftest.py)
export REPRODIFF_PHASES ?= $(CURDIR)/_build/phases.tsv
# run a command and append "name<TAB>seconds" to the phase file
phase = start=$$(date +%s); $(2); echo -e "$(1)\t$$(( $$(date +%s) - start ))" >> "$(REPRODIFF_PHASES)"

.PHONY: setup build test execute html unit clean

# requirements.txt is a complete, resolved freeze: uv installs it without re-resolving (--no-deps; pip
# check proves it complete), downloading and unpacking in parallel (about 10 s against pip's 74 s here).
# uv does not read pip's configuration: pip's find-links (where this machine keeps its CPU torch wheel)
# and $PIP_FIND_LINKS, $PIP_EXTRA_INDEX_URL are handed on. Then only the modules the book imports are
# byte-compiled (scripts/compile-imports.py; compileall of all 18,000 files of the environment took 64 s).
UV_VERSION := 0.13.9
$(VENV)/.installed: requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps \
	  $$(for d in $$($(BIN)/python -m pip config get global.find-links 2>/dev/null); do echo --find-links $$d; done) \
	  $${PIP_FIND_LINKS:+--find-links $$PIP_FIND_LINKS} $${PIP_EXTRA_INDEX_URL:+--extra-index-url $$PIP_EXTRA_INDEX_URL} \
	  -r requirements.txt
	$(BIN)/python -m pip install -q --disable-pip-version-check --no-deps -e .
	$(BIN)/python -m pip check
	$(BIN)/python scripts/compile-imports.py
	bash scripts/ensure-chromium.sh
	@touch $@

setup: $(VENV)/.installed

# .py (jupytext py:percent) is the source; update the paired .ipynb's cells, then execute it in place
execute: setup
	@# every model of every chapter in one longest-first pool, so no core idles at a chapter's tail
	$(BIN)/python -m reprodiff train --book
	@for src in $(CHAPTERS); do \
	  nb="$${src%.py}.ipynb"; \
	  $(BIN)/jupytext --quiet --to ipynb --update "$$src"; \
	  start=$$(date +%s); \
	  $(BIN)/papermill --cwd book --no-progress-bar "$$nb" "$$nb"; \
	  echo "executed $$nb in $$(( $$(date +%s) - start )) s"; \
	done

html: setup
	$(BIN)/jupyter-book build . -W --keep-going

build: execute html

test:
	@mkdir -p "$$(dirname "$(REPRODIFF_PHASES)")" && : > "$(REPRODIFF_PHASES)"
	@$(call phase,setup,$(MAKE) --no-print-directory setup)
	$(BIN)/python -m reprodiff speed
	@$(call phase,book build (html -W),$(BIN)/jupyter-book build . -W --keep-going)
	@$(call phase,book models (one pool),$(BIN)/python -m reprodiff train --book)
	@# two workers, one test file or chapter each at a time, one torch thread each: samples are the same bits
	@# with one thread or two, and two chapters side by side keep both cores busy where one chapter alone
	@# kept ~1.4 (see benchmarks/README.md)
	@# in conftest.py's order (the longest units first), so no worker is left alone with a long one at the end
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest -n 2 --dist loadfile --no-loadscope-reorder --nbval-lax \
	  --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg book tests

unit: setup
	$(BIN)/python -m pytest tests --ignore=tests/test_browser.py

clean:
	rm -rf _build
