# Paperboy: `make demo` runs the daily job on the embedded defaults; `make test` runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
APT_PACKAGES := redis-server postgresql chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test serve install test-deps system-deps worker beat clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

demo: export LOG_LEVEL ?= WARNING
demo: install
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py demo

serve: install
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py runserver 127.0.0.1:8000

worker: install
	$(BIN)/celery -A config worker -l info -Q default,fetch,send

beat: install
	$(BIN)/celery -A config beat -l info

# Debian packages the tests start for real: Redis, PostgreSQL, Chromium.
system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	[ -x /usr/sbin/pgbouncer ] || missing="$$missing pgbouncer"; \
	[ -x /usr/bin/chromium ] || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
		echo "Installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

test-deps: system-deps $(VENV)/.installed-test

# The suite runs in TEST_WORKERS processes (pytest-xdist), each with its own PostgreSQL and
# Redis; most of its time is spent waiting for the real servers and workers it starts. A
# worker that runs out of tests takes some of the other's ("worksteal"): the suite's tests
# take from milliseconds to 20 s.
TEST_WORKERS ?= 2

test: test-deps
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist worksteal

clean:
	rm -rf var/outbox var/paperboy.sqlite3
