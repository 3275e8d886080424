# The README's two commands, `make demo` and `make test`, do all set-up themselves.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-compiled bytecode lint typecheck unit chaos bench browser multihost-tools system-packages clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,hdf5,notebook]'
	touch $(STAMP)

# Debian's chromium for the browser tests (no browser download from a CDN).
browser:
	@command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ] || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)

# Debian's iproute2 (network namespaces, tc), nftables (the network-fault tests' silent
# drops and packet loss) and OpenSSH server for the multi-host tests (tests/multihost).
# Installing starts no sshd and loads no rules: the tests run their own, in namespaces.
multihost-tools:
	@(command -v ip >/dev/null 2>&1 && [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null 2>&1 \
	  && command -v nft >/dev/null 2>&1) || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    iproute2 nftables openssh-client openssh-server >/dev/null) || \
	  echo "could not install iproute2/nftables/openssh-server (not root?): the multihost tests will skip"

demo: $(STAMP)
	$(PY) -m shoal demo

lint: $(STAMP)
	$(VENV)/bin/ruff check shoal tests benchmarks

typecheck: $(STAMP)
	$(VENV)/bin/mypy shoal

unit: $(STAMP)
	$(VENV)/bin/pytest -q -m "not integration and not browser"

# Kills, freezes and garbles real clusters (also part of `make test`).
chaos: $(STAMP)
	$(VENV)/bin/pytest -q -m chaos

# The optional compiled scheduler (mypyc, README "Compiled scheduler"), built the way a
# user builds it into build/compiled (not the venv, which stays the pure editable install),
# then tests/scheduler run against it. tests/_compiled.py stops the run if the compiled
# modules are not the ones imported (the source tree's shoal must not come first).
# The build's mypy cache goes under build/compiled (the build is the user's otherwise: same
# command, same mypyc options): `make test` runs `make typecheck` beside it, and both must
# not write .mypy_cache's database (the build reads no cache anyway: it is not incremental).
# The tests run in two pytest-xdist processes (the fuzzers' chunks spread over both).
COMPILED := build/compiled
COMPILED_TEST_PROCESSES ?= 2
test-compiled: $(STAMP)
	rm -rf $(COMPILED)
	MYPY_CACHE_DIR=$(abspath $(COMPILED))/mypy_cache SHOAL_MYPYC=1 \
	  $(PY) -m pip wheel -q --no-deps -w $(COMPILED)/wheel .
	$(PY) -m zipfile -e $(COMPILED)/wheel/shoal-*.whl $(COMPILED)/site
	cd $(COMPILED)/site && SHOAL_EXPECT_COMPILED=1 PYTHONPATH="$$PWD" \
	  $(abspath $(VENV))/bin/pytest -q -p no:cacheprovider -o pythonpath=tests \
	  -n $(COMPILED_TEST_PROCESSES) --rootdir=$(CURDIR) $(CURDIR)/tests/scheduler

# As root (CI) the multi-host tests must run: a missing tool fails them instead of skipping.
# The suite mostly waits (worker processes, sockets, deadlines): pytest-xdist processes
# overlap those waits, so more of them than cores still pays (README, "make test").
#
# Before the suite, side by side (a sub-make with -j4, each target's output printed whole
# when it ends; any failure stops `make test`): the system packages (apt, mostly waiting on
# the network), ruff + mypy (one core) and the compiled build and its tests (the other).
# The venv is made first; the sub-make takes it as is (-o: make passes no -o down).
# Beside them, `bytecode` (below) writes the .pyc files the suite's processes read.
# The suite's order and worksteal scheduling: tests/conftest.py (SLOW_FIRST).
PYTEST_PROCESSES ?= 3
test: $(STAMP)
	$(MAKE) --no-print-directory -j4 --output-sync=target -o $(STAMP) \
	  system-packages lint typecheck test-compiled bytecode
	if [ "$$(id -u)" = 0 ]; then export SHOAL_REQUIRE_MULTIHOST=1; fi; \
	  $(VENV)/bin/pytest -q -n $(PYTEST_PROCESSES)

# The suite starts hundreds of Python processes (workers, commands, kernels), and under
# PYTHONDONTWRITEBYTECODE=1 (set on this project's machines) each one compiled the modules
# it imports anew: shoal's, ~0.25 s of CPU a worker process, and the test modules a worker
# imports to run a test's function. Python reads the .pyc files compileall writes whatever
# that variable says (and rewrites stale ones itself). pytest reads, but under that
# variable never writes, the assertion-rewritten test modules' own .pyc files: each xdist
# process rewrote all of them at collection (three processes' start-up: 31-35 s of CPU
# without the files, 11 s with them); one collection with the variable emptied writes
# them (~9 s of CPU, beside the lint and build above).
bytecode: $(STAMP)
	$(PY) -m compileall -q shoal tests benchmarks
	PYTHONDONTWRITEBYTECODE= $(VENV)/bin/pytest -q --collect-only -p no:cacheprovider >/dev/null

# browser, then multihost-tools: one apt at a time (both may install).
system-packages:
	$(MAKE) --no-print-directory browser
	$(MAKE) --no-print-directory multihost-tools

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
