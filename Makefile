# The two quickstart commands: `make train` and `make test` (each sets everything up first);
# `make docs` builds the docs site.
PYTHON ?= python3
VENV ?= .venv
# Extra pip options, e.g. torch's CPU-only wheels (README, Quickstart):
#   make install PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_EXTRA ?=
BIN := $(VENV)/bin

.PHONY: train test install docs clean

$(BIN)/aectl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]" --config-settings editable_mode=compat $(PIP_EXTRA)  # compat: Hydra finds hydra_plugins/ in the checkout
	touch $@

install: $(BIN)/aectl

train: install  ## set up, then train the default VAE on the bundled digits set
	$(BIN)/aectl train

test: install  ## set up, then run the test suite
	$(BIN)/python -m pytest

$(BIN)/mkdocs: pyproject.toml $(BIN)/aectl
	$(BIN)/python -m pip install --quiet -e ".[test,docs]" --config-settings editable_mode=compat $(PIP_EXTRA)
	touch $@

docs: $(BIN)/mkdocs  ## set up, then build the docs site into site/ (broken links fail the build)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf outputs multirun site .pytest_cache
