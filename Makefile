# The README's two commands, `make demo` and `make test`, do all the set-up on a fresh machine:
# they create .venv and install metabench into it with the tested stack (constraints.txt).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# No MUJOCO_GL here: `import metabench` chooses osmesa, egl or disable by what this machine has
# (metabench/gl.py), and a MUJOCO_GL set by the user wins.
# Two cores here: keep torch from oversubscribing them under pytest-xdist.
export OMP_NUM_THREADS ?= 1

.PHONY: install demo test test-slow bench lint leaderboard leaderboard-check clean

# The CI leaderboard (leaderboards/ci): every reference agent x every cheap family x seeds 0-4 at the
# ci tier. Add new reference agents and cheap families to these lists (the only place they are kept).
# `make leaderboard` runs only the units without an ok record (LEADERBOARD_FLAGS=--force reruns all).
LEADERBOARD_AGENTS ?= agents/random_agent.py agents/no_context.py agents/explicit_context.py agents/rl2.py \
  agents/maml.py agents/pearl.py
LEADERBOARD_ENVS ?= metabench/PointNav-v0 metabench/Bandit-v0 metabench/TabularMDP-v0
LEADERBOARD_SEEDS ?= 0-4
LEADERBOARD_DIR ?= leaderboards/ci
LEADERBOARD_FLAGS ?=
# CI reruns one seed of every agent on these families and checks it against the committed band.
LEADERBOARD_CHECK_ENVS ?= metabench/PointNav-v0
# The seed that `make leaderboard-check` reruns for each agent, and where (empty: a temporary folder).
LEADERBOARD_CHECK_SEED ?= 0
LEADERBOARD_RERUN_DIR ?=
DEMO_DIR ?= results/demo

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,metaworld,ray,box2d]'
	touch $(STAMP)

# The three baselines on PointNav at the smoke tier (about a minute), then their leaderboard.
demo: $(STAMP)
	for agent in agents/random_agent.py agents/no_context.py agents/explicit_context.py; do \
	  $(VENV)/bin/metabench evaluate $$agent --env metabench/PointNav-v0 --tier smoke --seeds 0-1 \
	    --out $(DEMO_DIR)/records --force || exit 1; \
	done
	$(VENV)/bin/metabench leaderboard $(DEMO_DIR)/records -o $(DEMO_DIR)
	cat $(DEMO_DIR)/README.md

test: $(STAMP)
	$(PY) -m pytest -n 2 --durations=15 -q

# The slow learning tests (CI runs them after `make test`, without the two tests that build Meta-World's
# own ML10/ML45 benchmarks, about 15 minutes: SLOW_ARGS below).
SLOW_ARGS ?=
test-slow: $(STAMP)
	$(PY) -m pytest -m slow -n 2 -q --durations=15 $(SLOW_ARGS)

bench: $(STAMP)
	$(PY) -m pytest benchmarks -o python_files="bench_*.py" -p no:xdist --benchmark-enable --benchmark-only --benchmark-columns=min,median,mean,ops,rounds -q -s

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

leaderboard: $(STAMP)
	status=0; \
	for agent in $(LEADERBOARD_AGENTS); do \
	  $(VENV)/bin/metabench evaluate $$agent $(addprefix --env ,$(LEADERBOARD_ENVS)) --tier ci \
	    --seeds $(LEADERBOARD_SEEDS) --out $(LEADERBOARD_DIR)/records --quiet $(LEADERBOARD_FLAGS) || status=1; \
	done; \
	$(VENV)/bin/metabench leaderboard $(LEADERBOARD_DIR)/records -o $(LEADERBOARD_DIR) && exit $$status

# CI: the committed tables are exactly what the committed records give, every record was made by the
# agent code now committed (its file and the modules it imports: `provenance`), and a fresh run of one
# seed of each agent scores inside the committed runs' single-run 95% band (metabench/leaderboard.py: verify).
leaderboard-check: $(STAMP)
	$(VENV)/bin/metabench leaderboard $(LEADERBOARD_DIR)/records -o $(LEADERBOARD_DIR) --check
	$(PY) -m metabench.leaderboard provenance $(LEADERBOARD_DIR)/records
	tmp="$(LEADERBOARD_RERUN_DIR)"; if [ -z "$$tmp" ]; then tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; fi; \
	for agent in $(LEADERBOARD_AGENTS); do \
	  $(VENV)/bin/metabench evaluate $$agent $(addprefix --env ,$(LEADERBOARD_CHECK_ENVS)) --tier ci \
	    --seeds $(LEADERBOARD_CHECK_SEED) --out "$$tmp" --quiet --force; \
	done; \
	$(PY) -m metabench.leaderboard verify $(LEADERBOARD_DIR)/records "$$tmp"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks
