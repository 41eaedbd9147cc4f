# The two contract commands: `make run` (the local platform) and `make test` (every test).
# Each sets itself up on a fresh machine: virtual environment, Python packages, Debian packages.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# checkov (template.yaml) lives in its own environment: its dependencies clash with the project's pins.
TOOLS_VENV := .venv-tools
TOOLS_STAMP := $(TOOLS_VENV)/.installed
CHECKOV := $(TOOLS_VENV)/bin/checkov
DEBIAN_PACKAGES := docker-registry skopeo chromium

.PHONY: run test bench chaos lint typecheck setup system-deps clean

setup: $(STAMP) $(TOOLS_STAMP)

$(STAMP): pyproject.toml requirements/dev.txt layers/core/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements/dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

$(TOOLS_STAMP): requirements/tools.txt
	rm -rf $(TOOLS_VENV)
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TOOLS_VENV)/bin/python -m pip install --quiet -r requirements/tools.txt
	touch $(TOOLS_STAMP)

# The registry tests and benchmark use the CNCF distribution registry and skopeo from Debian, the
# console's browser tests Debian's chromium (driven by Playwright, never its own browser download).
# The registry package's own service would hold port 5000 (the local platform's AWS port): it is switched off.
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

# The whole pipeline through the local platform under faults; prints lost (must be 0) and the cost per
# million deliveries. Exits non-zero if anything was lost.
chaos: $(STAMP)
	$(PY) -m chaos

lint: $(STAMP) $(TOOLS_STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	@# Each function is its own top-level module `app`: checked one directory at a time.
	for f in functions/*/; do (cd $$f && MYPYPATH=../../layers/core ../../$(VENV)/bin/mypy --strict --ignore-missing-imports --explicit-package-bases .) || exit 1; done
	@# checkov's CloudFormation framework reads SAM templates (AWS::Serverless::* included). Skips are
	@# only in template.yaml, next to their resource. --skip-download: no calls to Prisma Cloud. checkov
	@# exits 0 when it cannot parse the file, so its summary must show checks run and none failed.
	@echo "$(CHECKOV) --file template.yaml --framework cloudformation --compact --quiet --skip-download"; \
	out=$$($(CHECKOV) --file template.yaml --framework cloudformation --compact --quiet --skip-download 2>&1); \
	status=$$?; echo "$$out"; \
	if [ $$status -ne 0 ]; then exit $$status; fi; \
	echo "$$out" | grep -Eq '^Passed checks: [1-9][0-9]*, Failed checks: 0, Skipped checks: [0-9]+$$' \
	  || { echo "checkov: template.yaml was not fully checked (see above)"; exit 1; }

clean:
	rm -rf $(VENV) $(TOOLS_VENV) .local .pytest_cache .mypy_cache .ruff_cache
