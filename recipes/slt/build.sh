#!/usr/bin/env bash
# Build a single-speaker training corpus with Festival's CMU ARCTIC SLT HTS voice, then prepare it.
#
#   bash recipes/slt/build.sh [N_PHRASES] [OUT]      (defaults: 4000 corpora/slt)
#
# Writes OUT (LJSpeech layout) and OUT_prepared (tacoglow dataset). Re-running resumes: phrases that
# already have a wav are not synthesized again. Environment: PYTHON (default .venv/bin/python),
# WORKERS (festival processes, default 2), TRAIN_LIST and VAL_LIST (LJSpeech-style 'id|text' transcripts,
# plain or .gz; default: the LJSpeech transcripts in data/), SHORT (short training items of one to four
# words added to the phrases, default 0), WORDS (one-word items, default 0). The corpus that teaches the
# voice to stop after a word or two (recipes/slt/voice.sh builds it):
#
#   SHORT=800 WORDS=400 bash recipes/slt/build.sh 4000 corpora/slt_short
set -euo pipefail
cd "$(dirname "$0")/../.."

N_PHRASES=${1:-4000}
OUT=${2:-corpora/slt}
PYTHON=${PYTHON:-.venv/bin/python}
WORKERS=${WORKERS:-2}
SHORT=${SHORT:-0}
WORDS=${WORDS:-0}
TRAIN_LIST=${TRAIN_LIST:-data/ljspeech_train.txt.gz}
VAL_LIST=${VAL_LIST:-data/ljspeech_val.txt}

if ! command -v text2wave >/dev/null || [ ! -d /usr/share/festival/voices/us/cmu_us_slt_arctic_hts ]; then
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; fi
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y festival festvox-us-slt-hts
fi

start=$(date +%s)
"$PYTHON" recipes/slt/build_corpus.py --phrases "$N_PHRASES" --out "$OUT" --workers "$WORKERS" \
    --short "$SHORT" --words "$WORDS" --train-list "$TRAIN_LIST" --val-list "$VAL_LIST"

"$PYTHON" -m tacoglow prepare "$OUT" "${OUT}_prepared" --val-ids "$OUT/val_ids.txt" --force
echo "built ${OUT}_prepared in $(( $(date +%s) - start )) s"
