#!/usr/bin/env bash
# Train (or continue) a small WaveGlow on the SLT corpus, as the default voice's candidate vocoder.
# recipes/slt/waveglow.json is the "small" preset with Adam at 3e-4 instead of the reference's 1e-4: a CPU
# run gets thousands of steps, not the reference's hundreds of thousands.
#
#   bash recipes/slt/train_waveglow.sh [MAX_STEPS]      (default 20000 steps in all)
#
# Builds the SLT corpus first when it is missing. An existing run folder is resumed exactly; a new one
# starts from scratch. At the end (or after Ctrl-C, which saves a checkpoint) the newest checkpoint's
# model is written in fp16 to $RUN/waveglow.pt, NOT into the package: the voice ships a WaveGlow only when
# it beats Griffin-Lim on the intelligibility benchmark, so compare first:
#
#   python benchmarks/intelligibility.py --threads 2 --limit 25 --vocoder griffin-lim --out runs/intel_gl
#   python benchmarks/intelligibility.py --threads 2 --limit 25 --waveglow runs/slt_wg/waveglow.pt --out runs/intel_wg
#
# and copy $RUN/waveglow.pt to tacoglow/voices/default/waveglow.pt only if its WER is lower.
# Environment: PYTHON (.venv/bin/python), RUN (runs/slt_wg), DATA (corpora/slt_prepared), THREADS (2),
# AMP (bf16: bfloat16 autocast for the convolutions; "none" trains in fp32), CONFIG (recipes/slt/waveglow.json;
# on a GPU, recipes/slt/waveglow_gpu.json: batch 48 x 16,000 samples at 4e-4, about 0.11 s per step on
# an H200), DEVICE (cpu, cuda; default: cuda when there is one).
set -euo pipefail
cd "$(dirname "$0")/../.."

MAX_STEPS=${1:-20000}
PYTHON=${PYTHON:-.venv/bin/python}
RUN=${RUN:-runs/slt_wg}
DATA=${DATA:-corpora/slt_prepared}
THREADS=${THREADS:-2}
AMP=${AMP:-bf16}
CONFIG=${CONFIG:-recipes/slt/waveglow.json}
DEVICE=${DEVICE:-}

[ -f "$DATA/dataset.json" ] || bash recipes/slt/build.sh 4000 "${DATA%_prepared}"

"$PYTHON" -m tacoglow train waveglow --data "$DATA" --run "$RUN" --config "$CONFIG" \
    --max-steps "$MAX_STEPS" --threads "$THREADS" --amp "$AMP" ${DEVICE:+--device "$DEVICE"} || echo "training stopped (status $?); exporting the newest checkpoint"

"$PYTHON" - "$RUN" <<'PY'
import sys
from pathlib import Path
import torch
from tacoglow.train import export_checkpoint, latest_checkpoint

run = Path(sys.argv[1])
source = latest_checkpoint(run)
if source is None:
    sys.exit(f"{run}: no checkpoint to export")
export_checkpoint(source, run / "waveglow.pt", dtype=torch.float16)
print(f"exported {source} -> {run / 'waveglow.pt'} (compare with benchmarks/intelligibility.py before shipping)")
PY
