# The README's two commands, `make demo` and `make test`, do all the set-up on a fresh machine:
# they create .venv and install metabench into it with the tested stack (constraints.txt).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Headless MuJoCo rendering through OSMesa (Debian: libosmesa6; .ci/run installs it).
export MUJOCO_GL ?= osmesa
export PYOPENGL_PLATFORM ?= osmesa
# Two cores here: keep torch from oversubscribing them under pytest-xdist.
export OMP_NUM_THREADS ?= 1

.PHONY: install demo test test-slow bench lint leaderboard clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,metaworld,ray]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/metabench demo

test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15 -q

test-slow: $(STAMP)
	$(PY) -m pytest -m slow -q --durations=15

bench: $(STAMP)
	$(PY) -m pytest benchmarks -o python_files="bench_*.py" -p no:xdist --benchmark-enable --benchmark-only --benchmark-columns=min,median,mean,ops,rounds -q -s

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks
