# hcsfs developer commands. `make test` and `make demo` do all set-up on a fresh machine.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# System packages come first, before any pip: hcsfs/sysdeps.py holds the one list (.ci/run and
# `hcsfs doctor` read it too). As root on Debian/Ubuntu it installs what is missing; otherwise it prints
# one line with the exact command, and stops if FUSE or the build tools are missing.
SYSDEPS = python3 hcsfs/sysdeps.py --install --python $(PYTHON)

.PHONY: install test demo bench clean lint docs test-clients fuzz sysdeps-build sysdeps-test gpu-check

sysdeps-build:
	@$(SYSDEPS) build

# The build packages and the client programs the tests drive (missing clients are an error in CI only).
sysdeps-test:
	@$(SYSDEPS) build clients

install: sysdeps-build $(STAMP)

# requirements/no-deps.txt goes in last and without dependencies: pyclesperanto-prototype declares
# numpy<2 but runs on numpy 2 (that file says why).
$(STAMP): pyproject.toml requirements/frameworks.txt requirements/no-deps.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip
	$(PY) -m pip install -q -e '.[test,zarr,dev,s3,s3-test,distributed,parquet,models,napari,illumination]' -r requirements/frameworks.txt
	$(PY) -m pip install -q --no-deps -r requirements/no-deps.txt
	touch $(STAMP)

test: sysdeps-test install
	$(PY) -m pytest $(PYTEST_ARGS)

# The torture suite with long fuzz runs (10,000 spec documents, 50,000 names, ...) and 10x the reads.
fuzz: install
	HYPOTHESIS_PROFILE=fuzz $(PY) -m pytest tests/torture tests/test_naming.py tests/test_tiff.py $(PYTEST_ARGS)

# Only the tests that drive real client programs (ImageJ, CellProfiler, libtiff, ImageMagick, GDAL).
test-clients: sysdeps-test install
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

# The CUDA paths checked and measured on one GPU, under 4 minutes, into docs/gpu.md + docs/gpu.json
# (benchmarks/gpu_check.py; without a CUDA device: a CPU dry run into bench-out/gpu-check/). No install
# step: the GPU machine has no network (scripts/gpu_device_run.sh brings the wheels it lacks).
GPU_PY = $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) -m benchmarks.gpu_check $(GPU_CHECK_ARGS)

lint: install
	$(VENV)/bin/ruff check hcsfs tests benchmarks
	$(VENV)/bin/mypy hcsfs

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
