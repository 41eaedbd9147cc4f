# The two contract commands: `make run` (the local stack) and `make test` (every test).
# Each sets itself up on a fresh machine: virtual environment, Python packages, Debian packages.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEBIAN_PACKAGES := docker-registry skopeo

.PHONY: run test bench lint typecheck setup system-deps clean

setup: $(STAMP)

$(STAMP): pyproject.toml requirements/dev.txt layers/core/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# The registry tests and benchmark use the CNCF distribution registry and skopeo from Debian. The
# package's own service would hold port 5000 (the local stack's AWS port): it is switched off.
system-deps:
	@missing=""; for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	  if [ -d /run/systemd/system ]; then $$SUDO systemctl disable --now docker-registry >/dev/null 2>&1 || true; fi; \
	fi

run: $(STAMP)
	$(PY) -m meshanics_local

test: $(STAMP) system-deps lint
	$(PY) -m pytest -n 2 --dist loadfile

bench: $(STAMP) system-deps
	$(PY) -m bench

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	@# Each function is its own top-level module `app`: checked one directory at a time.
	for f in functions/*/; do (cd $$f && MYPYPATH=../../layers/core ../../$(VENV)/bin/mypy --strict --ignore-missing-imports --explicit-package-bases .) || exit 1; done

clean:
	rm -rf $(VENV) .local .pytest_cache .mypy_cache .ruff_cache
