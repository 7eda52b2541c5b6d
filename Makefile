# The README's commands. `make run` and `make test` install what is missing first, so a fresh
# Debian 12 host (root, apt and PyPI reachable) needs nothing else.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
APT_PACKAGES := ffmpeg nginx libnginx-mod-rtmp shellcheck prometheus fonts-dejavu-core python3-venv
STAMP := $(VENV)/.installed
# Wheels of the package's dependencies, for the deployment tests: they build release venvs
# with `pip install --no-index`, so the tests themselves never download anything.
WHEELHOUSE := .cache/wheelhouse
WHEELHOUSE_STAMP := $(WHEELHOUSE)/.complete
# The versions a release venv installs (remote_deploy.sh and the wheelhouse pass it to pip -c);
# `make constraints` rewrites it from the development venv, on purpose, never on its own.
CONSTRAINTS := deploy/constraints-tgstream.txt
# The contract guards' tools (buf, optic) from npm, pinned by contracts/package-lock.json, in
# the project (never a global install); their install scripts are not run.
NODE_TOOLS := .cache/node
NODE_STAMP := $(NODE_TOOLS)/.installed
BUF := $(NODE_TOOLS)/node_modules/.bin/buf
OPTIC := $(NODE_TOOLS)/node_modules/.bin/optic

# The unit tests: no PostgreSQL, no systemd, no network; `make check` runs them.
UNIT_TESTS := tests/chat4all/unit tests/tgstream/unit tests/opskit tests/test_docs_links.py
# Coverage of chat4all's domain and use cases, with the gate of pyproject's [tool.coverage.*]
# (90% of branches); `make pytest COVERAGE= PYTEST_ARGS=tests/...` runs a part without it.
COVERAGE ?= --cov --cov-report=term-missing
# The slowest tests, listed at the end of each run: the suite's budget is 15 min in CI.
DURATIONS ?= --durations=25
# `make pytest` (no PYTEST_ARGS) runs the suite as two pytest processes side by side, on the 2
# cores CI has (most tests wait on servers, subprocesses and the clock): chat4all's tests with
# the coverage gate (no other test covers a line of chat4all's domain or use cases that these
# leave out), and every other test (tgstream, opskit, tests/*.py, test/) without coverage. They
# share no database, port or file: each test makes its own. The other process's output is
# printed once both are done; make fails when either fails (exit code 5 included).
PYTEST_COVERED ?= tests/chat4all
PYTEST_OTHERS ?= --ignore=tests/chat4all

.PHONY: run test check unit lint typecheck pytest constraints bench bench-chat4all bench-channels bench-streams bench-scale-out bench-systemd test-loaded contracts contracts-check contracts-baseline deps system-deps demo clean help

help:
	@echo "make run    - install what is missing, then run tgstream (preview) and chat4all side by side"
	@echo "make test   - install what is missing, then lint, type-check and run the whole test suite"
	@echo "              with the coverage gate (90% of chat4all's domain and use cases); ~12 min"
	@echo "make check  - lint, type-check and the unit tests: the inner loop, under a minute"
	@echo "make bench  - run the benchmarks in bench/ and print their tables"
	@echo "make constraints - pin the release venvs' versions ($(CONSTRAINTS)) to the development venv's"
	@echo "make test-loaded - the tgstream integration suite 3 times beside two x264 encodes"
	@echo "make bench-systemd - (root) kill -9 restart times on a real systemd, 20 rounds"
	@echo "make bench-chat4all - chat4all send throughput and latency, REST and gRPC, against two ceilings"
	@echo "make bench-streams  - idle SSE and gRPC event streams one API process holds (1 GiB, 1 s),"
	@echo "                      and the store's latency at 1,000 msg/s; ~10 min"
	@echo "make bench-scale-out - chat4all embedded against scale-out (PostgreSQL, NATS, Redis): msg/s,"
	@echo "                      accept latency, CPU per 1,000 messages by process and engine; ~5 min"
	@echo "make bench-channels - each chat4all channel's send throughput through its simulator, in one run"
	@echo "                      (BEFORE=<revision>: that release's REST send too, in the same run)"

# apt only when something is missing, so repeated runs stay fast and work offline. The packages'
# own services (nginx on :80, prometheus on :9090) are not started: we need only their binaries
# (nginx-rtmp and promtool in tests), so policy-rc.d refuses service starts during the install.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s "$$p" >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if ! $(PYTHON) -m venv --help >/dev/null 2>&1; then missing="$$missing python3-venv"; fi; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "error: apt packages missing ($$missing); run as root or install them" >&2; exit 2; fi; \
	  guard=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
	    printf '#!/bin/sh\n# installed by make for the duration of apt-get: start no services\nexit 101\n' > /usr/sbin/policy-rc.d; \
	    chmod 755 /usr/sbin/policy-rc.d; guard=1; fi; \
	  status=0; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null || status=$$?; \
	  if [ -n "$$guard" ]; then rm -f /usr/sbin/policy-rc.d; fi; \
	  exit $$status; \
	fi

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[tgstream,chat4all,s3,dev]'
	touch $@

deps: system-deps $(STAMP)

$(WHEELHOUSE_STAMP): pyproject.toml $(CONSTRAINTS) $(STAMP)
	mkdir -p $(WHEELHOUSE)
	$(BIN)/python -m pip wheel -q --disable-pip-version-check -w $(WHEELHOUSE) -c $(CONSTRAINTS) '.[tgstream]' 'setuptools>=77' wheel pip
	touch $@

# Pin what a release installs to what the development venv tested (needs PyPI; nothing is
# installed). Run after an upgrade passed `make test`, and review the diff before committing it.
constraints: deps
	$(BIN)/python scripts/refresh_constraints.py $(CONSTRAINTS)

demo: deps
	$(BIN)/tgstream demo --dir .demo

# tgstream (./playlist.txt when the operator has one, else a generated demo playlist, to the
# preview) and chat4all (SQLite in .chat4all/, with the Telegram simulator) side by side.
# Ctrl-C stops both.
run: deps
	@$(BIN)/chat4all serve & hub=$$!; trap 'kill $$hub 2>/dev/null; wait $$hub 2>/dev/null' EXIT; \
	if [ -f .env ] || [ -f "$${PLAYLIST_FILE:-playlist.txt}" ]; then $(BIN)/tgstream run; \
	else $(BIN)/tgstream demo --dir .demo && PLAYLIST_FILE=.demo/playlist.txt $(BIN)/tgstream run; fi

lint: deps
	$(BIN)/ruff format --check src tests test bench
	$(BIN)/ruff check src tests test bench

typecheck: deps
	$(BIN)/mypy

# With PYTEST_ARGS, one pytest on what they name. The second process ignores SIGINT unless told
# (bash starts background commands so), hence its `trap - INT`: Ctrl-C stops both.
pytest: deps $(WHEELHOUSE_STAMP) $(NODE_STAMP)
ifneq ($(strip $(PYTEST_ARGS)),)
	$(BIN)/pytest $(COVERAGE) $(DURATIONS) $(PYTEST_ARGS)
else
	@others_log=$$(mktemp); trap 'rm -f "$$others_log"' EXIT; \
	echo "pytest $(PYTEST_OTHERS) runs beside this one; its output follows"; \
	( trap - INT; exec $(BIN)/pytest $(DURATIONS) $(PYTEST_OTHERS) ) >"$$others_log" 2>&1 & others=$$!; \
	covered_status=0; $(BIN)/pytest $(COVERAGE) $(DURATIONS) $(PYTEST_COVERED) || covered_status=$$?; \
	others_status=0; wait $$others || others_status=$$?; \
	echo; echo "==== pytest $(PYTEST_OTHERS) (ran beside the above) ===="; cat "$$others_log"; \
	echo "pytest $(PYTEST_COVERED): exit code $$covered_status; pytest $(PYTEST_OTHERS): exit code $$others_status"; \
	if [ "$$covered_status" != 0 ]; then exit "$$covered_status"; fi; \
	exit "$$others_status"
endif

unit: deps
	$(BIN)/pytest -q $(UNIT_TESTS) $(PYTEST_ARGS)

# pytest's exit code 5 (nothing collected) is non-zero, so make fails on it as on any failure
# (no `|| true`, no `-` prefix on these recipes; tests/test_make.py holds it).
test: lint typecheck pytest

check: lint typecheck unit

$(NODE_STAMP): contracts/package.json contracts/package-lock.json
	@if ! command -v npm >/dev/null; then \
	  if [ "$$(id -u)" != 0 ]; then echo "error: npm is missing (apt-get install npm): the contract checks run buf and optic from npm" >&2; exit 2; fi; \
	  echo "installing: nodejs npm"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null; \
	fi
	mkdir -p $(NODE_TOOLS)
	cp contracts/package.json contracts/package-lock.json $(NODE_TOOLS)/
	npm ci --prefix $(NODE_TOOLS) --ignore-scripts --no-audit --no-fund --loglevel=error
	touch $@

# The committed contracts: the OpenAPI copy and the gRPC code generated from proto/.
contracts: deps
	$(BIN)/python -m grpc_tools.protoc -Iproto --python_out=src --pyi_out=src --grpc_python_out=src proto/chat4all/v1/api.proto
	$(BIN)/python -m chat4all.contracts docs/chat4all-openapi.json

# What `make test` checks of the contracts (tests/chat4all/contract/test_guards.py), quickly:
# buf's STANDARD lint, and no breaking change against the baselines in contracts/.
contracts-check: deps $(NODE_STAMP)
	$(BUF) lint
	$(BUF) breaking --against contracts/proto-baseline.json
	$(OPTIC) diff contracts/openapi-baseline.json docs/chat4all-openapi.json --check

# Only for a new major version of the API: the current contracts become the baselines.
contracts-baseline: contracts $(NODE_STAMP)
	$(BUF) build --exclude-source-info -o -#format=json | $(BIN)/python -m json.tool --indent 1 > contracts/proto-baseline.json
	cp docs/chat4all-openapi.json contracts/openapi-baseline.json

bench: deps
	$(BIN)/python -m bench

# BEFORE=<git revision>: that release's REST send is measured in the same run, for its share of
# the no-op ceiling beside this one's (its src/ is exported to .cache/bench-before).
bench-chat4all: deps
	@if [ -n "$${BEFORE:-}" ]; then rm -rf .cache/bench-before && mkdir -p .cache/bench-before && \
	  git archive "$$BEFORE" src | tar -x -C .cache/bench-before; fi
	CHAT4ALL_BENCH_BEFORE=$${BEFORE:+$(CURDIR)/.cache/bench-before/src} CHAT4ALL_BENCH_BEFORE_REV=$${BEFORE:-} \
	  $(BIN)/python -m bench chat4all

# Each channel's send throughput through its simulator, side by side in one run (~40 s).
bench-channels: deps
	$(BIN)/python -m bench channels

# Idle SSE and gRPC event streams one API process holds, stepping up to 1 GiB of RSS or 1 s of
# fan-out, and the store's latency under a steady 1,000 msg/s (~10 min).
bench-streams: deps
	$(BIN)/python -m bench streams

bench-scale-out: deps
	$(BIN)/python -m bench scale-out

# The tgstream integration suite 3 times in a row beside two endless x264 encodes (issue 12's
# proof that the end-to-end tests hold on a busy machine); ~20 min.
test-loaded: deps
	$(BIN)/python -m bench loaded

bench-systemd: deps $(WHEELHOUSE_STAMP)
	$(BIN)/python -m bench systemd

clean:
	rm -rf $(VENV) .demo .chat4all .pytest_cache .mypy_cache .ruff_cache .cache .coverage
