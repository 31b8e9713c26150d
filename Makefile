# discarchive: `make demo` runs the main job on the demo archive; `make test` runs the tests.
# Both set everything up first: Debian's xorriso (and, for the tests, the
# independent ISO readers 7z, bsdtar and isoinfo, and systemd-analyze to check
# the service unit) and a virtual environment
# in .venv holding discarchive and its libraries.

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
DEMO   ?= build/demo
DEB_DEMO = xorriso
DEB_TEST = xorriso p7zip-full libarchive-tools genisoimage systemd

.PHONY: demo test deps-demo deps-test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

deps-demo:
	@bash tools/debian-deps.sh $(DEB_DEMO)

deps-test:
	@bash tools/debian-deps.sh $(DEB_TEST)

demo: deps-demo venv
	rm -rf $(DEMO)
	$(PY) demo/make_archive.py $(DEMO)/archive
	$(VENV)/bin/discarchive init --home $(DEMO)/home --file-drives
	$(VENV)/bin/discarchive archive --home $(DEMO)/home $(DEMO)/archive --media dvd-r --copies 2
	$(VENV)/bin/discarchive discs --home $(DEMO)/home

test: deps-test venv
	$(PY) -m pytest -q

# Benchmarks (docs/BENCHMARKS.md); the corpora are made once in build/bench.
BENCH_GIB ?= 4
.PHONY: bench
bench: deps-demo venv
	$(PY) -m bench.run --gib $(BENCH_GIB)

clean:
	rm -rf build $(VENV)
