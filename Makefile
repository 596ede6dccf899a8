# One-command entry points (see README.md).
#   make run   - set everything up, then run the node with config/node.yaml
#   make test  - set everything up, then run the whole test suite
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
APT_PACKAGES := dcmtk dicom3tools orthanc orthanc-dicomweb postgresql chromium ghostscript
PYTEST_ARGS ?=
NODE_MIN := 20.19

.PHONY: setup system-deps venv run test test-fast bench clean

setup: system-deps venv

# DCMTK (peer PACS/modality in tests), dicom3tools (dciodvfy), Orthanc + DICOMweb (the PACS),
# PostgreSQL (shared-queue tests start a throw-away server on 127.0.0.1), Chromium (the OHIF
# plugin's end-to-end test, headless), Ghostscript (reads the PDF report back in tests), and
# Node.js + npm (the OHIF plugin's build and tests; its vite needs Node >= NODE_MIN). Node.js is
# looked for as a command, so one installed from elsewhere (nodejs.org, NodeSource) is kept;
# Debian's own is installed when there is none, and a too old one stops `make` with the reason.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	command -v node >/dev/null 2>&1 || missing="$$missing nodejs"; \
	command -v npm >/dev/null 2>&1 || missing="$$missing npm"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number), [x, y] = "$(NODE_MIN)".split(".").map(Number); process.exit(a > x || (a === x && b >= y) ? 0 : 1)' || \
	  { echo "Node.js $$(node --version) is too old: the OHIF plugin needs >= $(NODE_MIN) (Debian 13 ships it;" \
	         "on Debian 12 install Node 20 or 22 from nodejs.org or NodeSource)" >&2; exit 1; }

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e ".[dev,train,postgres]"
	touch $@

venv: $(VENV)/.installed

# config/node.yaml's API key (local-admin) comes from LGENODE_API_KEY; without one, a random key
# is made once in var/api-key (mode 600).
run: setup
	@mkdir -p var; [ -n "$$LGENODE_API_KEY" ] || [ -s var/api-key ] || \
	  (umask 077; $(PY) -c "import secrets; print(secrets.token_urlsafe(32))" > var/api-key)
	@[ -n "$$LGENODE_API_KEY" ] || echo "node API key: var/api-key (send 'Authorization: Bearer <key>')"
	LGENODE_API_KEY="$${LGENODE_API_KEY:-$$(cat var/api-key 2>/dev/null)}" $(VENV)/bin/lgenode serve --config config/node.yaml

test: setup
	$(VENV)/bin/pytest $(PYTEST_ARGS)

test-fast: venv
	$(VENV)/bin/pytest -m "not slow" $(PYTEST_ARGS)

bench: setup
	$(PY) bench/ingest

clean:
	rm -rf var .pytest_cache test-artifacts
