# hybridops.arc — the two commands a newcomer needs are `make demo` and `make test`;
# everything else here is a step of those two.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
TESTHOSTS := $(CURDIR)/tests/hosts/testhosts.sh
N ?= 3
COLLECTIONS := $(CURDIR)/build/collections
WHEELHOUSE := $(CURDIR)/build/wheelhouse
AZURE_IDENTITY_WHEELS := $(CURDIR)/build/azure-identity-wheels
EXTENSIONS := $(CURDIR)/build/extensions
AZURE_CLI := $(CURDIR)/build/azure-cli
AZURE_COLLECTION := $(CURDIR)/build/azure-collection
OLD_ANSIBLE_CORE := $(CURDIR)/build/ansible-core-2.16

export PATH := $(BIN):$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(COLLECTIONS)
export ANSIBLE_FORCE_COLOR := false
export PY_COLORS := 0

.PHONY: help deps venv wheelhouse extensions configurations collection test lint lint-python lint-ansible lint-shell lint-repository unit \
	sanity units lint-supply-chain lock durations-reset azure-cli azure-collection compat hosts-lanes security chaos fuzz-controlplane hosts-check agent-hosts integration awx molecule matrix matrix-sanity matrix-hosts build-collection demo test-hosts test-hosts-down clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- set-up (installs what it needs)
deps: ## Install the Debian packages the tests and the demo use (once)
	@$(CURDIR)/tools/install-system-deps.sh

$(VENV)/.stamp: requirements-dev.txt agent/pyproject.toml controlplane/pyproject.toml tests/lab/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check -r requirements-dev.txt \
		-e './agent[test]' -e './controlplane[test]' -e ./tests/lab
	touch $@

venv: $(VENV)/.stamp ## Python tooling, the agent, the control plane and the test lab (arc_lab) in .venv

# The agent bundle: for each supported target (CPython version, machine) one archive with the
# agent wheel and exactly the locked (pinned, hashed) wheels it needs there, plus pip;
# targets.json and SHA256SUMS (tools/agent-bundle.py; docs/agent-packages.md). Built from any
# controller Python. AGENT_TARGETS="... cp312-aarch64" adds a machine (not tested here).
AGENT_TARGETS ?= cp39-x86_64 cp310-x86_64 cp311-x86_64 cp312-x86_64 cp313-x86_64
# Each target Python as the supported distribution released it (Debian 11, Ubuntu 22.04, Debian 12,
# Ubuntu 24.04, Debian 13): the locks are resolved for it, and its first line names it.
AGENT_LOCK_PYTHONS := 3.9.2 3.10.4 3.11.2 3.12.3 3.13.5
$(WHEELHOUSE)/SHA256SUMS: $(VENV)/.stamp $(shell find agent/src -type f -name '*.py') agent/pyproject.toml agent/locks/*.txt tools/agent-bundle.py
	rm -rf build/agent-wheel && mkdir -p build/agent-wheel
	$(BIN)/pip wheel -q --disable-pip-version-check --no-deps -w build/agent-wheel ./agent
	$(BIN)/python tools/agent-bundle.py $(WHEELHOUSE) build/agent-wheel/arc_agent-*.whl $(AGENT_TARGETS)

wheelhouse: $(WHEELHOUSE)/SHA256SUMS ## The agent bundle (every supported target) the arc_agent role installs from

# The extension handler packages shipped with the repository (CustomScript 2.1 and 2.2; tools/
# build-extensions.py, docs/customscript.md); a control plane signs them when they are published.
$(EXTENSIONS)/SHA256SUMS: $(VENV)/.stamp $(shell find extensions -type f -not -path '*/__pycache__/*') tools/build-extensions.py
	$(BIN)/python tools/build-extensions.py $(EXTENSIONS)

extensions: $(EXTENSIONS)/SHA256SUMS ## The extension packages shipped with the repository (CustomScript)

# The machine configuration packages shipped with the repository (configurations/*.json, built with
# the control plane's own 'configuration build'; docs/machine-configuration.md).
CONFIGURATIONS := $(CURDIR)/build/configurations
$(CONFIGURATIONS)/.stamp: $(VENV)/.stamp $(wildcard configurations/*.json)
	@mkdir -p $(CONFIGURATIONS)
	@for document in configurations/*.json; do $(BIN)/arc-controlplane configuration build "$$document" --out $(CONFIGURATIONS) || exit 1; done
	@touch $@

configurations: $(CONFIGURATIONS)/.stamp ## The machine configuration packages shipped with the repository

collection: ## Make this checkout visible to Ansible as hybridops.arc
	@mkdir -p $(COLLECTIONS)/ansible_collections/hybridops
	@ln -sfn $(CURDIR) $(COLLECTIONS)/ansible_collections/hybridops/arc

# ---------------------------------------------------------------- tests
# Each step's recipe runs under tools/timed.sh, which logs how long it took; `make test` prints
# the table at the end. The suites on real hosts run in two labs side by side (hosts-lanes).
STEP = $(CURDIR)/tools/timed.sh $@
DURATIONS := $(CURDIR)/build/durations.log

test: deps venv wheelhouse extensions configurations collection durations-reset lint unit units sanity compat build-collection fuzz-controlplane hosts-check hosts-lanes ## Run every test
	@tools/durations.sh $(DURATIONS)
	@echo "make test: all passed"

durations-reset:
	@mkdir -p build && rm -f $(DURATIONS) && touch $(DURATIONS).start

# Three labs at once (ARC_TESTHOSTS_LAB 1, 2 and 3): the suites on hosts, the module tests and
# AWX in one, the security and chaos suites in another, the support matrix and molecule in the
# third (lanes of about equal length); each line of output says its lane.
hosts-lanes: deps venv wheelhouse extensions configurations collection $(AZURE_IDENTITY_WHEELS)/.stamp $(foreach v,$(MATRIX_CORES),$(CURDIR)/build/ansible-core-$(v)/.stamp) ## The suites on real hosts, in three labs side by side
	@( ARC_TESTHOSTS_LAB=1 $(MAKE) --no-print-directory agent-hosts integration awx 2>&1 | sed -u 's/^/[lab 1] /' ) & one=$$!; \
	( ARC_TESTHOSTS_LAB=2 $(MAKE) --no-print-directory security chaos 2>&1 | sed -u 's/^/[lab 2] /' ) & two=$$!; \
	( ARC_TESTHOSTS_LAB=3 $(MAKE) --no-print-directory matrix molecule 2>&1 | sed -u 's/^/[lab 3] /' ) & three=$$!; \
	status=0; wait $$one || status=$$?; wait $$two || status=$$?; wait $$three || status=$$?; exit $$status

lint: lint-python lint-ansible lint-shell lint-supply-chain lint-repository ## ruff (with bandit's checks), mypy, ansible-lint, shellcheck, changelog and docs lint, dependency audit, the repository's own rules

lint-python: venv
	$(STEP) sh -c 'cd agent && ruff check . && ruff format --check . && mypy'
	$(STEP) sh -c 'cd controlplane && ruff check . && ruff format --check . && mypy'
	$(STEP) sh -c 'ruff check . && ruff format --check .'

lint-ansible: venv collection
	$(STEP) ansible-lint --offline --profile production
	$(STEP) antsibull-changelog lint
	$(STEP) antsibull-docs lint-collection-docs --plugin-docs .

lint-supply-chain: venv ## Known vulnerabilities in the locked dependencies that ship (pip-audit)
	$(STEP) $(BIN)/python tools/audit-dependencies.py agent/locks/*.txt controlplane/requirements.lock

lock: venv ## Pin (with hashes) what the agent (for each target Python) and the control plane ship to the newest releases
	for version in $(AGENT_LOCK_PYTHONS); do \
		$(BIN)/uv pip compile -q --python-version $$version --python-platform x86_64-manylinux_2_17 --generate-hashes \
			--no-header --no-emit-index-url --custom-compile-command "make lock" agent/pyproject.toml \
			-o agent/locks/cp$$(echo $$version | cut -d. -f1,2 | tr -d .).txt \
		&& sed -i "1i # Python $$version" agent/locks/cp$$(echo $$version | cut -d. -f1,2 | tr -d .).txt; done
	$(BIN)/pip-compile -q --generate-hashes --strip-extras --allow-unsafe --no-header --no-emit-index-url \
		--no-emit-find-links --extra postgresql --output-file controlplane/requirements.lock controlplane/pyproject.toml

lint-repository: venv ## Layers, import circles, citations, naming, no sys.path tricks, no duplicated logic (tests/repository)
	$(STEP) pytest -q -p no:cacheprovider tests/repository

lint-shell: deps
	$(STEP) shellcheck tests/hosts/*.sh tools/*.sh .ci/run agent/src/arc_agent/upgrade/recover.sh

unit: venv azure-cli azure-collection ## pytest for agent/ and controlplane/ (the control plane's with the Azure CLI and azure.azcollection)
	$(STEP) sh -c 'cd agent && pytest -q'
	$(STEP) sh -c 'cd controlplane && ARC_AZURE_CLI=$(AZURE_CLI)/bin/az ARC_AZURE_COLLECTION=$(AZURE_COLLECTION) pytest -q'

# The Azure CLI from PyPI in a virtual environment of its own (it pins its own azure-* packages):
# controlplane/tests/test_azure_cli.py runs it, unmodified, against the control plane.
$(AZURE_CLI)/.stamp: requirements-azure-cli.txt
	rm -rf $(AZURE_CLI) && $(PYTHON) -m venv $(AZURE_CLI)
	$(AZURE_CLI)/bin/pip install -q --disable-pip-version-check -r requirements-azure-cli.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
	touch $@

azure-cli: $(AZURE_CLI)/.stamp ## The Azure CLI (from PyPI) the control plane's tests run

# azure.azcollection from the `ansible` package on PyPI (the collection only, unmodified) with its
# own Python requirements in a virtual environment of their own, the modules' interpreter:
# controlplane/tests/test_azure_collection.py runs its modules against the control plane.
$(AZURE_COLLECTION)/.stamp: requirements-azure-collection.txt
	rm -rf $(AZURE_COLLECTION) && $(PYTHON) -m venv $(AZURE_COLLECTION)
	$(AZURE_COLLECTION)/bin/pip download -q --disable-pip-version-check --no-deps -d $(AZURE_COLLECTION)/dist \
		-r requirements-azure-collection.txt 2>&1 | { grep -v "^WARNING: Location" || true; }
	$(AZURE_COLLECTION)/bin/python -c 'import sys, zipfile; z = zipfile.ZipFile(sys.argv[1]); \
		z.extractall(sys.argv[2], [n for n in z.namelist() if n.startswith("ansible_collections/azure/azcollection/")])' \
		$(AZURE_COLLECTION)/dist/ansible-*.whl $(AZURE_COLLECTION)/collections
	$(AZURE_COLLECTION)/bin/pip install -q --disable-pip-version-check \
		-r $(AZURE_COLLECTION)/collections/ansible_collections/azure/azcollection/requirements-azure.txt 2>&1 \
		| { grep -v "^WARNING: Location\|yanked" || true; }
	touch $@

azure-collection: $(AZURE_COLLECTION)/.stamp ## azure.azcollection (from PyPI) the control plane's tests run

units: venv ## ansible-test units (module and module_utils unit tests)
	$(STEP) tools/ansible-test.sh units

sanity: venv ## ansible-test sanity
	$(STEP) tools/ansible-test.sh sanity

# The oldest ansible-core the collection refuses (one below requires_ansible), from PyPI.
$(OLD_ANSIBLE_CORE)/.stamp:
	rm -rf $(OLD_ANSIBLE_CORE) && $(PYTHON) -m venv $(OLD_ANSIBLE_CORE)
	$(OLD_ANSIBLE_CORE)/bin/pip install -q --disable-pip-version-check 'ansible-core>=2.16,<2.17' 2>&1 | { grep -v "^WARNING: Location" || true; }
	touch $@

compat: venv collection $(OLD_ANSIBLE_CORE)/.stamp ## The collection on other ansible-core versions (tests/compat)
	$(STEP) pytest -q -p no:cacheprovider tests/compat

# The support matrix (docs/support.md): every other ansible-core from requires_ansible to the
# newest, each in build/ansible-core-X.Y on a Python it supports (Debian's or the image's pyenv).
MATRIX_CORES := 2.17 2.18 2.20 2.21
MATRIX_PYTHON_2.20 := $(lastword $(wildcard $(HOME)/.pyenv/versions/3.12*/bin/python3))
MATRIX_PYTHON_2.21 := $(lastword $(wildcard $(HOME)/.pyenv/versions/3.13*/bin/python3))
$(CURDIR)/build/ansible-core-%/.stamp:
	@python=$(or $(MATRIX_PYTHON_$*),$(PYTHON)); [ -x "$$(command -v $$python)" ] \
		|| { echo "no Python for ansible-core $* (it needs 3.12 or newer: a pyenv version)"; exit 1; }
	rm -rf $(@D) && $(or $(MATRIX_PYTHON_$*),$(PYTHON)) -m venv $(@D)
	$(@D)/bin/pip install -q --disable-pip-version-check 'ansible-core==$*.*' 2>&1 | { grep -v "^WARNING: Location" || true; }
	touch $@

matrix: deps venv wheelhouse collection $(foreach v,$(MATRIX_CORES),$(CURDIR)/build/ansible-core-$(v)/.stamp) ## ansible-test sanity on, and smoke runs of, every other ansible-core and host release (tests/matrix)
	$(STEP) tools/build-collection.sh
	@$(MAKE) --no-print-directory -j2 matrix-sanity matrix-hosts

# The two halves of make matrix, side by side: sanity is CPU on the controller, the smoke runs
# mostly wait on the hosts.
matrix-sanity: venv
	$(STEP) sh -c 'for v in $(MATRIX_CORES); do log=$(CURDIR)/build/sanity-$$v.log; \
		PYTHON=$(CURDIR)/build/ansible-core-$$v/bin/python ARC_ANSIBLE_TEST_DIR=/tmp/hybridops-arc.ansible-test-$$v \
		tools/ansible-test.sh sanity >$$log 2>&1 || { tail -40 $$log; echo "ansible-test sanity failed on ansible-core $$v (log: $$log)"; exit 1; }; \
		echo "ansible-test sanity on ansible-core $$v: passed"; done'

matrix-hosts: deps venv wheelhouse collection
	$(STEP) pytest -q -p no:cacheprovider tests/matrix

build-collection: venv ## Build the collection tarball, check that only the collection is in it, run galaxy-importer on it
	$(STEP) tools/build-collection.sh
	$(STEP) tools/galaxy-importer.sh

fuzz-controlplane: venv ## schemathesis against the control plane's OpenAPI document (no 5xx allowed)
	$(STEP) tools/fuzz-controlplane.sh

hosts-check: deps venv ## Test the test-host script itself (boot, isolation, crash clean-up)
	$(STEP) pytest -q -p no:cacheprovider tests/hosts

# azure-identity and what it needs, for applications on a test host (which has no index to
# install from): the agent host tests get managed identity tokens with it, unmodified.
$(AZURE_IDENTITY_WHEELS)/.stamp: requirements-dev.txt | $(VENV)/.stamp
	rm -rf $(AZURE_IDENTITY_WHEELS) && mkdir -p $(AZURE_IDENTITY_WHEELS)
	$(BIN)/pip download -q --disable-pip-version-check --only-binary=:all: -d $(AZURE_IDENTITY_WHEELS) \
		"$$(grep -E '^azure-identity==' requirements-dev.txt)" pip
	touch $@

agent-hosts: deps venv wheelhouse extensions configurations collection $(AZURE_IDENTITY_WHEELS)/.stamp ## The agent runtime on real test hosts against the control plane
	$(STEP) pytest -q -p no:cacheprovider tests/agent

integration: deps venv wheelhouse extensions configurations collection ## Module integration targets on real test hosts (tests/integration/run.py)
	$(STEP) $(BIN)/python tests/integration/run.py

awx: deps venv wheelhouse collection ## The onboard, configure, upgrade and offboard playbooks run as AWX job templates (ansible-runner) on real test hosts
	$(STEP) pytest -q -p no:cacheprovider tests/awx

molecule: deps venv wheelhouse extensions collection ## Molecule scenarios on real test hosts
	$(STEP) molecule test --all

security: deps venv wheelhouse collection ## Security suite on real test hosts (tests/security; docs/security.md)
	$(STEP) pytest -q -p no:cacheprovider tests/security

chaos: deps venv wheelhouse extensions collection ## Chaos suite on real test hosts: crashes, full disk, clock, concurrency (tests/chaos)
	$(STEP) pytest -q -p no:cacheprovider -rA tests/chaos

# ---------------------------------------------------------------- test hosts and demo
test-hosts: deps ## Start N real test hosts (default 3) and write their inventory
	$(TESTHOSTS) up $(N)

test-hosts-down: ## Stop every test host (also what a crashed run left behind)
	$(TESTHOSTS) down

demo: deps venv wheelhouse extensions collection ## Control plane + 3 bare hosts, the onboard playbook, the machines as the control plane sees them
	$(BIN)/python tools/demo.py

clean: test-hosts-down ## Remove build output and the tool environment
	rm -rf build .venv tests/output
