# netmon: `make run` installs everything and starts netmon; `make test`
# installs everything and runs the whole test suite (as root: the kernel
# tests attach real probes). See README.md.

VENV   := .venv
PYTHON := $(VENV)/bin/python
# Extra arguments: make run ARGS="--json --count 3"; make test PYTEST_ARGS="-k ema"
ARGS ?=
PYTEST_ARGS ?=

.PHONY: install run test lint check-wheel format bench bench-startup bench-stream bench-footprint bench-soak bench-detect clean

## install: apt packages, kernel headers, tracefs, .venv with netmon (idempotent)
install:
	bash scripts/setup.sh

## run: install, then start netmon
run: install
	$(VENV)/bin/netmon $(ARGS)

## test: install, then run the whole test suite
test: install
	$(PYTHON) -m pytest -q $(PYTEST_ARGS)

## lint: ruff, mypy and the packaging check
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PYTHON) scripts/check_packaging.py

## check-wheel: build the wheel, install it in a scratch venv, check it finds bpf/
check-wheel: install
	bash scripts/check_wheel.sh

## format: apply ruff's formatter
format: install
	$(VENV)/bin/ruff format .

## bench: probe overhead on one-byte UDP loops, beside the no-op floor and nethogs (as root)
bench: install
	$(PYTHON) bench/overhead.py $(ARGS)

## bench-startup: netmon --json from launch to first object, and SIGTERM to exit (as root)
bench-startup: install
	$(PYTHON) bench/startup.py $(ARGS)

## bench-stream: iperf3 loopback TCP throughput, without/with netmon/nethogs (as root)
bench-stream: install
	$(PYTHON) bench/stream.py $(ARGS)

## bench-footprint: netmon's CPU and PSS with 10,000 live UDP flows, beside nethogs (as root)
bench-footprint: install
	$(PYTHON) bench/footprint.py $(ARGS)

## bench-detect: the detectors on labelled patterns injected into recorded traffic (no root)
bench-detect: install
	$(PYTHON) bench/detect.py $(ARGS)

## bench-soak: netmon --json for 20 minutes of process churn: RSS, CPU, line size (as root)
bench-soak: install
	$(PYTHON) bench/soak.py $(ARGS)

## clean: remove the venv and build leftovers (system packages stay)
clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
