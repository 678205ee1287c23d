# The two commands: `make demo` (set up + the main job) and `make test` (set up + the tests).
# Both are idempotent on a fresh Debian machine as root: they create .venv, install the
# project editable with its dev extra, and install Fashion-MNIST when it is missing.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
FASHION_MNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
RUNS ?= runs

.PHONY: demo test lint pytest setup data slow clean lock web

WEB := server/web
WEB_STAMP := $(WEB)/node_modules/.installed

CHROMEDRIVER := /usr/bin/chromedriver

setup: $(STAMP) $(FASHION_MNIST) $(WEB_STAMP) $(CHROMEDRIVER)

# Debian's headless browser for the browser client's test (never a downloaded build)
$(CHROMEDRIVER):
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "note: the browser test needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver as root); it skips without them"; \
	else apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver; fi

# The browser client's node-seal (SEAL 4.1 in WebAssembly) and, for the tests, a Node that
# runs it — exactly the versions in package-lock.json, from the npm registry.
$(WEB_STAMP): $(WEB)/package.json $(WEB)/package-lock.json
	npm ci --prefix $(WEB) --no-audit --no-fund --loglevel=error
	touch $(WEB_STAMP)

web: $(WEB_STAMP)

# constraints.txt pins every package to the version CI last tested (make lock refreshes it)
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	# the attack benchmark's reference implementation: dev only, without its dependencies
	# (it would pull a torchvision that breaks beside the pinned CPU torch)
	$(PY) -m pip install --quiet --no-deps 'torchattacks==3.5.1'
	touch $(STAMP)

# Refresh the pins: newest releases the ranges in pyproject.toml admit, then freeze them.
# Run the tests after it and commit constraints.txt with the result.
lock:
	rm -rf $(VENV).lock && $(PYTHON) -m venv $(VENV).lock
	$(VENV).lock/bin/pip install --quiet --upgrade pip
	$(VENV).lock/bin/pip install --quiet -e '.[dev]'
	$(VENV).lock/bin/pip install --quiet --no-deps 'torchattacks==3.5.1'
	( echo "# make lock wrote this: the versions make test installs (pip -c). Refresh: make lock."; \
	  $(VENV).lock/bin/pip freeze --exclude-editable | sed 's/+cpu$$//' ) > constraints.txt
	rm -rf $(VENV).lock

$(FASHION_MNIST):
	@if [ "$$(id -u)" != 0 ]; then \
	  echo "Fashion-MNIST is missing: run 'apt-get update && apt-get install -y dataset-fashion-mnist' as root"; exit 1; fi
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist

data: $(FASHION_MNIST)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

pytest: setup
	$(PY) -m pytest -q

test: lint pytest

slow: setup
	$(PY) -m pytest -q -m slow

DEMO_MODEL := $(RUNS)/demo/tenseal-tutorial.pt

# trained on noisy copies (randomized smoothing, σ 0.25): the demo also certifies one
# encrypted prediction
$(DEMO_MODEL): | setup
	$(PY) -m adversarial defend --method smoothing --arg sigma=0.25 --arg clip=true \
		--model tenseal-tutorial --data fashion-mnist --epochs 3 --eval-n 100 --budget quick --out $@

demo: setup $(DEMO_MODEL)
	$(PY) -m bench demo --checkpoint $(DEMO_MODEL) --n 1000 --workdir $(RUNS)/demo

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache $(WEB)/node_modules
