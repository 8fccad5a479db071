# postern: build, test and demo.
#   make build   debug binary (target/debug/postern, or $CARGO_TARGET_DIR/debug/postern)
#   make test    everything CI runs: installs test needs, fmt, clippy, unit tests, end-to-end tests; summary at the end
#   make e2e     only the end-to-end tests (real IdP, httpbin, postern)
#   make demo    a local IdP + httpbin + postern on https://httpbin.localhost:8443 (Ctrl-C stops all)
#   make bench   postern against nginx (one-worker proxy_pass) and Caddy with wrk, side by side (bench/README.md)
#   make memory-profile  postern's RSS and heap (heaptrack) through scenarios: idle, sign-ins, 1,000 connections,
#                10,000 requests, 1 GiB each way, 50 WebSockets (memory-profile/README.md)
#   make bench-stream  postern's peak RSS (VmHWM) while 2 GiB go down and 2 GiB up (bench/stream-rss.sh; not a test)
#   make deps    install what the tests and the demo need (Debian packages as root when missing, npm, PyPI);
#                E2E_BROWSER=0 skips installing Chromium and nginx (the browser tests then skip themselves)
#   make static    static, stripped musl binaries: target/static/postern-x86_64, postern-aarch64 (docs/install.md)
#   make static-armv7  also postern-armv7 (older DiskStations; ~6 min: std built from source, zig links)
#   make test-arm  the aarch64 binary under qemu-aarch64-static: smoke test with the real IdP and httpbin
#   make test-armv7  the same for the armv7 binary under qemu-arm-static
#   make fuzz      every cargo-fuzz target for FUZZ_SECONDS (60) each on fuzz/corpus/; a crash fails it
#   make image     FROM-scratch images (amd64, arm64) as docker-archive tars in target/image/, without a Docker engine

SHELL       := /bin/bash
CARGO       ?= cargo
TARGET_DIR  := $(or $(CARGO_TARGET_DIR),target)
POSTERN_BIN := $(abspath $(TARGET_DIR))/debug/postern
VENV        := .venv
PY          := $(VENV)/bin/python
IDP_DIR     := tests/e2e/idp
IDP_STAMP   := $(IDP_DIR)/node_modules/.installed
BROWSER_DIR := tests/e2e/browser
BROWSER_STAMP := $(BROWSER_DIR)/node_modules/.installed
VENV_STAMP  := $(VENV)/.installed

export POSTERN_BIN

.PHONY: all build release test e2e demo deps sysdeps lint fmt clippy unit clean-e2e bench-stream bench memory-profile measure-deps
.PHONY: static static-armv7 test-arm test-armv7 image fuzz

all: build

build:
	$(CARGO) build

release:
	$(CARGO) build --release

test:
	@scripts/test.sh

e2e: build deps
	$(PY) -m pytest tests/e2e

demo: build deps
	$(PY) demo/run.py

bench-stream: build deps
	bench/stream-rss.sh

# Node, npm, openssl and Python first (not Chromium); then the IdP's modules and the venv.
measure-deps:
	@E2E_BROWSER=0 scripts/sysdeps.sh
	@$(MAKE) --no-print-directory $(IDP_STAMP) $(VENV_STAMP)

bench: measure-deps
	@bench/bench.sh

memory-profile: measure-deps
	@memory-profile/run.sh

deps: sysdeps $(IDP_STAMP) $(BROWSER_STAMP) $(VENV_STAMP)

sysdeps:
	@scripts/sysdeps.sh

$(IDP_STAMP): $(IDP_DIR)/package.json $(IDP_DIR)/package-lock.json
	cd $(IDP_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(BROWSER_STAMP): $(BROWSER_DIR)/package.json $(BROWSER_DIR)/package-lock.json
	cd $(BROWSER_DIR) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(VENV_STAMP): tests/e2e/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet -r tests/e2e/requirements.txt
	@touch $@

lint: fmt clippy

fmt:
	$(CARGO) fmt --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings

unit:
	$(CARGO) test

clean-e2e:
	rm -rf $(VENV) $(IDP_DIR)/node_modules $(BROWSER_DIR)/node_modules target/e2e-logs target/demo

static:
	@scripts/static.sh

static-armv7:
	@STATIC_TARGETS="x86_64 aarch64 armv7" scripts/static.sh

test-arm: deps
	@scripts/test-arm.sh

test-armv7: deps
	@ARM_ARCH=armv7 scripts/test-arm.sh

image: static
	@scripts/image.sh

fuzz:
	@scripts/fuzz.sh
