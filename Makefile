# DoseGate — the two commands of the README, and the steps they are made of.
#
#   make demo   a whole job cycle locally (until the fleet link lands: sign and check a job offline)
#   make test   the whole test suite, as CI runs it (installs what it needs first)
#
# Every step is a plain script under scripts/ so it can be run and read on its own.

SHELL := /bin/bash
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: models all demo test deps build lint unit fuzz-smoke deny bench image qemu-test clean

all: build

demo: deps build
	scripts/demo.sh

test: deps build lint unit fuzz-smoke deny

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

clean:
	$(CARGO) clean

# Retrain the committed PAT models and their cards from models/specs/ (needs ../shared/data/pat).
models:
	scripts/train-models.sh
