#!/usr/bin/env bash
# Train the default voice's phone verifier, which keeps the clearest of several decodings of each sentence
# (SynthesisConfig.candidates), and export it into the package as tacoglow/voices/default/verifier.pt (fp16).
#
#   bash recipes/slt/train_verifier.sh [MAX_STEPS]      (default 2000 steps in all)
#
# It learns the corpus's phones (CTC) from the recorded mels and from the voice's Tacotron 2's teacher-forced
# mels (recipes/slt/gta.sh writes them when they are missing or older than the Tacotron 2), which are as smooth
# as the mels it judges at synthesis. Resumes $RUN when it has checkpoints. About 0.9 s per step on one CPU
# thread (2,000 steps: half an hour).
#
# Environment: PYTHON (.venv/bin/python), RUN (runs/slt_verifier), DATA (corpora/slt_prepared), GTA
# (corpora/slt_gta), THREADS (1), DEVICE (cpu, cuda; default: cuda when there is one), EXPORT (1; 0 leaves the
# package alone).
set -euo pipefail
cd "$(dirname "$0")/../.."

MAX_STEPS=${1:-2000}
PYTHON=${PYTHON:-.venv/bin/python}
RUN=${RUN:-runs/slt_verifier}
DATA=${DATA:-corpora/slt_prepared}
GTA=${GTA:-corpora/slt_gta}
THREADS=${THREADS:-1}
DEVICE=${DEVICE:-}
EXPORT=${EXPORT:-1}

[ -f "$DATA/dataset.json" ] || bash recipes/slt/build.sh 4000 "${DATA%_prepared}"
DATA=$DATA GTA=$GTA PYTHON=$PYTHON bash recipes/slt/gta.sh

"$PYTHON" -m tacoglow train verifier --data "$DATA" --run "$RUN" --input-mels "$GTA" --max-steps "$MAX_STEPS" \
    --threads "$THREADS" ${DEVICE:+--device "$DEVICE"} \
    || echo "training stopped (status $?); exporting the newest checkpoint"

if [ "$EXPORT" = 1 ]; then
    "$PYTHON" -c 'import sys, torch; from tacoglow.train import export_checkpoint, latest_checkpoint
source = latest_checkpoint(sys.argv[1]) or sys.exit(f"{sys.argv[1]}: no checkpoint to export")
export_checkpoint(source, sys.argv[2], dtype=torch.float16); print(f"exported {source} -> {sys.argv[2]}")' \
        "$RUN" tacoglow/voices/default/verifier.pt
fi
