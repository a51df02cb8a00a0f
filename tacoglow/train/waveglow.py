"""Training WaveGlow: mel -> audio on random segments, one visible loop (`train_waveglow`), and its validation
(`validate_waveglow`): the negative log-likelihood of fixed segments."""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence, cast

import numpy as np
import torch

from ..data import Clip, PreparedData, collate_audio_mel
from ..waveglow import WaveGlow, WaveGlowConfig, WaveGlowLoss
from . import run as loop  # the run machinery the loops share
from .checkpoints import checkpoint_if_due, latest_checkpoint, save_checkpoint, start_training
from .config import TrainConfig, learning_rate_at
from .run import TrainingError

__all__ = ["train_waveglow", "validate_waveglow"]

log = logging.getLogger(__name__)


def _waveglow_config(cfg: TrainConfig, data: PreparedData) -> WaveGlowConfig:
    fields = dict(cfg.model_config)
    n_mel = fields.setdefault("n_mel_channels", data.audio.n_mel_channels)
    if n_mel != data.audio.n_mel_channels:
        raise TrainingError(f"the model takes {n_mel} mel channels but the data has {data.audio.n_mel_channels}")
    if data.audio.hop_length != 256:
        raise TrainingError(f"WaveGlow's upsampler needs hop_length 256; the data has {data.audio.hop_length}")
    return WaveGlowConfig.from_dict(fields)


def _segment_starts(clips: Sequence[Clip], segment_length: int, rng: np.random.Generator) -> list[int]:
    """A random start per clip (0 for clips shorter than a segment: they are zero-padded)."""
    return [int(rng.integers(0, max(c.samples - segment_length, 0) + 1)) for c in clips]


@torch.no_grad()
def validate_waveglow(model: WaveGlow, data: PreparedData, clips: Sequence[Clip], cfg: TrainConfig,
                      device: torch.device) -> dict[str, float]:
    """Mean negative log-likelihood on one fixed segment per validation clip."""
    was_training = model.training
    model.eval()
    criterion = WaveGlowLoss(cfg.waveglow_sigma)
    starts = _segment_starts(clips, cfg.segment_length, np.random.default_rng([cfg.seed, 2 ** 31]))
    total = 0.0
    for k in range(0, len(clips), cfg.batch_size):
        batch = collate_audio_mel(data, clips[k:k + cfg.batch_size], starts[k:k + cfg.batch_size],
                                  cfg.segment_length).to(device)
        total += float(criterion(model(batch.mels, batch.audio))) * len(batch.ids)
    model.train(was_training)
    return {"loss": total / len(clips)}


def train_waveglow(data_dir: str | os.PathLike, run_dir: str | os.PathLike,
                   config: TrainConfig | str | os.PathLike | None = None, *, max_steps: int | None = None,
                   threads: int | None = None, resume: bool = True, warm_start: str | os.PathLike | None = None,
                   drop_embedding: bool = False, device: str | None = None, amp: str | None = None) -> Path:
    """Train WaveGlow on random audio segments of a prepared dataset; returns the last checkpoint's path.

    Arguments as :func:`train_tacotron2` (``drop_embedding`` has no meaning here). Each step reads
    ``batch_size`` segments of ``segment_length`` samples at random offsets (zero-padded when a clip is
    shorter) and computes their mels, as the reference does.
    """
    run, cfg = loop.open_run(run_dir, config, "waveglow", max_steps=max_steps, threads=threads, device=device, amp=amp)
    with run:
        data = PreparedData(data_dir)
        loop.seed_everything(cfg.seed + run.rank)
        waveglow = WaveGlow(_waveglow_config(cfg, data)).train()
        model, optimizer, scaler, state = start_training(run, waveglow, cfg, data, resume, warm_start,
                                                         drop_embedding=False)
        criterion = WaveGlowLoss(cfg.waveglow_sigma)
        train_clips, val_clips = data.train, loop.spread_by_length(data.val, cfg.val_items)
        lengths = [0] * len(train_clips)  # segments all have the same length: plain shuffling

        plan = loop.epoch_plan(lengths, cfg, run)
        run.open_logs(state.step)
        path = latest_checkpoint(run.dir)
        with loop.StopSignals() as stop, loop.progress_bar(run, cfg, state, len(plan(0)), "waveglow") as bar:
            for step in loop.steps(cfg, state, plan):
                clips = [train_clips[i] for i in step.items]
                # Segment offsets depend only on (seed, epoch, position, rank): a resumed run reads the same ones.
                rng = np.random.default_rng([cfg.seed, state.epoch, state.batch_in_epoch, run.rank])
                batch = collate_audio_mel(data, clips, _segment_starts(clips, cfg.segment_length, rng),
                                          cfg.segment_length).to(run.device)
                lr = learning_rate_at(cfg, state.step, state.epoch)
                loop.set_learning_rate(optimizer, lr)

                with loop.autocast(run, cfg):
                    z, log_s, log_det_w = model(batch.mels, batch.audio)
                output = (z.float(), [x.float() for x in log_s], [x.float() for x in log_det_w])
                losses = {"loss": criterion(output)}
                result = loop.backward_and_step(losses, model, optimizer, scaler, cfg.grad_clip, stop.requested,
                                                run.distributed)
                loop.end_step(run, cfg, state, step, result, bar, lr, float(batch.audio.numel()), "samples")
                if state.step % cfg.val_every == 0 and run.main and val_clips:
                    metrics = validate_waveglow(cast(WaveGlow, loop.unwrap(model)), data, val_clips, cfg, run.device)
                    run.log({"split": "val", "step": state.step, **metrics})
                    log.info("step %d: val loss %.4f", state.step, metrics["loss"])
                path = checkpoint_if_due(run, model, optimizer, scaler, state, cfg, data, result, path)
                if result.stop:
                    break
        # A run that was over before it began has saved nothing: save its start.
        return path if path is not None else save_checkpoint(run, model, optimizer, scaler, state, cfg, data)
