# Developer and CI entry points. Needs only GNU make and python3: every tool runs from the
# virtualenv by path, nothing is activated.
#
#   make test                 run the test suite (SQLite + local memory unless DATABASE_URL / REDIS_URL)
#   make demo                 migrate, seed and serve the demo shop on http://127.0.0.1:$(PORT)/
#
# Variables (set on the command line or in the environment):
#   PYTHON       interpreter that creates the virtualenv            (python3)
#   VENV         virtualenv directory                               (.venv)
#   EXTRAS       extras installed into it                           (test,lint)
#   PIP_EXTRA    further requirements, space separated, no quotes  e.g. PIP_EXTRA='django>=6,<7'
#   CONSTRAINTS  pip constraints file for the install and the build  e.g. .ci/constraints-lowest.txt
#   PYTEST_ARGS  arguments for pytest                               e.g. PYTEST_ARGS='-m "not browser"'
#   PORT         port of the demo server                            (8000)

PYTHON ?= python3
VENV ?= .venv
EXTRAS ?= test,lint
PIP_EXTRA ?=
CONSTRAINTS ?=
PYTEST_ARGS ?=
BENCH_ARGS ?=
PORT ?= 8000

BIN := $(VENV)/bin
PY := $(BIN)/python
STAMP := $(VENV)/.installed
MYSQL_STAMP := $(VENV)/.installed-mysql

# The constraints pin the package's build backend too (pip's --build-constraint).
PIP_CONSTRAINTS := $(if $(CONSTRAINTS),-c '$(CONSTRAINTS)' --build-constraint '$(CONSTRAINTS)')

# The stamp records what was installed, so the virtualenv is reinstalled when pyproject.toml
# or the constraints file changes, or when it is asked for other extras, requirements or
# constraints than last time.
INSTALL_SPEC := $(strip $(EXTRAS) $(PIP_EXTRA) $(if $(CONSTRAINTS),-c $(CONSTRAINTS)))
ifneq ($(file <$(STAMP)),$(INSTALL_SPEC))
STAMP_FORCE := FORCE
endif

.DEFAULT_GOAL := help

.PHONY: help
help:
	@echo "make test    run the tests (PYTEST_ARGS=... passes arguments to pytest)"
	@echo "make demo    migrate, seed and run the demo shop on http://127.0.0.1:$(PORT)/"
	@echo "make lint    ruff check, ruff format --check, mypy"
	@echo "make bench   run benchmarks/run.py"
	@echo "make venv    create $(VENV) with the extras [$(EXTRAS)]; make venv-mysql adds [mysql]"

# The .gitignore inside keeps any virtualenv name (.venv-dj6, .venv-lowest too) out of git, as Python 3.13's
# venv does by itself.
$(PY):
	$(PYTHON) -m venv $(VENV)
	@printf '*\n' > $(VENV)/.gitignore
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml $(CONSTRAINTS) $(STAMP_FORCE) | $(PY)
	$(PY) -m pip install $(strip $(PIP_CONSTRAINTS) $(foreach req,$(PIP_EXTRA),'$(req)') -e '.[$(EXTRAS)]')
	@printf '%s\n' '$(INSTALL_SPEC)' > $@

# mysqlclient compiles against libmariadb: needs `apt-get install libmariadb-dev pkg-config`.
$(MYSQL_STAMP): pyproject.toml $(STAMP)
	$(PY) -m pip install $(strip $(PIP_CONSTRAINTS) -e '.[mysql]')
	@touch $@

.PHONY: venv venv-mysql
venv: $(STAMP)
venv-mysql: $(MYSQL_STAMP)

.PHONY: test
test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

.PHONY: demo
demo: $(STAMP)
	$(PY) manage.py migrate --no-input
	$(PY) manage.py seed_demo
	@echo
	@echo "Demo shop: http://127.0.0.1:$(PORT)/   (users alice and bob, password demo-password; Ctrl-C stops it)"
	@echo
	$(PY) manage.py runserver 127.0.0.1:$(PORT)

.PHONY: lint
# All three run, so one pass shows every problem; the target fails if any of them did.
lint: $(STAMP)
	@status=0; \
	for tool in "ruff check ." "ruff format --check ." "mypy"; do \
		echo "$(BIN)/$$tool"; $(BIN)/$$tool || status=1; \
	done; \
	exit $$status

.PHONY: bench
bench: $(STAMP)
	$(PY) benchmarks/run.py $(BENCH_ARGS)

.PHONY: FORCE
FORCE:
