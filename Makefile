# mtd.containers — run as root on a Debian 12 machine.
#   make demo   bring the local lab up and run the main job on it
#   make test   sanity + unit + integration tests (brings its own lab up and down)
SHELL := /bin/bash
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: setup lab-up lab-down lab-status sanity lint units integration test demo bench changelog-lint clean

# Idempotent and quick when everything is in place: every target below runs it first.
setup:
	@bash scripts/setup.sh

lab-up: setup
	@bash lab/lab.sh up

lab-down:
	@bash lab/lab.sh down

lab-status:
	@bash lab/lab.sh status

sanity: setup
	@bash scripts/sanity.sh

lint: setup
	@bash scripts/lint.sh

units: setup
	@bash scripts/pytest.sh tests/unit

integration: setup
	@bash scripts/pytest.sh tests/integration

changelog-lint: setup
	@antsibull-changelog lint

test: setup
	@bash scripts/test.sh

demo: setup
	@bash scripts/demo.sh

bench: setup
	@bash scripts/bench.sh

clean:
	rm -rf .build/sanity tests/output .pytest_cache bench/out
