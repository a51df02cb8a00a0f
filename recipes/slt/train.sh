#!/usr/bin/env bash
# Continue training the default voice (Tacotron 2: the "small" recipe reading words the lexicon knows as
# ARPAbet 80% of the time, recipes/slt/tacotron2.json) and export it into the package.
#
#   bash recipes/slt/train.sh [MAX_STEPS]          (default 20000 steps in all)
#
# Builds the SLT corpus first when it is missing (recipes/slt/build.sh). An existing run folder is
# resumed (model, optimizer, data order, random state; the learning-rate schedule is the recipe's current
# one); otherwise a new run starts warm from the shipped voice (tacoglow/voices/default/tacotron2.pt) at
# the recipe's learning rate, 2.7e-5, the rate the shipped weights were last trained at. At the end (or
# after Ctrl-C, which saves a checkpoint) the newest checkpoint's model is written to the package in fp16;
# it records the lexicon it reads with, so synthesis gives it ARPAbet too.
# Environment: PYTHON (.venv/bin/python), RUN (runs/slt_t2p8), DATA (corpora/slt_prepared), CONFIG
# (recipes/slt/tacotron2.json), PHRASES and SHORT (the corpus build.sh makes when DATA is missing: 4000
# phrases, 0 short items), THREADS (2),
# AMP (bf16: autocast matrix products to bfloat16, about 1.9x the fp32 step rate on CPUs with AVX-512 BF16;
# "none" trains in fp32), GL_POWER (1.2: the Griffin-Lim magnitude power recorded in the exported voice;
# measured on the 100 validation sentences at step 10,500: WER 30.1% at 1.1, 28.3% at 1.2, 29.7% at 1.25,
# 29.0% at 1.3), GL_INVERSION (0: the clamped pseudo-inverse maps the mel to linear magnitudes; the
# library's 100 non-negative least-squares iterations suit true mels better, but cost this voice's smoother
# predicted mels about half a point of WER, 4 times out of 4 at steps 10,500 to 13,000), DEVICE (cpu, cuda;
# default: cuda when there is one).
set -euo pipefail
cd "$(dirname "$0")/../.."

MAX_STEPS=${1:-20000}
PYTHON=${PYTHON:-.venv/bin/python}
RUN=${RUN:-runs/slt_t2p8}
DATA=${DATA:-corpora/slt_prepared}
THREADS=${THREADS:-2}
AMP=${AMP:-bf16}
GL_POWER=${GL_POWER:-1.2}
GL_INVERSION=${GL_INVERSION:-0}
CONFIG=${CONFIG:-recipes/slt/tacotron2.json}
DEVICE=${DEVICE:-}
PHRASES=${PHRASES:-4000}
VOICE=tacoglow/voices/default

[ -f "$DATA/dataset.json" ] || SHORT=${SHORT:-0} bash recipes/slt/build.sh "$PHRASES" "${DATA%_prepared}"

args=(tacotron2 --data "$DATA" --run "$RUN" --config "$CONFIG" --max-steps "$MAX_STEPS"
      --threads "$THREADS" --amp "$AMP" ${DEVICE:+--device "$DEVICE"})
if ! ls "$RUN"/checkpoints/step_*.pt >/dev/null 2>&1 && [ -f "$VOICE/tacotron2.pt" ]; then
    args+=(--warm-start "$VOICE/tacotron2.pt")
fi
"$PYTHON" -m tacoglow train "${args[@]}" || echo "training stopped (status $?); exporting the newest checkpoint"

"$PYTHON" - "$RUN" "$VOICE/tacotron2.pt" "$GL_POWER" "$GL_INVERSION" <<'PY'
import sys
from pathlib import Path
import torch
from tacoglow.train import export_checkpoint, latest_checkpoint

run, target, power, inversion = sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4])
source = latest_checkpoint(run)
if source is None:
    sys.exit(f"{run}: no checkpoint to export")
# The shipped voice's other settings (e.g. its HiFi-GAN precision) carry over; Griffin-Lim's come from here.
shipped = torch.load(target, weights_only=True).get("synthesis", {}) if Path(target).is_file() else {}
export_checkpoint(source, target, dtype=torch.float16, synthesis={**shipped, "griffin_lim_power": power,
                                                                    "griffin_lim_inversion_iters": inversion})
print(f"exported {source} -> {target}")
PY
