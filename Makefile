# UniHM for ROS 2 — developer entry points. `make help` lists them.
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= $(CURDIR)/.venv
ENV := source $(VENV)/unihm.env
PYTEST_ARGS ?=

.PHONY: help setup test demo lint format doctor smoke docker-lint lock clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  make %-12s %s\n", $$1, $$2}'

setup:  ## install everything needed (Debian packages, .venv, interfaces, our packages); idempotent
	@UNIHM_VENV=$(VENV) bash scripts/setup.sh

test: setup  ## run every package's tests (pytest over src/*/test)
	@$(ENV) && python -m pytest $(PYTEST_ARGS)

demo: setup  ## the sim graph executes one Manipulate goal on a rendered scene (build/demo/)
	@$(ENV) && python scripts/demo.py --out build/demo

lint: setup  ## ruff over the Python code, hadolint over the Dockerfile
	@$(ENV) && ruff check . && hadolint docker/Dockerfile

format: setup  ## apply ruff's fixes
	@$(ENV) && ruff check --fix .

doctor: setup  ## check the installation (unihm doctor)
	@$(ENV) && unihm doctor

smoke: setup  ## the ROS smoke test, 10 runs in a row
	@$(ENV) && python -m pytest src/unihm_bringup/test/test_ros_smoke.py --count 10 $(PYTEST_ARGS)

lock: setup  ## regenerate requirements/constraints.txt from the current .venv
	@$(ENV) && { sed -n '1,2p' requirements/constraints.txt; pip freeze --exclude-editable | grep -viE '^(torch|unihm|control-msgs)'; } > requirements/constraints.txt.new && mv requirements/constraints.txt.new requirements/constraints.txt

clean:  ## remove the build folder and the virtual environment
	rm -rf build install log $(VENV)
