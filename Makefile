# The two quickstart commands: `make train` and `make test` (each sets everything up first).
PYTHON ?= python3
VENV ?= .venv
# Extra pip options, e.g. torch's CPU-only wheels (README, Quickstart):
#   make install PIP_EXTRA="--extra-index-url https://download.pytorch.org/whl/cpu"
PIP_EXTRA ?=
BIN := $(VENV)/bin

.PHONY: train test install clean

$(BIN)/aectl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]" --config-settings editable_mode=compat $(PIP_EXTRA)  # compat: Hydra finds hydra_plugins/ in the checkout
	touch $@

install: $(BIN)/aectl

train: install  ## set up, then train the default VAE on the bundled digits set
	$(BIN)/aectl train

test: install  ## set up, then run the test suite
	$(BIN)/python -m pytest

clean:
	rm -rf outputs multirun .pytest_cache
