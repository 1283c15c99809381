# `make demo` and `make test` each build .venv on first use, then run.
#
# torch: an existing torch is kept. If the python3 that creates the venv already imports
# torch (a user's CUDA/ROCm build), the venv sees it through --system-site-packages. On a
# machine without CUDA, torch==2.13.0's CPU build is installed before the package, so pip
# never resolves a multi-GB CUDA wheel: a wheel pip's find-links already hold (offline, as on
# our CI machines), else the one from PyTorch's CPU index (PyPI's Linux wheel bundles CUDA);
# with CUDA present, pip's default torch is used.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.directpo-installed
CPU_TORCH := torch==2.13.0
CPU_TORCH_INDEX := https://download.pytorch.org/whl/cpu
# `make test` runs one pytest-xdist worker per usable core, at most 4 (tests/conftest.py counts
# them, a container's CPU quota included, and gives each worker an equal share of the cores).
# TEST_WORKERS=0 runs the tests in one process.
TEST_WORKERS ?= auto

.PHONY: demo test lint install clean

# The main job: the DPO paper's controlled-sentiment experiment, quick profile (docs/demo.md).
demo: $(STAMP)
	$(VENV)/bin/directpo demo --profile quick --output_dir demo_output

test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

install: $(STAMP)

$(PY):
	@if $(PYTHON) -c "import torch" >/dev/null 2>&1; then \
		echo "Keeping the torch installed for $(PYTHON)"; \
		$(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
		$(PYTHON) -m venv $(VENV); \
	fi

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install -q --upgrade pip
	@if $(PY) -c "import torch" >/dev/null 2>&1; then \
		echo "torch already present: $$($(PY) -c 'import torch; print(torch.__version__)')"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then \
		$(PY) -m pip install -q torch; \
	elif $(PY) -m pip install -q --no-deps --no-index $(CPU_TORCH) >/dev/null 2>&1; then \
		$(PY) -m pip install -q $(CPU_TORCH); \
	else \
		$(PY) -m pip install -q $(CPU_TORCH) --extra-index-url $(CPU_TORCH_INDEX); \
	fi
	$(PY) -m pip install -q -e '.[dev,demo]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) demo_output
