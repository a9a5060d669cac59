# fer_perception: `make demo` runs the main job on the built-in sample, `make test` runs the tests.
# Both create .venv on first use. Knobs (make VAR=value):
#   PYTHON       interpreter for the venv (3.10 to 3.12)                    [python3]
#   CONSTRAINTS  pip constraints file: constraints/cpu.txt keeps the CPU torch wheel,
#                constraints/cuda.txt pins a matching CUDA torch/torchvision pair, or your own [constraints/cpu.txt]
#   SNN_DEPS     nodeps: SpikingJelly without torchvision/torchaudio (CPU torch); full: with them [nodeps]
#   PYTEST_ARGS  extra pytest arguments, e.g. PYTEST_ARGS="-k decode -x"
PYTHON ?= python3
VENV ?= .venv
CONSTRAINTS ?= constraints/cpu.txt
SNN_DEPS ?= nodeps
PYTEST_ARGS ?=
DEMO_OUT ?= out/demo

PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.fer-perception-installed

.PHONY: demo test bench install clean

demo: $(STAMP)
	$(VENV)/bin/fer-perception demo --out $(DEMO_OUT)

test: $(STAMP)
	$(VENV)/bin/pytest fer_perception/test $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) bench/run_all.py

install: $(STAMP)

$(STAMP): fer_perception/setup.py requirements/spikingjelly.txt $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --progress-bar off -c $(CONSTRAINTS) -e './fer_perception[train,test]'
ifeq ($(SNN_DEPS),full)
	$(PIP) install --progress-bar off -c $(CONSTRAINTS) -r requirements/spikingjelly.txt
else
	$(PIP) install --progress-bar off -c $(CONSTRAINTS) --no-deps -r requirements/spikingjelly.txt
endif
	@touch $(STAMP)

clean:
	rm -rf $(VENV) out
