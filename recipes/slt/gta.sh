#!/usr/bin/env bash
# Tacotron 2's teacher-forced (ground-truth-aligned) mels of every clip of $DATA, written into $GTA by
# `tacoglow prepare --gta` from the default voice's Tacotron 2, unless they are there already for the same
# Tacotron 2 file and were written after it (and after the manifest began to record how the labels were read).
# The HiFi-GAN fine-tunes on them (train_hifigan.sh) and the phone verifier learns from them (train_verifier.sh).
#
# Environment: PYTHON (.venv/bin/python), DATA (corpora/slt_prepared), GTA (corpora/slt_gta).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
DATA=${DATA:-corpora/slt_prepared}
GTA=${GTA:-corpora/slt_gta}
VOICE=tacoglow/voices/default

if ! "$PYTHON" - "$GTA" "$VOICE/tacotron2.pt" <<'PY'
import json, sys
from pathlib import Path
manifest = Path(sys.argv[1]) / "gta.json"
info = json.loads(manifest.read_text()) if manifest.is_file() else {}
ok = "reading" in info and Path(info["tacotron2"]) == Path(sys.argv[2]).resolve()
sys.exit(0 if ok and Path(sys.argv[2]).stat().st_mtime < manifest.stat().st_mtime else 1)
PY
then
    "$PYTHON" -m tacoglow prepare --gta "$VOICE/tacotron2.pt" "$DATA" "$GTA"
fi
