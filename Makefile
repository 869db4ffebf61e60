# pixelbook: the two commands a reader needs are `make book` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: setup browser book test render lint lab results mutation clean

# One virtual environment with the package (editable) and the book and test extras.
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[book,dev]"
	# Colab's widget stack (ipywidgets 7.7.1), for tests/test_colab.py's simulated Colab runtime
	$(PY) -m pip download --quiet --no-deps -d $(VENV)/colab-wheels ipywidgets==7.7.1 \
	    "widgetsnbextension~=3.6.0" "jupyterlab-widgets~=1.1" ipython-genutils==0.2.0
	touch $(STAMP)

setup: $(STAMP) browser

## Headless Chromium for tests/test_browser.py: Debian's chromium and chromium-driver (installed as
## root, as on CI; elsewhere say how). Playwright drives it; no browser is downloaded.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	  else \
	    echo "make browser: no chromium; install Debian's chromium and chromium-driver to run tests/test_browser.py"; \
	  fi; }

## Build the HTML book from the committed notebook outputs (offline, warnings are errors).
book: $(STAMP)
	$(PY) tools/nbtools.py build

## Run the whole test suite: unit tests, doctests, notebooks (nbval at small scale, papermill at smoke), book build.
test: $(STAMP) browser
	$(PY) -m pytest tests pixelbook --doctest-modules -p no:cacheprovider $(PYTEST_ARGS)

## Re-execute notebooks at small scale in place (all, or NB=notebooks/01_pixel_level_prediction.ipynb).
render: $(STAMP)
	$(PY) tools/nbtools.py render $(NB)

## Each chapter's `medium` experiment (all, or NB=notebooks/01_pixel_level_prediction.ipynb): one results file
## per arm and seed under results/<chapter>/ (resumable: up-to-date files are skipped), then the claims and
## the "Results at a glance" page. Long (<= 30 min per chapter on 2 cores): run it in the background.
results: $(STAMP)
	$(PY) -m pixelbook.run $(if $(NB),$(NB),all) --scale medium $(RUN_ARGS)
	$(PY) -m pixelbook.run --page book/results.md

## Mutation testing of the method modules (not in CI; minutes per module): mutmut changes one operator,
## constant or condition at a time and runs the tests covering it; prints killed / survived per module.
## One module: make mutation MUTATE="pixelbook/cas.py tests/test_cas.py tests/test_cas_exact.py".
MUTATION_TARGETS = "pixelbook/cas.py tests/test_cas.py tests/test_cas_exact.py" "pixelbook/rmi.py tests/test_rmi.py" \
	"pixelbook/std/dynamics.py tests/test_std.py" "pixelbook/std/layers.py tests/test_std.py" \
	"pixelbook/std/kernels.py tests/test_std.py" "pixelbook/levelset/neural_ode.py tests/test_levelset.py" \
	"pixelbook/levelset/chan_vese.py tests/test_levelset.py" "pixelbook/levelset/evolution.py tests/test_levelset.py" \
	"pixelbook/levelset/narrow_band.py tests/test_levelset.py" "pixelbook/multitask.py tests/test_multitask.py tests/test_multitask_exact.py" \
	"pixelbook/meanshift.py tests/test_meanshift.py tests/test_meanshift_exact.py" "pixelbook/gating/gumbel.py tests/test_gating.py tests/test_gating_exact.py" \
	"pixelbook/gating/pag.py tests/test_gating.py tests/test_gating_exact.py" \
	"pixelbook/gating/budget.py tests/test_gating.py tests/test_gating_exact.py" \
	"pixelbook/gating/pooling.py tests/test_gating.py tests/test_gating_exact.py" \
	"pixelbook/gating/nets.py tests/test_gating.py tests/test_gating_exact.py" \
	"pixelbook/filterflow/pff.py tests/test_filterflow.py tests/test_filterflow_exact.py" \
	"pixelbook/filterflow/multigrid.py tests/test_mgpff_exact.py tests/test_mgpff.py" \
	"pixelbook/filterflow/restoration.py tests/test_filterflow_restoration.py tests/test_filterflow.py"
mutation: $(STAMP)
	$(VENV)/bin/pip install -q "mutmut>=3.8,<4"
	for t in $(if $(MUTATE),"$(MUTATE)",$(MUTATION_TARGETS)); do $(PY) tools/mutation.py $$t; done

## Notebook lint only (badge, parameters cell, outputs, size, jupytext pairing, and the style notes:
## code over 88 characters, cells over 40 lines, figures wider than the page; all of them fail).
lint: $(STAMP)
	$(PY) tools/nbtools.py lint

## JupyterLab on notebooks/; this environment's python3 kernel comes first on JUPYTER_PATH, so a
## kernel installed elsewhere (e.g. ~/.local/share/jupyter) cannot run the notebooks with another Python.
lab: $(STAMP)
	JUPYTER_PATH="$(abspath $(VENV))/share/jupyter$${JUPYTER_PATH:+:$$JUPYTER_PATH}" $(VENV)/bin/jupyter lab notebooks

clean:
	rm -rf _build
