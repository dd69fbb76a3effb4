# Two commands: `make run` (set up, then the whole pipeline on the bundled data)
# and `make test` (set up, then the tests). Set-up installs from requirements.lock only.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.faultwatch-installed
# This machine kind keeps a CPU build of torch on disk; elsewhere the ordinary wheel is used.
TORCH_WHEELS ?= /opt/wheels
HAVE_CPU_TORCH := $(wildcard $(TORCH_WHEELS)/torch-2.13.0+cpu-*.whl)
# Without that wheel, torch's build from PyTorch's index: the CPU one unless a GPU is asked for
# (`make clean setup TORCH_BACKEND=auto`: the CUDA build the machine's driver takes; or cu126...)
TORCH_BACKEND ?= cpu
# dvc.yaml commands call the venv's tools (faultwatch, papermill) by name
export PATH := $(CURDIR)/$(BIN):$(PATH)
export WANDB_MODE ?= offline
export BENTOML_HOME ?= $(CURDIR)/.bentoml
export PYTHONHASHSEED = 0

.PHONY: setup system run test lint lock clean bench image tiny

setup: $(STAMP)

$(STAMP): requirements.lock pyproject.toml tests/npm/package-lock.json jupyter-config/jupyter_server_config.json
	@# --compile-bytecode (uv: the whole site-packages, once installed) and compileall of src:
	@# where PYTHONDONTWRITEBYTECODE is set (CI, this machine kind) no process can cache what it
	@# compiles, and every stage, CLI call and server compiled torch, sklearn and Lightning again
	@# (a tiny pipeline's eight stages: 120 s without, 52 s with)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check "$$(grep -E '^uv==' requirements.lock)"
ifneq ($(HAVE_CPU_TORCH),)
	$(BIN)/uv pip sync -q --python $(BIN)/python --compile-bytecode --find-links $(TORCH_WHEELS) requirements.lock
else
	grep -vE '^torch==' requirements.lock > $(VENV)/requirements-no-torch.lock
	$(BIN)/uv pip sync -q --python $(BIN)/python $(VENV)/requirements-no-torch.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --compile-bytecode --torch-backend $(TORCH_BACKEND) "torch==$$(grep -E '^torch==' requirements.lock | sed -E 's/^torch==([^+]*).*/\1/')"
endif
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@$(BIN)/python -m compileall -q src
	$(BIN)/python -m ipykernel install --sys-prefix --name faultwatch --display-name "faultwatch (.venv)" >/dev/null
	@# `jupyter lab` as root too (containers, CI): the venv's Jupyter reads its etc/jupyter first
	@mkdir -p $(VENV)/etc/jupyter && cp jupyter-config/jupyter_server_config.json $(VENV)/etc/jupyter/
	@test -d .git && $(BIN)/pre-commit install >/dev/null || true
	@# the schemas the manifest tests validate against (Gateway API CRDs, compose-spec), from npm
	@mkdir -p $(VENV)/npm && cp tests/npm/package.json tests/npm/package-lock.json tests/npm/.npmrc $(VENV)/npm/
	@command -v npm >/dev/null && npm ci --prefix $(VENV)/npm --no-audit --no-fund --silent || echo "npm missing or npm ci failed: tests/test_k8s.py will say so"
	@touch $@

# Programs the tests run for real, from Debian's packages: HAProxy (the deployment's router);
# buildah, podman, runc, podman-compose and debootstrap (the container image, built and run
# without Docker; tests/test_container.py runs `faultwatch image check`, which configures podman
# only where its defaults fail); PostgreSQL (the prediction log beyond one machine: the tests
# start their own server with pg_ctl), Prometheus (scrapes the service in a test) and Chromium
# (JupyterLab and the report page in a real browser, driven by Playwright).
SYSTEM_PACKAGES := haproxy buildah podman runc podman-compose debootstrap postgresql prometheus chromium
system:
	@missing=""; for p in $(SYSTEM_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "the tests need:$$missing (Debian packages): sudo apt-get install$$missing" >&2; exit 1; fi; fi

run: setup
	$(BIN)/dvc repro
	@$(BIN)/faultwatch report --list

# Two workers (pytest-xdist): the suite waits on servers and subprocesses more than it
# computes. Modules that share a fixture or podman's image store share a worker
# (tests/helpers/xdist_groups.py: XDIST_GROUPS, its scheduler). `make test TEST_WORKERS=0`: one process.
TEST_WORKERS ?= 2
test: setup system
	$(BIN)/python -m pytest -q --durations=25 -n $(TEST_WORKERS)

# The whole pipeline, quickly: a stratified slice of the bundled data and a small network (a few
# minutes on CPU; the figures mean nothing, that every stage runs does), whatever data params
# the project has (the bundled data's own bounds are set). What CI runs after the tests. A DVC
# experiment in a temporary copy (`dvc exp run --temp`): params.yaml and the workspace's outputs
# stay as they are; `dvc exp show` lists it, `dvc exp apply` brings it in.
TINY_PARAMS := data.source=bundled:PLAID data.positive_label=9 data.limit=400 data.min_positive=5 \
  data.min_length=16 data.max_length=100000 data.missing=error data.crop_length=null \
  train.length=64 'train.channels=[4,8]' train.kernel_size=5 train.batch_size=16 \
  train.max_epochs=3 train.patience=3 train.accelerator=cpu \
  evaluate.baseline_n_estimators=20 evaluate.baseline_feature_length=32 evaluate.worst_n=2
tiny: setup
	$(BIN)/dvc exp run --temp $(addprefix -S ,$(TINY_PARAMS))

# The container image of the packaged bento (reports/package.json), tagged
# faultwatch-<project folder>:<version>
image: setup system
	$(BIN)/faultwatch image build

lint: setup
	$(BIN)/pre-commit run --all-files

# Re-resolve the lock (the only place that resolves); run after editing pyproject.toml.
lock:
	uv pip compile pyproject.toml --extra dev --python-version 3.11 --find-links $(TORCH_WHEELS) \
	  --no-header -o requirements.lock
	$(BIN)/python -m faultwatch.hooks write-environment

bench: setup
	$(BIN)/python bench/notebook_overhead.py

clean:
	rm -rf $(VENV)
