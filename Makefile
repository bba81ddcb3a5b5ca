# DoseGate — the two commands of the README, and the steps they are made of.
#
#   make demo   a whole job cycle locally: hub, broker, gateway with swtpm and simulated devices
#   make test   the whole test suite, as CI runs it (installs what it needs first)
#
# Every step is a plain script under scripts/ so it can be run and read on its own.

SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: models all demo test deps build lint unit fuzz-smoke deny bench bench-image image qemu-test clean

all: build

demo: deps build
	scripts/demo.sh

test: deps build lint unit fuzz-smoke deny image qemu-test

deps:
	scripts/setup-deps.sh

build:
	$(CARGO) build --workspace --all-targets --all-features --locked --release

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --all-features --locked --release -- -D warnings

unit:
	scripts/run-tests.sh

fuzz-smoke:
	scripts/fuzz-smoke.sh

deny:
	scripts/deny.sh

bench:
	scripts/bench.sh

# The appliance image (os-image/build.sh; needs root): disk, update bundle, test fixtures in build/image/.
image:
	$(CARGO) build --release -p dosegate --locked
	TEST_FIXTURES=1 os-image/build.sh

# Image figures for BENCHMARKS.md: sizes, one boot with its split, Lynis (after make image).
bench-image:
	os-image/bench.sh

# Boots the image under QEMU, one scenario at a time (see qemu-tests/ and docs/os-image.md).
qemu-test:
	DOSEGATE_REQUIRE_REAL=1 $(CARGO) nextest run -p dosegate-qemu-tests --features real-qemu --locked --release --no-fail-fast

clean:
	$(CARGO) clean

# Retrain the committed PAT models and their cards from models/specs/ (needs ../shared/data/pat).
models:
	scripts/train-models.sh
