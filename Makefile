# raysfu: set-up, demo and tests on a fresh Debian 12 machine (as root) or a developer's one.
#
#   make demo   venv + install, Debian's chromium, the web client bundle, then the demo room on
#               http://127.0.0.1:8080
#   make test   the same set-up, then the whole pytest suite (unit, integration, e2e) inside a
#               loopback-only network namespace when unshare works (root), else plainly
#
# Variables: PYTHON (interpreter that makes .venv), PYTEST_ARGS, DEMO_ARGS.

SHELL       := /bin/bash
PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
PY_STAMP    := $(VENV)/.raysfu-installed
CHROMIUM    := /usr/bin/chromium
NODE_STAMP  := demo/node_modules/.raysfu-installed
BUNDLE      := demo/static/bundle.js
PYTEST_ARGS ?= -ra
DEMO_ARGS   ?=
APT         := DEBIAN_FRONTEND=noninteractive apt-get
RAY_ENV     := RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0

.PHONY: all setup demo test test-plain chromium ffmpeg nftables bundle clean

all: setup

setup: $(PY_STAMP) chromium ffmpeg nftables $(BUNDLE)

# ---- Python: .venv with the package (editable) and its dev extras; redone when pyproject changes
$(PY_STAMP): pyproject.toml
	@if [ ! -x $(PY) ]; then \
	  $(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	    rm -rf $(VENV); $(APT) update && $(APT) install -y python3-venv && $(PYTHON) -m venv $(VENV); }; \
	fi
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $@

# ---- Browser: Debian's chromium, never `playwright install`
chromium:
	@if [ ! -x $(CHROMIUM) ]; then $(APT) update && $(APT) install -y chromium; fi

# ---- RTP tools for the PlainTransport tests: Debian's ffmpeg (ffmpeg + ffprobe)
ffmpeg:
	@if ! command -v ffmpeg >/dev/null || ! command -v ffprobe >/dev/null; then $(APT) update && $(APT) install -y ffmpeg; fi

# ---- nftables: the ICE-TCP browser test drops UDP with nft inside its loopback-only namespace
nftables:
	@if ! command -v nft >/dev/null; then $(APT) update && $(APT) install -y nftables; fi

# ---- Web client: npm ci in demo/ and the esbuild bundle
$(NODE_STAMP): demo/package.json demo/package-lock.json
	@if ! command -v npm >/dev/null; then $(APT) update && $(APT) install -y nodejs npm; fi
	cd demo && npm ci --no-audit --no-fund --loglevel=error
	touch $@

$(BUNDLE): $(NODE_STAMP) demo/client/index.js demo/client/lab.js demo/package.json
	cd demo && npm run --silent build

bundle: $(BUNDLE)

# ---- Run
demo: setup
	$(RAY_ENV) $(PY) -m raysfu.demo $(DEMO_ARGS)

# pytest's exit code is make's.
test: setup
	@if unshare --net -- true 2>/dev/null; then \
	  echo "running pytest in a loopback-only network namespace"; \
	  unshare --net -- sh -c 'ip link set lo up && exec env $(RAY_ENV) $(PY) -m pytest $(PYTEST_ARGS)'; \
	else \
	  echo "unshare is not available: running pytest in the host network"; \
	  env $(RAY_ENV) $(PY) -m pytest $(PYTEST_ARGS); \
	fi

test-plain: setup
	env $(RAY_ENV) $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf demo/node_modules $(BUNDLE) demo/static/lab.js .pytest_cache
