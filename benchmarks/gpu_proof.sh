#!/usr/bin/env bash
# GPU proof: build a corpus of a few hundred rows with the GPU stages (transformers LLM in bf16, Whisper gate), train
# the adapter on it in bf16, and write the figures (hours of speech per GPU-hour per stage, s/step, examples/s,
# target tokens/s, peak GPU memory) to $OUT/gpu_proof_summary.json. The models are the prepared ones' architectures
# with random weights (speed does not depend on weight values); see benchmarks/gpu_proof.py for what runs and why.
#
# Once, in the checkout that the session's `run` calls send (the folder is git-ignored):
#     .venv/bin/python benchmarks/gpu_proof.py prepare      # .gpu_proof/: wheels, model configs, tokenizers (~30 MiB)
# Then, with a GPU lent, the device tool's run (sized for <= 7 minutes on one H200; the timeout leaves room for
# the machine's start within the 15 minutes, and a shrunk rerun):
#     run(command="bash benchmarks/gpu_proof.sh", carry=[".gpu_proof"], timeout_s=480)
# A rerun on a warm machine with less to do (every size is an environment variable, see Sizes in gpu_proof.py):
#     run(command="GPU_PROOF_DOCS=40 GPU_PROOF_STEPS=120 GPU_PROOF_BUDGET_S=200 bash benchmarks/gpu_proof.sh",
#         carry=[".gpu_proof"], timeout_s=300)
# Here, on the CPU, the very same path with tiny models and sizes, in the project's venv (which has every package):
#     GPU_PROOF_WHEELS=0 PYTHON=.venv/bin/python benchmarks/gpu_proof.sh --cpu
# or, as the GPU image would, in a venv without Ray, soundfile, librosa, pydantic, datasets or hibari, which the
# wheels (made for that venv's Python) bring:
#     .venv/bin/python benchmarks/gpu_proof.py prepare --dest /tmp/gpu_proof_cpu --python-version 3.11
#     PYTHON=/tmp/bare-venv/bin/python GPU_PROOF_BUNDLE=/tmp/gpu_proof_cpu benchmarks/gpu_proof.sh --cpu
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
BUNDLE=${GPU_PROOF_BUNDLE:-.gpu_proof}
WORK=${GPU_PROOF_WORK:-/tmp/gpu_proof_work}
OUT=${OUT:-/tmp/gpu_proof_out}
mkdir -p "$OUT" "$WORK"
if [ ! -d "$BUNDLE/models" ]; then
  echo "no $BUNDLE/models: run '$PYTHON benchmarks/gpu_proof.py prepare' first (and carry $BUNDLE)" >&2
  exit 1
fi
{
  date -u +"start %Y-%m-%dT%H:%M:%SZ"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
  if [ "${GPU_PROOF_WHEELS:-1}" = 1 ]; then
    # the carried wheels (what the image lacks), offline, into a folder of their own
    t0=$(date +%s)
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target "$WORK/site" "$BUNDLE"/wheels/*.whl
    echo "wheels installed in $(( $(date +%s) - t0 )) s"
  fi
} 2>&1 | tee "$OUT/gpu_proof.log"
export PYTHONPATH="$WORK/site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export ALIGN_DATA_CACHE="$WORK/cache" NUMBA_CACHE_DIR="$WORK/numba" RAY_AUTH_MODE=disabled
"$PYTHON" benchmarks/gpu_proof.py run --out "$OUT" --work "$WORK" --bundle "$BUNDLE" "$@" 2>&1 | tee -a "$OUT/gpu_proof.log"
