# Two commands for a fresh clone:  make demo  and  make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, so the CPU or CUDA build you choose is not replaced by a dependency's pick.
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.hfllm-installed

.PHONY: demo test bench install clean-runs

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hfllm run configs/tiny/pipeline.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean-runs:
	rm -rf runs/tiny
