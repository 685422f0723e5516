# Quickstart: `make demo` and `make test`. Everything installs into .venv from
# constraints.txt, so users, CI and developers run the same versions.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test install lock clean java

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ltvcast demo

# The Spark engine (ltvcast[spark], docs/scale.md) needs a Java 17 runtime.
JAVA_HINT := Java 17 is missing: the Spark engine and its tests need it. Install it (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; macOS: brew install openjdk@17) or set JAVA_HOME.

java:
	@java -version >/dev/null 2>&1 || { echo "$(JAVA_HINT)"; exit 1; }
	@java -version 2>&1 | head -1

test: $(STAMP)
	@java -version >/dev/null 2>&1 || echo "warning: $(JAVA_HINT) The Spark tests skip (under CI=true they fail)."
	$(BIN)/python -m pytest -n 2 -q

# Regenerate constraints.txt after changing dependencies in pyproject.toml.
lock:
	rm -rf .lockenv && $(PYTHON) -m venv .lockenv
	.lockenv/bin/python -m pip install --quiet ".[dev]"
	.lockenv/bin/python -m pip freeze --exclude ltvcast > constraints.txt
	rm -rf .lockenv

clean:
	rm -rf $(VENV) ltvcast-demo
