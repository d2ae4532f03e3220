# tfadv: `make install`, `make test`, `make demo`, `make bench`,
# `make reproduce-<paper> [PROFILE=paper|demo|smoke] [OUT=dir] [SHARD=i/n] [JOBS=n] [ARGS=...]`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PROFILE ?= paper
OUT ?=
SHARD ?=
JOBS ?=
ARGS ?=
# pytest processes (pytest-xdist); a test file stays in one process, so its module fixtures run once.
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile
PAPERS := minibatch freefast efficient batchsize batchnorm

# Tests run on the CPU whatever the machine has, so a GPU box gives the same answers as CI.
TEST_ENV := CUDA_VISIBLE_DEVICES= TF_CPP_MIN_LOG_LEVEL=2

.PHONY: install test test-slow test-all bench demo $(addprefix reproduce-,$(PAPERS))

install:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .

# pytest exits 5 when no test ran; make passes that on as a failure.
test:
	$(TEST_ENV) $(PY) -m pytest $(XDIST) -m "not slow and not heavy" $(ARGS)

test-slow:
	$(TEST_ENV) $(PY) -m pytest $(XDIST) -m "slow and not heavy" $(ARGS)

test-all:
	$(TEST_ENV) $(PY) -m pytest $(XDIST) $(ARGS)

bench:
	# cleverhans is the anchor tfadv is timed against; its TF2 attacks import only tensorflow and numpy.
	$(PY) -m pip install --quiet --no-deps cleverhans==4.0.0
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m tfadv.benchmarks $(ARGS)

# Offline, on the CPU: every paper's demo profile, one after the other (results/<paper>/demo/).
demo:
	$(foreach paper,$(PAPERS),TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m reproduce.$(paper) --profile demo $(if $(JOBS),--jobs $(JOBS)) $(ARGS) &&) true

$(addprefix reproduce-,$(PAPERS)): reproduce-%:
	TF_CPP_MIN_LOG_LEVEL=2 $(PY) -m reproduce.$* --profile $(PROFILE) \
		$(if $(OUT),--out $(OUT)) $(if $(SHARD),--shard $(SHARD)) $(if $(JOBS),--jobs $(JOBS)) $(ARGS)
