"""Training the phone verifier (`tacoglow.verifier`): CTC over the corpus's mels, one visible loop
(`train_verifier`), and its validation (`validate_verifier`): the phone error rate of greedy decoding.

Targets are each clip's text read as the voice reads it (every lexicon word as ARPAbet), as phone classes.
The inputs are the clips' recorded mels and, with ``input_mels``, also the ground-truth-aligned mels of the
voice's Tacotron 2 (`prepare_gta`): the verifier is to judge predicted mels, which are smoother than recorded
ones, so it learns both.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import Tensor

from ..data import Clip, PreparedData
from ..text import text_to_sequence
from ..text.lexicon import to_arpabet
from ..verifier import PhoneVerifier, VerifierConfig, ctc_loss_per_phone, phone_classes
from . import run as loop  # the run machinery the loops share
from .checkpoints import checkpoint_if_due, latest_checkpoint, save_checkpoint, start_training
from .config import TrainConfig, learning_rate_at
from .gta import read_gta_mel
from .run import TrainingError

__all__ = ["train_verifier", "validate_verifier", "clip_targets", "edit_distance"]

log = logging.getLogger(__name__)

NORMALIZATION_CLIPS = 256  # training clips whose mels set the input normalization of a fresh verifier
# The least spread a channel is scaled by (log-mel units; speech spreads by 1-2): a channel that hardly moves in
# the corpus must not magnify what a predicted mel puts there.
MIN_STD = 0.1


def clip_targets(data: PreparedData, clip: Clip) -> list[int]:
    """The phone classes of a clip's text, every lexicon word read as ARPAbet (as a voice trained with
    p_arpabet reads at synthesis)."""
    if not clip.text.strip():
        raise TrainingError(f"{data.dir}: clip {clip.id} has no text; the verifier needs each clip's text "
                            "(prepare the data again with this tacoglow)")
    cleaners = data.text.get("cleaners") or ["english_cleaners"]
    return phone_classes(text_to_sequence(to_arpabet(clip.text, cleaners=cleaners), cleaners))


def edit_distance(a: Sequence[int], b: Sequence[int]) -> int:
    """Levenshtein distance between two symbol sequences."""
    row = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        diagonal, row[0] = row[0], i
        for j in range(1, len(b) + 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1]))
    return row[len(b)]


def _greedy(log_probs: Tensor) -> list[int]:
    """Best path of (T', C) log-probabilities, repeats merged and blanks dropped."""
    out, previous = [], 0
    for c in log_probs.argmax(-1).tolist():
        if c != previous and c != 0:
            out.append(c)
        previous = c
    return out


@torch.no_grad()
def validate_verifier(model: PhoneVerifier, mels: Sequence[Tensor], targets: Sequence[list[int]],
                      device: torch.device) -> dict[str, float]:
    """Phone error rate of greedy decoding and mean CTC loss per phone over validation mels (eval mode)."""
    was_training = model.training
    model.eval()
    errors = total = 0
    loss = 0.0
    for mel, target in zip(mels, targets):
        mel = mel.to(device)
        log_probs, lengths = model(mel[None], torch.tensor([mel.shape[-1]], device=device))
        errors += edit_distance(_greedy(log_probs[0, :int(lengths[0])]), target)
        total += len(target)
        loss += float(ctc_loss_per_phone(model, [mel], [target])[0])
    model.train(was_training)
    return {"per": errors / max(total, 1), "ctc": loss / max(len(mels), 1)}


def _sources(data: PreparedData, cfg: TrainConfig) -> list[Callable[[Clip], Tensor]]:
    """Where each clip's training mels come from: the dataset's, and the ground-truth-aligned folder's."""
    if cfg.input_mels is None:
        return [data.load_mel]
    folder = Path(cfg.input_mels)
    return [data.load_mel, lambda clip: read_gta_mel(folder, clip)]


def train_verifier(data_dir: str | os.PathLike, run_dir: str | os.PathLike,
                   config: TrainConfig | str | os.PathLike | None = None, *, max_steps: int | None = None,
                   threads: int | None = None, resume: bool = True, warm_start: str | os.PathLike | None = None,
                   drop_embedding: bool = False, device: str | None = None, amp: str | None = None,
                   input_mels: str | os.PathLike | None = None) -> Path:
    """Train a phone verifier on a prepared corpus; returns the last checkpoint.

    Arguments as :func:`train_tacotron2` (``drop_embedding`` has no meaning here). ``input_mels``: a
    `prepare_gta` folder of the voice's Tacotron 2, whose mels are trained on beside the recorded ones (each
    clip appears once with each). Every mel stays in memory (about 0.1 GB per hour of speech and source).
    """
    run, cfg = loop.open_run(run_dir, config, "verifier", max_steps=max_steps, threads=threads, device=device,
                             amp=amp, input_mels=None if input_mels is None else os.path.abspath(input_mels))
    with run:
        data = PreparedData(data_dir)
        loop.seed_everything(cfg.seed + run.rank)
        fields = dict(cfg.model_config)
        if fields.setdefault("n_mel_channels", data.audio.n_mel_channels) != data.audio.n_mel_channels:
            raise TrainingError(f"the verifier takes {fields['n_mel_channels']} mel channels but the data has "
                                f"{data.audio.n_mel_channels}")
        verifier = PhoneVerifier(VerifierConfig.from_dict(fields)).train()
        sources = _sources(data, cfg)
        labelled = [(c, t) for c in data.train if (t := clip_targets(data, c))]  # clips with a phone to learn
        mels = [read(c) for read in sources for c, _ in labelled]  # (n_mel, frames) each, source by source
        targets = [t for _, t in labelled] * len(sources)
        fresh = latest_checkpoint(run.dir) is None or not resume
        if fresh and warm_start is None:  # the input normalization, from the recorded mels
            sample = torch.cat(mels[:NORMALIZATION_CLIPS], dim=1)
            verifier.mel_mean.copy_(sample.mean(1, keepdim=True))
            verifier.mel_std.copy_(sample.std(1, keepdim=True).clamp(min=MIN_STD))
        model, optimizer, scaler, state = start_training(run, verifier, cfg, data, resume, warm_start, False)
        val_clips = loop.spread_by_length(data.val, cfg.val_items)
        val_mels = [data.load_mel(c) for c in val_clips]
        val_targets = [clip_targets(data, c) for c in val_clips]

        def validate() -> None:
            metrics = validate_verifier(verifier, val_mels, val_targets, run.device)
            run.log({"split": "val", "step": state.step, **metrics})
            log.info("step %d: val phone error rate %.3f, CTC loss per phone %.3f", state.step, metrics["per"],
                     metrics["ctc"])

        plan = loop.epoch_plan([m.shape[-1] for m in mels], cfg, run)
        run.open_logs(state.step)
        path = latest_checkpoint(run.dir)
        with loop.StopSignals() as stop, loop.progress_bar(run, cfg, state, len(plan(0)), "verifier") as bar:
            for step in loop.steps(cfg, state, plan):
                lr = learning_rate_at(cfg, state.step, state.epoch)
                loop.set_learning_rate(optimizer, lr)
                batch = [mels[i].to(run.device) for i in step.items]
                with loop.autocast(run, cfg):
                    loss = ctc_loss_per_phone(model, batch, [targets[i] for i in step.items]).mean()
                result = loop.backward_and_step({"loss": loss}, model, optimizer, scaler, cfg.grad_clip,
                                                stop.requested, run.distributed)
                loop.end_step(run, cfg, state, step, result, bar, lr, float(sum(m.shape[-1] for m in batch)),
                              "frames")
                if state.step % cfg.val_every == 0 and run.main and val_clips:
                    validate()
                path = checkpoint_if_due(run, model, optimizer, scaler, state, cfg, data, result, path)
                if result.stop:
                    break
        # A run that was over before it began has saved nothing: save its start.
        return path if path is not None else save_checkpoint(run, model, optimizer, scaler, state, cfg, data)
