# archc: `make demo` and `make test` do the whole set-up on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: demo test fuzz bench lint setup system-deps docs clean

setup: $(STAMP) system-deps

# Reinstall only when the package metadata changes; pip picks a torch/torchvision pair that import together.
$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

# graphviz's `dot` (diagrams) and chromium (the HTML report's browser test), via apt when we may.
system-deps:
	@bash scripts/system-deps.sh

# A small CNN (two 3x3 convs, the Fashion-MNIST net) compiled for the digits' own 1x8x8 images:
# ~97% test accuracy in about 40 CPU-seconds; the run directory gets its diagram, report and HTML page.
demo: setup
	$(VENV)/bin/archc train specs/fmnist_net.yaml --dataset digits --input 1,8,8 --no-augment --optimizer adam --lr 0.001 \
		--batch-size 64 --epochs 10 $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -n 2 --dist loadgroup -q $(PYTEST_ARGS)

# The whole randomized campaign (10,000 fuzz cases, 3,500 property cases, 40 random kills);
# `make test` runs a twentieth of it.
fuzz: setup
	@rm -f fuzz-report.txt
	ARCHC_FUZZ_SCALE=1 ARCHC_FUZZ_BUDGET=1 ARCHC_ROBUSTNESS_LOG=fuzz-report.txt $(PY) -m pytest -n 2 --dist loadgroup -q -m slow tests/robustness tests/test_properties.py
	@echo "figures (fuzz-report.txt):" && cat fuzz-report.txt

lint: setup
	$(VENV)/bin/ruff format --check archc tests benchmarks examples scripts
	$(VENV)/bin/ruff check archc tests benchmarks examples scripts
	$(VENV)/bin/mypy

bench: setup
	$(PY) benchmarks/run.py

docs: setup
	$(PY) -m archc.docs_gen

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
