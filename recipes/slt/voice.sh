#!/usr/bin/env bash
# The default voice in one command: rebuild the corpus, continue Tacotron 2 from the shipped weights, then
# fine-tune the HiFi-GAN on the new Tacotron 2's ground-truth-aligned mels and train the phone verifier on them;
# all three are exported into tacoglow/voices/default (fp16), ready for `make demo` and
# benchmarks/intelligibility.py.
#
#   bash recipes/slt/voice.sh [T2_STEPS] [HIFIGAN_STEPS]     (defaults 2000 and 3000 steps in all, per run)
#   GPU=1 bash recipes/slt/voice.sh 20000 50000             (a CUDA machine: the *_gpu.json configs)
#
# Corpus: 4000 LJSpeech phrases, 800 short items of one to four words and 400 single words, read by Festival's SLT voice
# (recipes/slt/build.sh; about 7 minutes on 2 cores; resumed when it exists). The short items teach the model to
# stop after "Hi." or "No.". Runs are resumed when their folders exist, else start warm from the shipped
# weights; to restart from scratch, remove the run folders and the shipped .pt files (HiFi-GAN then starts from
# jik876's UNIVERSAL_V1, see train_hifigan.sh).
# Environment: PYTHON (.venv/bin/python), DATA (corpora/slt_short_prepared), T2_RUN (runs/slt_t2_short),
# HG_RUN (runs/slt_hg), V_RUN (runs/slt_verifier), V_STEPS (2000, the verifier's), THREADS (2), GPU (0).
set -euo pipefail
cd "$(dirname "$0")/../.."

T2_STEPS=${1:-2000}
HG_STEPS=${2:-3000}
V_STEPS=${V_STEPS:-2000}
DATA=${DATA:-corpora/slt_short_prepared}
THREADS=${THREADS:-2}
if [ "${GPU:-0}" = 1 ]; then
    T2_CONFIG=recipes/slt/tacotron2_gpu.json HG_CONFIG=recipes/slt/hifigan_gpu.json AMP=fp16 DEVICE=cuda
else
    T2_CONFIG=recipes/slt/tacotron2_short.json HG_CONFIG=recipes/slt/hifigan.json AMP=none DEVICE=cpu
fi

[ -f "$DATA/dataset.json" ] || SHORT=800 WORDS=400 bash recipes/slt/build.sh 4000 "${DATA%_prepared}"

RUN=${T2_RUN:-runs/slt_t2_short} DATA=$DATA CONFIG=$T2_CONFIG AMP=$AMP THREADS=$THREADS DEVICE=$DEVICE \
    bash recipes/slt/train.sh "$T2_STEPS"
RUN=${HG_RUN:-runs/slt_hg} DATA=$DATA GTA=${DATA%_prepared}_gta CONFIG=$HG_CONFIG THREADS=$THREADS DEVICE=$DEVICE \
    bash recipes/slt/train_hifigan.sh "$HG_STEPS"
RUN=${V_RUN:-runs/slt_verifier} DATA=$DATA GTA=${DATA%_prepared}_gta THREADS=$THREADS DEVICE=$DEVICE \
    bash recipes/slt/train_verifier.sh "$V_STEPS"
echo "the voice in tacoglow/voices/default is new; measure it: python benchmarks/intelligibility.py"
