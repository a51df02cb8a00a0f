"""Ground-truth-aligned mels for fine-tuning a vocoder (`prepare_gta`): Tacotron 2 run with teacher forcing over
every clip of a prepared dataset, so that its mels line up frame by frame with the recorded audio."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from ..checkpoint import build_model, inspect_checkpoint
from ..data import Clip, PreparedData, collate_text_mel
from ..tacotron2 import Tacotron2
from .run import TrainingError
from .tacotron2 import read_clips

__all__ = ["prepare_gta", "GTA_FORMAT", "read_gta_mel"]

log = logging.getLogger(__name__)

GTA_FORMAT = "tacoglow-gta"


@torch.no_grad()
def prepare_gta(tacotron2: str | os.PathLike, data_dir: str | os.PathLike, out_dir: str | os.PathLike | None = None,
                *, batch_size: int = 16, device: str = "cpu", seed: int = 1234, progress: bool = True) -> Path:
    """Write Tacotron 2's teacher-forced (postnet) mel of each clip of ``data_dir`` (train and validation) to
    ``out_dir/<id>.pt`` (default ``data_dir/gta``), each exactly as long as the clip's own mel, and
    ``out_dir/gta.json``; returns ``out_dir``.

    Teacher forcing feeds the recorded frames, so frame k of the result belongs to the same audio samples as
    frame k of the clip's mel (hop_length apart); the decoder's r-frame padding is cut off. Prenet dropout stays
    on, as in every Tacotron 2 pass, drawn from ``seed``: the batch size changes the draws, not the shapes.
    """
    from tqdm import tqdm

    data = PreparedData(data_dir)
    loaded = inspect_checkpoint(tacotron2)
    if loaded.audio != data.audio:
        raise TrainingError(f"{tacotron2}: was trained on other audio settings ({loaded.audio}) than "
                            f"{data.dir} ({data.audio}); its mels would not match the audio")
    model = build_model(loaded, "tacotron2").to(device).eval()
    assert isinstance(model, Tacotron2)
    r = model.config.n_frames_per_step
    out = Path(out_dir) if out_dir is not None else data.dir / "gta"
    out.mkdir(parents=True, exist_ok=True)
    clips = sorted(data.train + data.val, key=lambda c: (-c.frames, c.id))  # similar lengths batched together
    # Read each label as synthesis reads it: every lexicon word as ARPAbet phones for a voice that learned them
    # (text.arpabet; p = 1, as validation reads), after a pause symbol for one trained with it.
    reading = {"arpabet": bool(loaded.text.get("arpabet")), "leading_pause": bool(loaded.text.get("leading_pause"))}
    clips = read_clips(data, clips, 1.0 if reading["arpabet"] else 0.0, None, reading["leading_pause"])
    torch.manual_seed(seed)
    for start in tqdm(range(0, len(clips), batch_size), desc="gta", unit="batch", disable=not progress):
        part = clips[start:start + batch_size]
        batch = collate_text_mel(part, [data.load_mel(c) for c in part], r).to(torch.device(device))
        _, mel_postnet, _, _ = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths)
        for i, clip in enumerate(part):
            torch.save(mel_postnet[i, :, :clip.frames].float().cpu().contiguous(), out / f"{clip.id}.pt")
    manifest = {"format": GTA_FORMAT, "tacotron2": str(Path(tacotron2).resolve()), "step": loaded.step,
                "data": str(data.dir.resolve()), "clips": len(clips), "seed": seed, "reading": reading}
    (out / "gta.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log.info("wrote %d ground-truth-aligned mels to %s", len(clips), out)
    return out


def read_gta_mel(folder: Path, clip: Clip) -> torch.Tensor:
    """The ground-truth-aligned mel of ``clip`` from a `prepare_gta` folder, checked against the clip's length."""
    path = folder / f"{clip.id}.pt"
    if not path.is_file():
        raise TrainingError(f"{path}: missing; run prepare-gta on this dataset (into {folder}) first")
    mel = torch.load(path, map_location="cpu", weights_only=True)
    if mel.dim() != 2 or mel.size(1) != clip.frames:
        raise TrainingError(f"{path}: shape {tuple(mel.shape)}, but clip {clip.id} has {clip.frames} frames; "
                            "prepare-gta was run on another dataset")
    return mel.float()
