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

.PHONY: install demo test test-slow bench lint docs leaderboard leaderboard-check campaign campaign-stop clean

# The CI leaderboard (leaderboards/ci): its units (agents x families x seeds at the ci tier) are listed
# in leaderboards/ci/campaign.toml, the one place they are kept. `make leaderboard` runs the units without
# an ok record made by the current code, two at a time, and re-renders the tables; `make campaign` does
# the same in the background, committing each record with the tables (`make campaign-stop` ends it; a
# rerun resumes). LEADERBOARD_AGENTS below are the agents whose seed-0 rerun CI checks.
# Not CEMRL: its cheapest ci unit (PointNavNonStationary, 200k env steps) takes 15-19 CPU-minutes,
# more than CI's 90 minutes leave beside the others; its records are checked by provenance only.
LEADERBOARD_AGENTS ?= agents/random_agent.py agents/no_context.py agents/explicit_context.py agents/rl2.py \
  agents/maml.py agents/pearl.py agents/meta_sgd.py agents/maesn.py agents/tesp.py agents/iida.py
LEADERBOARD_DIR ?= leaderboards/ci
# CI reruns one seed of every agent on these families and checks it against the committed band.
LEADERBOARD_CHECK_ENVS ?= metabench/PointNav-v0
# An agent whose rerun there is too long for CI's 90 minutes gets its own families,
# LEADERBOARD_CHECK_ENVS_<agent file stem>: PEARL's PointNav unit spends its whole 100k-step budget in
# 5.5 CPU-minutes (1,222 s wall on a loaded 2-core machine); on Bandit it needs fewer env and
# gradient steps (50k and 15k against 100k and 19.4k), and took 89 s against PointNav's 203 s before.
LEADERBOARD_CHECK_ENVS_pearl ?= metabench/Bandit-v0
check_envs = $(or $(LEADERBOARD_CHECK_ENVS_$(basename $(notdir $(1)))),$(LEADERBOARD_CHECK_ENVS))
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

# What metabench is for, in about two minutes on 2 cores: on PointNav (a goal hidden on a half circle)
# MAML adapts to an unseen goal within its 10 exploration episodes, the same kind of learner without
# the task (no_context) cannot, and the oracle that sees the task (explicit_context) bounds both. The
# ci tier (the committed leaderboard's budget), seed 0; two runs at a time. DEMO_FLAGS=--force reruns.
DEMO_ENV := --env metabench/PointNav-v0 --tier ci --seeds 0 --out $(DEMO_DIR)/records --quiet $(DEMO_FLAGS)
demo: $(STAMP)
	@echo "metabench demo: MAML, no_context and the explicit_context oracle meta-train on PointNav's 80"
	@echo "train goals (100,000 env steps each, the ci tier), then each adapts to the 20 unseen test goals"
	@echo "in 10 exploration episodes and is scored on 3 more. About two minutes on 2 cores..."
	@status=0; \
	{ $(VENV)/bin/metabench evaluate agents/maml.py $(DEMO_ENV) && \
	  $(VENV)/bin/metabench evaluate agents/no_context.py $(DEMO_ENV); } & first=$$!; \
	$(VENV)/bin/metabench evaluate agents/explicit_context.py $(DEMO_ENV) || status=1; \
	wait $$first || status=1; exit $$status
	@$(VENV)/bin/metabench leaderboard $(DEMO_DIR)/records -o $(DEMO_DIR) > /dev/null
	@sed -n '/^| agent/,/^$$/p' $(DEMO_DIR)/metabench__PointNav-v0__ci.md
	@echo "score: 0 = random, 1 = the oracle; adaptation gain = final minus zero-shot (first episode) return."
	@echo "Adaptation curves (return per episode of a trial): $(DEMO_DIR)/metabench__PointNav-v0__ci.png"
	@echo "All tables: $(DEMO_DIR)/README.md. The committed ci leaderboard (the reference agents on"
	@echo "Striker, the velocity cheetahs, Meta-World's ML1-reach and the cheap families, 5 seeds):"
	@echo "leaderboards/ci/README.md"

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

# docs/families.md and one picture per family in docs/img, from the code (metabench/docs.py); a test
# fails when families.md is stale. `metabench docs --no-pictures` rewrites the index only.
docs: $(STAMP)
	$(VENV)/bin/metabench docs

CAMPAIGN_FLAGS ?=
leaderboard: $(STAMP)
	status=0; $(VENV)/bin/metabench campaign $(LEADERBOARD_DIR)/campaign.toml --jobs 2 $(CAMPAIGN_FLAGS) || status=1; \
	$(VENV)/bin/metabench leaderboard $(LEADERBOARD_DIR)/records -o $(LEADERBOARD_DIR) && exit $$status

campaign: $(STAMP)
	$(VENV)/bin/metabench campaign $(LEADERBOARD_DIR)/campaign.toml --jobs 2 --commit --background $(CAMPAIGN_FLAGS)

campaign-stop: $(STAMP)
	$(VENV)/bin/metabench campaign $(LEADERBOARD_DIR)/campaign.toml --stop

# CI: the committed tables are exactly what the committed records give, every record was made by the
# agent code now committed (its file and the modules it imports: `provenance`), and a fresh run of one
# seed of each agent scores inside the committed runs' single-run 95% band (metabench/leaderboard.py: verify).
# The reruns are isolated (--isolate: every env in its own process, docs/trust.md).
leaderboard-check: $(STAMP)
	$(VENV)/bin/metabench leaderboard $(LEADERBOARD_DIR)/records -o $(LEADERBOARD_DIR) --check
	$(PY) -m metabench.leaderboard provenance $(LEADERBOARD_DIR)/records
	tmp="$(LEADERBOARD_RERUN_DIR)"; if [ -z "$$tmp" ]; then tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; fi; \
	$(foreach agent,$(LEADERBOARD_AGENTS),$(VENV)/bin/metabench evaluate $(agent) \
	  $(addprefix --env ,$(call check_envs,$(agent))) --tier ci --seeds $(LEADERBOARD_CHECK_SEED) \
	  --out "$$tmp" --quiet --force --isolate;) \
	$(PY) -m metabench.leaderboard verify $(LEADERBOARD_DIR)/records "$$tmp"

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .benchmarks
