# hcsfs developer commands. `make test` and `make demo` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install test demo bench clean lint docs test-clients fuzz

install: $(STAMP)

$(STAMP): pyproject.toml requirements/frameworks.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[test,zarr,dev,s3,s3-test,distributed,parquet]' -r requirements/frameworks.txt
	touch $(STAMP)

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# The torture suite with long fuzz runs (10,000 spec documents, 50,000 names, ...) and 10x the reads.
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/torture tests/test_naming.py tests/test_tiff.py $(PYTEST_ARGS)

# Only the tests that drive real client programs (ImageJ, CellProfiler, libtiff, ImageMagick, GDAL).
test-clients: install
	$(PY) -m pytest -m clients tests/clients $(PYTEST_ARGS)

# The documentation site, offline and strict (a warning is an error), into site/.
docs: $(VENV)/.docs-installed
	$(VENV)/bin/mkdocs build --strict --site-dir site

$(VENV)/.docs-installed: $(STAMP)
	$(PY) -m pip install -q -e '.[docs]'
	touch $@

demo: install
	$(PY) -m hcsfs.demo

bench: install
	$(PY) -m benchmarks

lint: install
	$(VENV)/bin/ruff check hcsfs tests benchmarks
	$(VENV)/bin/mypy hcsfs

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
