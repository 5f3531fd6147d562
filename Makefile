# Two commands for a fresh clone:  make demo  and  make test
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# torch first, so the CPU or CUDA build you choose is not replaced by a dependency's pick.
TORCH  ?= torch==2.13.0
# Every other package at the version the suite passed with (pip freeze of a tested venv).
LOCK   := requirements.lock
PIP    := pip==26.3
STAMP  := $(VENV)/.hfllm-installed
# The newest releases of everything (torch aside, see TORCH), for make test-latest and make lock.
LATEST := .venv-latest

.PHONY: demo test test-latest lock bench install clean-runs

install: $(STAMP)

# Last, llama.cpp (hfllm export's converter, --check's runtime) from the pinned llama-cpp-python source
# package: fetched and built once (~5 min on 2 cores), then cached in ~/.cache/hfllm/llama.cpp.
$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q "$(PIP)"
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -c $(LOCK) -e ".[dev]"
	$(BIN)/python -m hfllm.export.llamacpp install
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/hfllm run configs/tiny/pipeline.yaml

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The same suite on today's releases (no lock): an upstream release that breaks hfllm shows here first.
$(LATEST)/.installed: pyproject.toml
	rm -rf $(LATEST)
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q "$(TORCH)"
	$(LATEST)/bin/python -m pip install -q --upgrade -e ".[dev]"
	$(LATEST)/bin/python -m hfllm.export.llamacpp install
	touch $@

test-latest:
	rm -f $(LATEST)/.installed
	$(MAKE) $(LATEST)/.installed
	@echo "newer than $(LOCK):"; $(LATEST)/bin/python -m pip freeze --exclude-editable --exclude torch \
	    | diff $(LOCK) - | sed -n 's/^> /  /p'
	$(LATEST)/bin/python -m pytest -q

# Pin the stack make test-latest just passed with: make test-latest && make lock && make test
lock: $(LATEST)/.installed
	{ echo "# The tested stack, installed by make install (pip install -c $(LOCK) -e .[dev]); torch is TORCH in Makefile."; \
	  echo "# Written by make lock from $(LATEST) on $$(date -u +%F), Python $$($(LATEST)/bin/python -c 'import platform; print(platform.python_version())')."; \
	  $(LATEST)/bin/python -m pip freeze --exclude-editable --exclude torch; } > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean-runs:
	rm -rf runs/tiny
