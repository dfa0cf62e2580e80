# The two commands of the README: `make run` and `make test`. Both install into .venv first.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
OUT ?= out/run
# two test processes on the two cores, a test file per process (module fixtures start once), in the
# order tests/conftest.py gives (the minute-long e2e files first), not xdist's most-tests-first order
TEST_ARGS ?= -n 2 --dist loadfile --no-loadscope-reorder
# the default run tunes with a small budget first (4 trials, 2 at a time), then trains the best
RUN_ARGS ?= --trials 4 --parallel-trials 2
# PATH carries the venv so kfp.local's subprocess tasks run with the same interpreter
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: install run test test-faults lint bench compile manifests clean

install: $(STAMP)

# uv installs the very versions pip resolves (same pip freeze), several times faster than pip; it
# compiles the bytecode as pip does: with PYTHONDONTWRITEBYTECODE set (as on CI) every process would
# otherwise compile TensorFlow from source again
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "uv>=0.9,<1"
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python "pip>=24" -e ".[dev]"
	touch $(STAMP)

run: install
	$(BIN)/mlengine run --out $(OUT) $(RUN_ARGS)

# the fault-injection suite (marker `faults`: kill -9 of a worker, of the ps and of a run at a chosen
# epoch, 600 slow clients, the alias bomb; real runs, about 6 minutes) is `make test-faults`, which
# .ci/run runs after `make test`; one process, so the kills and timings are not squeezed by another
test: install
	$(BIN)/ruff check .
	$(BIN)/python -m pytest $(TEST_ARGS) -m "not containers and not faults"

test-faults: install
	$(BIN)/python -m pytest -m faults

lint: install
	$(BIN)/ruff check .

bench: install bench-tft-venv
	$(BIN)/python -m bench.run_all

# tensorflow-transform (+ tfx-bsl) in its own venv, so .venv stays as the package pins it; used by bench_preprocessing
# (a failed install is reported in the preprocessing table, it does not stop `make bench`)
bench-tft-venv:
	test -x .venv-tft/bin/python || python3.11 -m venv .venv-tft
	.venv-tft/bin/python -c "import tensorflow_transform" 2>/dev/null || \
		.venv-tft/bin/pip install "tensorflow-transform==1.21.*" || echo "bench-tft-venv: install failed (see above)"

compile: install
	$(BIN)/mlengine compile --out out/pipelines

manifests: install
	$(BIN)/mlengine manifests --out out/manifests

# Container images and the tests that run the pipeline and the server in them (need a Docker engine:
# images/dockerd.sh start). `images` builds the base from Debian packages when no registry answers.
# REGISTRY=registry.example.com/ml names every image (the built tags, the compiled YAML, the TFJobs):
# it is MLENGINE_IMAGE_REGISTRY for every command this Makefile runs; `make push` pushes the tags.
.PHONY: images test-containers push

ifdef REGISTRY
export MLENGINE_IMAGE_REGISTRY := $(REGISTRY)
endif

images: install
	PYTHON=$(BIN)/python images/build.sh

push: install
	for image in $$($(BIN)/python -c "from mlengine.constants import IMAGE_ROLES, image_for; \
	print(' '.join(image_for(role) for role in IMAGE_ROLES))"); do docker push "$$image" || exit 1; done

test-containers: install
	$(BIN)/python -m pytest -m containers tests/containers

clean:
	rm -rf out .pytest_cache .ruff_cache
