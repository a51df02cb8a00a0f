"""Training Tacotron 2: text -> mel with teacher forcing, one visible loop (`train_tacotron2`), and its
validation (`validate_tacotron2`): teacher-forced loss and attention measures, one free-running decode."""
from __future__ import annotations

import dataclasses
import logging
import math
import os
from pathlib import Path
from typing import Any, Sequence, cast

import numpy as np
import torch
from torch import Tensor

from ..audio import griffin_lim, save_wav
from ..data import Clip, PreparedData, TextMelBatch, collate_text_mel
from ..plots import save_alignment_plot, save_gate_plot, save_mel_plot
from ..tacotron2 import Tacotron2, Tacotron2Config
from ..text import text_to_sequence
from ..text.lexicon import to_arpabet
from ..text.symbols import with_leading_pause
from . import run as loop  # the run machinery the loops share
from .alignment import Segment, attention_bands, band_prior
from .checkpoints import checkpoint_if_due, latest_checkpoint, save_checkpoint, start_training
from .config import TrainConfig, guided_attention_weight_at, learning_rate_at
from .losses import Tacotron2Loss, attention_scores
from .run import TrainingError

__all__ = ["train_tacotron2", "validate_tacotron2", "tacotron2_loss", "free_running_steps", "forcing_loss"]

log = logging.getLogger(__name__)


def tacotron2_loss(outputs: Sequence[Tensor], batch: TextMelBatch, cfg: TrainConfig,
                   step: int) -> dict[str, Tensor]:
    """The run's :class:`~tacoglow.train.losses.Tacotron2Loss` of a batch at ``step`` (where the guided-attention
    weight stands in its schedule): the total ("loss") and each term."""
    criterion = Tacotron2Loss(cfg.masked_loss, cfg.gate_pos_weight, cfg.guided_attention_sigma)
    weight, prior = guided_attention_weight_at(cfg, step), None
    if batch.attention_bands is not None and weight > 0:  # phone timings: each step's target, the diagonal if NaN
        prior = band_prior(batch.attention_bands, batch.text.size(1), cfg.attention_timings_sigma)
    return criterion(outputs, batch.mels, batch.gate, batch.mel_lengths, batch.text_lengths, weight, prior)


def _tacotron2_config(cfg: TrainConfig, data: PreparedData) -> Tacotron2Config:
    fields = dict(cfg.model_config)
    n_mel = fields.setdefault("n_mel_channels", data.audio.n_mel_channels)
    if n_mel != data.audio.n_mel_channels:
        raise TrainingError(f"the model predicts {n_mel} mel channels but the data has "
                            f"{data.audio.n_mel_channels}")
    model_config = Tacotron2Config.from_dict(fields)
    top = max(max(c.ids) for c in data.train + data.val if c.ids)
    if top >= model_config.n_symbols:
        raise TrainingError(f"the data uses symbol id {top} but the model has n_symbols={model_config.n_symbols}")
    return model_config


def read_clips(data: PreparedData, clips: Sequence[Clip], p: float, rng: np.random.Generator | None,
               leading_pause: bool = False) -> list[Clip]:
    """The clips with their ids made again from their text, lexicon words as ARPAbet with probability p (0: the
    dataset's ids), read after a leading pause when ``leading_pause`` (``with_leading_pause``)."""
    cleaners = data.text.get("cleaners") or ["english_cleaners"]
    read = []
    for clip in clips:
        ids = clip.ids
        if p > 0.0:
            if not clip.text.strip():
                raise TrainingError(f"{data.dir}: clip {clip.id} has no text; p_arpabet needs each clip's text "
                                    "(prepare the data again with this tacoglow)")
            ids = text_to_sequence(to_arpabet(clip.text, p, rng, cleaners), cleaners)
        read.append(dataclasses.replace(clip, ids=with_leading_pause(ids) if leading_pause else ids))
    return read


def _tacotron2_batch(data: PreparedData, clips: Sequence[Clip], r: int, p_arpabet: float = 0.0,
                     rng: np.random.Generator | None = None, leading_pause: bool = False,
                     timings: dict[str, list[Segment]] | None = None) -> TextMelBatch:
    """A batch of ``clips`` read as training reads them; with ``timings`` (by clip id), each clip's attention
    targets for the reading it got."""
    read = read_clips(data, clips, p_arpabet, rng, leading_pause)
    mels = [data.load_mel(c) for c in clips]
    bands = None
    if timings:
        seconds_per_frame = data.audio.hop_length / data.audio.sampling_rate
        bands = [attention_bands(c.ids, timings.get(c.id, []), m.size(1), r, seconds_per_frame)
                 for c, m in zip(read, mels)]
    return collate_text_mel(read, mels, r, bands)


def own_predictions_mixed_in(model: torch.nn.Module, batch: TextMelBatch, r: int, share: float,
                             rng: np.random.Generator, run: loop.Run, cfg: TrainConfig) -> Tensor:
    """Parallel scheduled sampling: the batch's mels (B, n_mel, T) with each group of r frames replaced, with
    probability ``share``, by the model's own teacher-forced prediction of it (decoder output before the postnet,
    from a first pass without gradients). The decoder reads group k as its input to step k + 1, so a replaced
    group shows it what it made itself, as at synthesis; the loss still compares with the recorded frames. The
    first pass runs in training mode: its BatchNorm layers see the batch too (their running statistics move twice
    per step)."""
    with torch.no_grad(), loop.autocast(run, cfg):
        predicted = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths)[0].float()
    b, n_mel, t = batch.mels.shape
    replace = torch.from_numpy(rng.random((b, 1, t // r)) < share).to(batch.mels.device)
    replace = replace.repeat_interleave(r, dim=2)  # (B, 1, T): whole groups
    return torch.where(replace, predicted[:, :, :t], batch.mels)


def free_running_steps(batch: TextMelBatch, share: float, rng: np.random.Generator) -> Tensor:
    """(B, T / r) bool, one per stop target: the decoder steps of ``batch`` that read the decoder's own previous
    output, each with probability ``share`` (step 0 reads the go frame whatever is drawn)."""
    return torch.from_numpy(rng.random(tuple(batch.gate.shape)) < share)


def _with_own_inputs(model: torch.nn.Module, batch: TextMelBatch, teacher: Sequence[Tensor],
                     losses: dict[str, Tensor], feedback: Tensor, cfg: TrainConfig, step: int,
                     run: loop.Run) -> dict[str, Tensor]:
    """The teacher-forced pass's ``losses`` plus those of a second pass whose ``feedback`` steps (B, T / r) read
    the decoder's own previous output, its attention forced to the first pass's alignment when
    ``attention_forcing``: "loss" is the sum of both; the second pass's terms are logged as "own_*"."""
    forced = teacher[3].detach().float() if cfg.attention_forcing > 0 else None
    with loop.autocast(run, cfg):
        outputs = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths, feedback, forced)
    own = tacotron2_loss(outputs, batch, cfg, step)
    total = losses["loss"] + own["loss"]
    losses = {**losses, **{f"own_{k}": v for k, v in own.items()}}
    if forced is not None:
        losses["forcing_loss"] = forcing_loss(outputs[3], forced, batch)
        total = total + cfg.attention_forcing * losses["forcing_loss"]
    losses["loss"] = total
    return losses


def forcing_loss(own: Tensor, forced: Tensor, batch: TextMelBatch) -> Tensor:
    """Cross-entropy of the attention's own weights (B, T / r, T_in) against the forced ones, per valid step."""
    steps = torch.arange(own.size(1), device=own.device)[None, :] < batch.step_lengths.to(own.device)[:, None]
    ce = -(forced * torch.log(own.float().clamp(min=1e-8))).sum(2)  # (B, T / r)
    return (ce * steps).sum() / steps.sum().clamp(min=1)


def _phone_timings(data: PreparedData, cfg: TrainConfig) -> dict[str, list[Segment]] | None:
    """The dataset's phone timings when the run guides attention with them, None otherwise."""
    if not cfg.attention_timings:
        return None
    timings = data.phone_timings()
    if not timings:
        raise TrainingError(f"{data.dir}: attention_timings is set but the dataset has no phone_timings.jsonl; "
                            "prepare a corpus that has one (recipes/slt/build.sh writes it) or set "
                            "attention_timings to false")
    missing = sum(c.id not in timings for c in data.train)
    if missing:
        log.warning("%d of %d training clips have no phone timing; they keep the diagonal prior", missing,
                    len(data.train))
    return timings


@torch.no_grad()
def validate_tacotron2(model: Tacotron2, data: PreparedData, clips: Sequence[Clip], cfg: TrainConfig, step: int,
                       device: torch.device, plots: Path | None = None, media: dict[str, Any] | None = None,
                       timings: dict[str, list[Segment]] | None = None) -> dict[str, float]:
    """Teacher-forced loss and attention measures on ``clips`` (eval mode), then one free-running decode
    of the first clip; with ``plots``, its alignments, mels and stop token go to PNG files and the decoded
    mel (through Griffin-Lim) to a WAV, and ``media`` receives the figures and audio for TensorBoard; with
    ``timings`` (the run's phone timings), the attention term scores against them as training does. Uses
    its own random streams, so training's are untouched."""
    media = {} if media is None else media
    was_training = model.training
    model.eval()
    r = model.config.n_frames_per_step
    totals: dict[str, float] = {}
    focus, diagonality = [], []
    first: tuple[TextMelBatch, list[Tensor]] | None = None
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        for start in range(0, len(clips), cfg.batch_size):
            # Read as synthesis reads: every lexicon word as phones when the model learns them.
            batch = _tacotron2_batch(data, clips[start:start + cfg.batch_size], r,
                                     1.0 if cfg.p_arpabet > 0 else 0.0, leading_pause=cfg.leading_pause,
                                     timings=timings).to(device)
            outputs = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths)
            for k, v in tacotron2_loss(outputs, batch, cfg, step).items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(batch.ids)
            f, d = attention_scores(outputs[3], batch.text_lengths, batch.step_lengths, cfg.guided_attention_sigma)
            focus += f.tolist()
            diagonality += d.tolist()
            if first is None:
                first = (batch, [x[0] for x in outputs])
        # Free running: does the model align and stop on its own?
        assert first is not None, "validation needs at least one clip"
        batch, (mel, mel_postnet, gate, alignment) = first
        n_text, n_frames = int(batch.text_lengths[0]), int(batch.mel_lengths[0])
        cap = math.ceil(2 * n_frames / r) + 10
        out = model.infer_detailed(batch.text[:1, :n_text], batch.text_lengths[:1],
                                   [torch.Generator(device=device).manual_seed(cfg.seed)], max_decoder_steps=cap)
        steps = math.ceil(int(out.mel_lengths[0]) / r) + int(out.gate_stopped[0])
        inf_focus, inf_diagonality = attention_scores(out.alignments[:, :steps], batch.text_lengths[:1],
                                                      torch.tensor([max(steps, 1)], device=device))
    model.train(was_training)
    n = len(clips)
    metrics = {k: v / n for k, v in totals.items()}
    metrics.update(attention_focus=float(np.mean(focus)), diagonality=float(np.mean(diagonality)),
                   infer_frames_ratio=int(out.mel_lengths[0]) / n_frames, infer_stopped=bool(out.gate_stopped[0]),
                   infer_focus=float(inf_focus[0]), infer_diagonality=float(inf_diagonality[0]))
    if plots is not None:
        name = f"step_{step:07d}"
        s = int(batch.step_lengths[0])
        figures = {
            "alignment": save_alignment_plot(plots / f"{name}_alignment.png", alignment[:s, :n_text],
                                             f"{batch.ids[0]}, step {step}: teacher forced, focus {focus[0]:.2f}"),
            "mel": save_mel_plot(plots / f"{name}_mel.png", mel_postnet[:, :n_frames], batch.mels[0, :, :n_frames],
                                 f"{batch.ids[0]}, step {step}"),
            "gate": save_gate_plot(plots / f"{name}_gate.png", torch.sigmoid(gate[:s]), batch.gate[0, :s],
                                   f"{batch.ids[0]}, step {step}: stop token, teacher forced"),
            "inference": save_alignment_plot(plots / f"{name}_inference.png", out.alignments[0, :steps, :n_text],
                                             f"{batch.ids[0]}, step {step}: free running, "
                                             f"{'stopped' if out.gate_stopped[0] else 'did not stop'} at "
                                             f"{int(out.mel_lengths[0])} of {n_frames} frames"),
        }
        # What the free-running mel sounds like through Griffin-Lim (no vocoder needed to listen).
        audio = griffin_lim(out.mel_postnet[:1, :, :int(out.mel_lengths[0])].float().cpu(), data.audio, n_iters=32)[0]
        save_wav(plots / f"{name}_inference.wav", audio, data.audio.sampling_rate)
        media.update(figures={k: v for k, v in figures.items() if v is not None}, audio=audio,
                     sampling_rate=data.audio.sampling_rate)
    return metrics


def train_tacotron2(data_dir: str | os.PathLike, run_dir: str | os.PathLike,
                    config: TrainConfig | str | os.PathLike | None = None, *, max_steps: int | None = None,
                    threads: int | None = None, resume: bool = True, warm_start: str | os.PathLike | None = None,
                    drop_embedding: bool = False, device: str | None = None, amp: str | None = None) -> Path:
    """Train Tacotron 2 on a prepared dataset; returns the path of the last checkpoint.

    Args:
        data_dir: a folder written by ``tacoglow prepare``.
        run_dir: where config, log, checkpoints and plots go; an existing run there is resumed.
        config: a :class:`TrainConfig`, a preset name ("nvidia", "small") or a JSON file. None: the run's
            own config when resuming, else "small".
        max_steps: overrides the config's; the run stops when it has taken this many steps.
        threads: torch CPU threads (default: torch's choice; split between processes under torchrun).
        resume: continue from the run's newest checkpoint (False refuses a folder that has checkpoints).
        warm_start: initialise a new run from any loadable checkpoint (matching tensors only).
        drop_embedding: with ``warm_start``, keep the fresh text embedding (another symbol set).
        device: "cpu", "cuda", "cuda:1", ...; default CUDA when available.
        amp: overrides the config's precision: "none", "fp16" (CUDA) or "bf16".
    """
    run, cfg = loop.open_run(run_dir, config, "tacotron2", max_steps=max_steps, threads=threads, device=device, amp=amp)
    with run:  # leaves the process group it joined, whatever happens
        data = PreparedData(data_dir)
        loop.seed_everything(cfg.seed + run.rank)  # the reference seeds seed + rank
        tacotron2 = Tacotron2(_tacotron2_config(cfg, data)).train()
        r = tacotron2.config.n_frames_per_step
        model, optimizer, scaler, state = start_training(run, tacotron2, cfg, data, resume, warm_start, drop_embedding)

        train_clips = [c for c in data.train if cfg.max_frames is None or c.frames <= cfg.max_frames]
        if len(train_clips) < len(data.train):
            log.info("leaving out %d training clips longer than %d frames", len(data.train) - len(train_clips),
                     cfg.max_frames)
        val_clips = loop.spread_by_length(data.val, cfg.val_items)
        lengths = [c.frames for c in train_clips]
        timings = _phone_timings(data, cfg)

        plan = loop.epoch_plan(lengths, cfg, run)
        run.open_logs(state.step)
        path = latest_checkpoint(run.dir)
        with loop.StopSignals() as stop, loop.progress_bar(run, cfg, state, len(plan(0)), "tacotron2") as bar:
            for step in loop.steps(cfg, state, plan):
                # Which words are read as phones depends only on (seed, epoch, position, rank), as resumption needs.
                words = np.random.default_rng([cfg.seed, state.epoch, state.batch_in_epoch, run.rank, 1])
                batch = _tacotron2_batch(data, [train_clips[i] for i in step.items], r,
                                         cfg.p_arpabet, words, cfg.leading_pause, timings).to(run.device)
                lr = learning_rate_at(cfg, state.step, state.epoch)
                loop.set_learning_rate(optimizer, lr)

                inputs = batch.mels
                if cfg.scheduled_sampling > 0:
                    mixing = np.random.default_rng([cfg.seed, state.epoch, state.batch_in_epoch, run.rank, 2])
                    inputs = own_predictions_mixed_in(model, batch, r, cfg.scheduled_sampling, mixing, run, cfg)
                feedback = None
                if cfg.free_running > 0:
                    draws = np.random.default_rng([cfg.seed, state.epoch, state.batch_in_epoch, run.rank, 3])
                    feedback = free_running_steps(batch, cfg.free_running, draws)
                with loop.autocast(run, cfg):
                    outputs = model(batch.text, batch.text_lengths, inputs, batch.mel_lengths)
                losses = tacotron2_loss(outputs, batch, cfg, state.step)
                if feedback is not None:
                    losses = _with_own_inputs(model, batch, outputs, losses, feedback, cfg, state.step, run)
                result = loop.backward_and_step(losses, model, optimizer, scaler, cfg.grad_clip, stop.requested,
                                                run.distributed)
                loop.end_step(run, cfg, state, step, result, bar, lr, float(batch.mel_lengths.sum()), "frames")
                if state.step % cfg.val_every == 0 and run.main and val_clips:
                    media: dict[str, Any] = {}
                    metrics = validate_tacotron2(cast(Tacotron2, loop.unwrap(model)), data, val_clips, cfg, state.step,
                                                 run.device, run.plots, media, timings)
                    run.log({"split": "val", "step": state.step, **metrics})
                    run.log_media(state.step, media)
                    log.info("step %d: val loss %.4f, attention focus %.3f, diagonality %.3f", state.step,
                             metrics["loss"], metrics["attention_focus"], metrics["diagonality"])
                path = checkpoint_if_due(run, model, optimizer, scaler, state, cfg, data, result, path)
                if result.stop:
                    break
        # A run that was over before it began has saved nothing: save its start.
        return path if path is not None else save_checkpoint(run, model, optimizer, scaler, state, cfg, data)
