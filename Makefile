# The two commands of the README. Both build the virtual environment they need on first use.
#   make run        - the main job: 03_distill headless with papermill, on the built-in offline world
#                     (make notebooks runs every numbered notebook the same way)
#   make test       - the linter, then pytest and nbval for the library and every notebook, on one pytest-xdist
#                     worker per core (what CI runs)
#   make test-fast  - the linter and the library's unit tests, without the slow end-to-end ones (a few minutes; one
#                     process: its many short tests gained nothing from pytest-xdist's workers, measured)
#   make study      - the README's study: UNIC's ablations on the offline world, 5 variants x 3 seeds of 03's
#                     default run (07_studies, headless; a rerun continues it)
#   make sync-notebooks - after editing a notebook's .py or .ipynb outside JupyterLab: update its twin
# (a notebook rerun with the same out_dir resumes or reloads its run; make clean starts everything over)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
READY := $(VENV)/.ready
RUNS ?= runs
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
LINTED := workbench tests notebooks benchmarks tools

.PHONY: setup run notebooks study test test-fast lint sync-notebooks bench clean

setup: $(READY)

$(READY): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

run: $(READY)
	$(MAKE) --no-print-directory notebooks NOTEBOOKS=notebooks/03_distill.ipynb

notebooks: $(READY)
	mkdir -p $(RUNS)
	for nb in $(NOTEBOOKS); do \
	  name=$$(basename $$nb .ipynb); \
	  $(BIN)/papermill --log-output --no-progress-bar $$nb $(RUNS)/$$name.ipynb -p out_dir $(RUNS)/$$name || exit 1; \
	done

study: $(READY)
	mkdir -p $(RUNS)
	$(BIN)/papermill --log-output --no-progress-bar notebooks/07_studies.ipynb $(RUNS)/07_studies.ipynb \
	  -p out_dir $(RUNS)/07_studies -p variants all -p seeds 0,1,2 -p base ""

lint: $(READY)
	$(BIN)/ruff check $(LINTED)

test: lint
	rm -rf notebooks/runs  # nbval runs the notebooks with their default out_dirs: start them fresh, not resumed
	$(BIN)/python -m pytest -n auto --dist loadscope $(NOTEBOOKS) tests --nbval-lax --nbval-current-env --durations=15

test-fast: lint
	$(BIN)/python -m pytest tests -m "not slow" --durations=10

sync-notebooks: $(READY)
	$(BIN)/jupytext --sync notebooks/[0-9][0-9]_*.py

bench: $(READY)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/distill_step.py
	$(BIN)/python benchmarks/augment.py
	$(BIN)/python benchmarks/generate.py
	$(BIN)/python benchmarks/probe.py
	$(BIN)/python benchmarks/task_students.py

clean:
	rm -rf $(RUNS) notebooks/runs .pytest_cache
