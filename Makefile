# telechat-operator: run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: help
help: ## List the targets
	@awk 'BEGIN{FS=":.*## "} /^[a-zA-Z_-]+:.*## /{printf "  %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the operator and its dev tools installed

.PHONY: tools
tools: ## Resolve or build kube-apiserver, controller-manager, scheduler, kubectl, etcd, kwok, helm into .tools/bin
	bash hack/tools.sh

.PHONY: vllm-env
vllm-env: ## Install (once, cached) the vLLM CPU environment used by the end-to-end tests and the demo
	bash hack/vllm-env.sh >/dev/null

.PHONY: cluster-up
cluster-up: tools ## Start the local control plane with fake GPU nodes (kubeconfig in .cluster/kubeconfig)
	bash hack/cluster.sh up

.PHONY: cluster-down
cluster-down: ## Stop the local control plane and remove its state
	bash hack/cluster.sh down

.PHONY: crds
crds: venv ## Regenerate crds/ (and the chart's copy) and docs/crd-reference.md from the pydantic spec
	$(PY) -m telechat_operator.crdgen --write
	$(PY) -m telechat_operator.docgen --write

.PHONY: lint
lint: venv ## ruff (with mccabe complexity), mypy over every Python file, the import-layer contract
	$(VENV)/bin/ruff check operator tests bench hack
	$(VENV)/bin/ruff format --check operator tests bench hack
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

.PHONY: unit
unit: venv ## Unit tests (no cluster)
	$(PY) -m pytest tests/unit -q

.PHONY: integration
integration: venv tools ## Integration tests against the local control plane
	$(PY) -m pytest tests/integration -q

.PHONY: e2e
e2e: venv tools vllm-env ## End-to-end tests with real vLLM on CPU
	$(PY) -m pytest tests/e2e -q

.PHONY: test
test: venv tools vllm-env lint ## Everything CI runs: lint, unit, integration and end-to-end tests
	$(PY) -m pytest tests -q

.PHONY: demo
demo: venv tools vllm-env ## Local cluster + operator + a tiny TeleChat2 served by real vLLM on CPU
	$(PY) hack/demo.py

.PHONY: demo-down
demo-down: ## Stop what `make demo` started
	$(PY) hack/demo.py --down

.PHONY: bench
bench: venv tools ## Benchmarks against the local control plane (results in bench/results, docs/benchmarks.md)
	$(PY) -m bench.run

.PHONY: image
image: ## Build the images (needs a Docker engine; not available on the CI machine)
	docker build -f images/operator/Dockerfile -t telechat-operator:dev .
	docker build -f images/vllm-telechat/Dockerfile -t vllm-telechat:dev images/vllm-telechat

.PHONY: clean
clean: cluster-down ## Remove local state (not the cache in ~/.cache/telechat-operator)
	rm -rf .cluster .demo .pytest_cache .mypy_cache .ruff_cache
