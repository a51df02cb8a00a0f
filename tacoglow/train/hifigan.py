"""Training HiFi-GAN: mel -> audio on random segments against two discriminators, one visible loop
(`train_hifigan`), and its validation (`validate_hifigan`): the mel L1 of whole validation clips.

The generator reads the dataset's mels (NVIDIA's features, what Tacotron 2 predicts and the synthesizer feeds
the vocoder), or, with ``input_mels``, ground-truth-aligned mels from `prepare_gta` (fine-tuning); the mel loss
compares HiFi-GAN's own features of the generated and the recorded audio, full band, as the paper does.
"""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..audio import save_wav
from ..checkpoint import read_checkpoint
from ..data import Clip, PreparedData
from ..hifigan import (
    HiFiGAN,
    HiFiGANConfig,
    HiFiGANDiscriminator,
    HiFiGANMel,
    discriminator_loss,
    feature_matching_loss,
    generator_loss,
)
from ..plots import save_mel_plot
from . import run as loop  # the run machinery the loops share
from .checkpoints import checkpoint_if_due, latest_checkpoint, make_optimizer, save_checkpoint, start_training
from .config import TrainConfig, learning_rate_at
from .gta import read_gta_mel
from .run import StepResult, TrainingError

__all__ = ["train_hifigan", "validate_hifigan", "hifigan_mel_loss"]

log = logging.getLogger(__name__)

MEL_WEIGHT = 45.0  # the paper's lambda_mel
SILENCE = math.log(1e-5)  # the log-mel floor: what a segment past a clip's end is padded with
_JIK876_GENERATOR = re.compile(r"^g_(\d+)$")


def _hifigan_config(cfg: TrainConfig, data: PreparedData) -> HiFiGANConfig:
    fields = dict(cfg.model_config)
    n_mel = fields.setdefault("n_mel_channels", data.audio.n_mel_channels)
    if n_mel != data.audio.n_mel_channels:
        raise TrainingError(f"the model takes {n_mel} mel channels but the data has {data.audio.n_mel_channels}")
    config = HiFiGANConfig.from_dict(fields)
    if config.hop_length != data.audio.hop_length:
        raise TrainingError(f"the generator makes {config.hop_length} samples per frame (its upsample_rates) but "
                            f"the data's hop_length is {data.audio.hop_length}")
    if cfg.segment_length % config.hop_length:
        raise TrainingError(f"segment_length {cfg.segment_length} is not a multiple of hop_length {config.hop_length}")
    return config


def _mel_reader(data: PreparedData, cfg: TrainConfig) -> Callable[[Clip], Tensor]:
    """Where the generator's input mel of a clip comes from: the dataset, or the ground-truth-aligned folder."""
    if cfg.input_mels is None:
        return data.load_mel
    folder = Path(cfg.input_mels)
    return lambda clip: read_gta_mel(folder, clip)


def _segment_starts(clips: Sequence[Clip], frames: int, rng: np.random.Generator) -> list[int]:
    """A random first frame per clip (0 for clips shorter than a segment: they are padded)."""
    return [int(rng.integers(0, max(c.frames - frames, 0) + 1)) for c in clips]


def _segments(data: PreparedData, read_mel: Callable[[Clip], Tensor], clips: Sequence[Clip], starts: Sequence[int],
              frames: int) -> tuple[Tensor, Tensor]:
    """Input mels (B, n_mel, frames) and the audio they stand for (B, frames * hop): frame k of a mel belongs
    to samples k * hop onwards, so both are cut at the same position (jik876's fine-tuning does the same)."""
    hop = data.audio.hop_length
    mels = []
    for clip, start in zip(clips, starts):
        mel = read_mel(clip)[:, start:start + frames]
        mels.append(F.pad(mel, (0, frames - mel.size(1)), value=SILENCE))
    audio = torch.stack([data.load_segment(c, s * hop, frames * hop) for c, s in zip(clips, starts)])
    return torch.stack(mels), audio


def hifigan_mel_loss(mel: HiFiGANMel, generated: Tensor, audio: Tensor) -> Tensor:
    """Mean L1 between HiFi-GAN features of generated (B, 1, T) and recorded (B, T) audio (unweighted)."""
    return F.l1_loss(mel(generated.squeeze(1)), mel(audio))


def _loss_features(data: PreparedData) -> HiFiGANMel:
    a = data.audio
    return HiFiGANMel(a.sampling_rate, a.filter_length, a.hop_length, a.win_length, a.n_mel_channels, a.mel_fmin,
                      fmax=None)


@torch.no_grad()
def validate_hifigan(generator: HiFiGAN, data: PreparedData, clips: Sequence[Clip], cfg: TrainConfig,
                     device: torch.device, step: int = 0, plots: Path | None = None,
                     media: dict[str, Any] | None = None) -> dict[str, float]:
    """Mel L1 (HiFi-GAN features, full band) between each whole validation clip and the generator's audio
    from the clip's input mel (eval mode). With ``plots``, the first clip's mels go to a PNG and its audio to
    a WAV, and ``media`` receives them for TensorBoard."""
    was_training = generator.training
    generator.eval()
    read_mel, features = _mel_reader(data, cfg), _loss_features(data).to(device)
    hop, total = data.audio.hop_length, 0.0
    first: tuple[Tensor, Tensor, Tensor] | None = None
    for clip in clips:
        mel = read_mel(clip).to(device)
        audio = data.load_segment(clip, 0, clip.frames * hop).to(device)[None]
        generated = generator(mel[None]).float()
        total += float(hifigan_mel_loss(features, generated, audio))
        if first is None:
            first = (generated[0, 0], features(generated[:, 0])[0], features(audio)[0])
    generator.train(was_training)
    metrics = {"mel_l1": total / len(clips)}
    if plots is not None and first is not None:
        audio, predicted, target = first
        name = f"step_{step:07d}"
        figure = save_mel_plot(plots / f"{name}_mel.png", predicted, target, f"{clips[0].id}, step {step}")
        save_wav(plots / f"{name}.wav", audio.clamp(-1, 1).cpu(), data.audio.sampling_rate)
        if media is not None:
            media.update(figures={"mel": figure} if figure is not None else {}, audio=audio.cpu(),
                         sampling_rate=data.audio.sampling_rate)
    return metrics


def _discriminator_state(path: Path) -> dict[str, Tensor] | None:
    """The discriminators of a checkpoint: a tacoglow training checkpoint's, or jik876's ``do_N`` beside its
    ``g_N``; None when there are none."""
    obj = read_checkpoint(path)
    training = obj.get("training") if isinstance(obj, dict) else None
    if isinstance(training, dict) and "discriminator" in training:
        return training["discriminator"]["state_dict"]
    if (m := _JIK876_GENERATOR.match(path.name)) and (path.parent / f"do_{m.group(1)}").is_file():
        pair = read_checkpoint(path.parent / f"do_{m.group(1)}")
        return {**{f"mpd.{k}": v for k, v in pair["mpd"].items()}, **{f"msd.{k}": v for k, v in pair["msd"].items()}}
    return None


def _start_discriminator(discriminator: HiFiGANDiscriminator, optimizer: torch.optim.Optimizer,
                         scaler: torch.amp.GradScaler, resumed: Path | None,
                         warm_start: str | os.PathLike | None, divisor: int) -> None:
    """The discriminators' weights, optimizer and scaler from the checkpoint resumed; else their weights from
    the warm-start file, when it has them; else fresh."""
    if resumed is not None:
        saved = read_checkpoint(resumed)["training"]["discriminator"]
        discriminator.load_state_dict(saved["state_dict"])
        optimizer.load_state_dict(saved["optimizer"])
        if saved["scaler"] and scaler.is_enabled():
            scaler.load_state_dict(saved["scaler"])
    elif warm_start is not None:
        state = _discriminator_state(Path(warm_start))
        if state is None:
            log.info("warm start: %s has no discriminators; they start fresh", warm_start)
        else:
            try:
                discriminator.load_state_dict(state)
            except RuntimeError as error:
                raise TrainingError(f"{warm_start}: its discriminators do not fit this run's "
                                    f"(discriminator_divisor {divisor}): "
                                    f"{str(error).splitlines()[0]}") from None


def _merge(d: StepResult, g: StepResult) -> StepResult:
    """One step's result from the discriminator's and the generator's updates."""
    return StepResult({**g.stats, "discriminator": d.stats["loss"]}, skipped=d.skipped or g.skipped,
                      scaler_skipped=d.scaler_skipped or g.scaler_skipped, grad_norm=g.grad_norm,
                      stop=d.stop or g.stop)


def train_hifigan(data_dir: str | os.PathLike, run_dir: str | os.PathLike,
                  config: TrainConfig | str | os.PathLike | None = None, *, max_steps: int | None = None,
                  threads: int | None = None, resume: bool = True, warm_start: str | os.PathLike | None = None,
                  drop_embedding: bool = False, device: str | None = None, amp: str | None = None,
                  input_mels: str | os.PathLike | None = None) -> Path:
    """Train a HiFi-GAN generator and its discriminators on random segments; returns the last checkpoint.

    Arguments as :func:`train_tacotron2` (``drop_embedding`` has no meaning here; ``config`` presets "v1" and
    "small"). ``warm_start``: any loadable generator (jik876's, NVIDIA's, tacoglow's); its discriminators too
    when the file has them (a tacoglow training checkpoint, or jik876's ``do_N`` beside ``g_N``).
    ``input_mels``: a `prepare_gta` folder whose mels replace the dataset's as the generator's input, the
    recorded audio staying the target (fine-tuning). Each step: one discriminator update on real and
    generated segments, then one generator update (adversarial + feature matching + 45 x mel L1).
    """
    run, cfg = loop.open_run(run_dir, config, "hifigan", max_steps=max_steps, threads=threads, device=device, amp=amp,
                             input_mels=None if input_mels is None else os.path.abspath(input_mels))
    with run:
        data = PreparedData(data_dir)
        loop.seed_everything(cfg.seed + run.rank)
        generator = HiFiGAN(_hifigan_config(cfg, data)).train()
        discriminator = HiFiGANDiscriminator(cfg.discriminator_divisor).train()
        resumed = latest_checkpoint(run.dir) if resume else None
        model, optimizer, scaler, state = start_training(run, generator, cfg, data, resume, warm_start, False)
        discriminator.to(run.device)
        d_optimizer, d_scaler = make_optimizer(discriminator, cfg), loop.grad_scaler(run, cfg)
        _start_discriminator(discriminator, d_optimizer, d_scaler, resumed, warm_start,
                             cfg.discriminator_divisor)
        critic: nn.Module = discriminator
        if run.distributed:
            ddp_args: dict[str, Any] = {"device_ids": [run.device.index]} if run.device.type == "cuda" else {}
            critic = nn.parallel.DistributedDataParallel(discriminator, **ddp_args)
        features = _loss_features(data).to(run.device)
        read_mel = _mel_reader(data, cfg)
        frames = cfg.segment_length // data.audio.hop_length
        train_clips, val_clips = data.train, loop.spread_by_length(data.val, cfg.val_items)

        def extra() -> dict[str, Any]:
            return {"discriminator": {"state_dict": discriminator.state_dict(),
                                      "optimizer": d_optimizer.state_dict(), "scaler": d_scaler.state_dict()}}

        def validate() -> None:
            media: dict[str, Any] = {}
            metrics = validate_hifigan(cast(HiFiGAN, loop.unwrap(model)), data, val_clips, cfg, run.device, state.step,
                                       run.plots, media)
            run.log({"split": "val", "step": state.step, **metrics})
            run.log_media(state.step, media)
            log.info("step %d: val mel L1 %.4f", state.step, metrics["mel_l1"])

        plan = loop.epoch_plan([0] * len(train_clips), cfg, run)
        run.open_logs(state.step)
        if state.step == 0 and warm_start is not None and run.main and val_clips:
            validate()  # where fine-tuning starts from: the warm-start generator's own output
        path = latest_checkpoint(run.dir)
        with loop.StopSignals() as stop, loop.progress_bar(run, cfg, state, len(plan(0)), "hifigan") as bar:
            for step in loop.steps(cfg, state, plan):
                clips = [train_clips[i] for i in step.items]
                # Segment offsets depend only on (seed, epoch, position, rank): a resumed run reads the same ones.
                rng = np.random.default_rng([cfg.seed, state.epoch, state.batch_in_epoch, run.rank])
                mels, audio = _segments(data, read_mel, clips, _segment_starts(clips, frames, rng), frames)
                mels, audio = mels.to(run.device), audio.to(run.device)
                lr = learning_rate_at(cfg, state.step, state.epoch)
                loop.set_learning_rate(optimizer, lr)
                loop.set_learning_rate(d_optimizer, lr)
                real = audio.unsqueeze(1)  # (B, 1, T)
                with loop.autocast(run, cfg):
                    generated = model(mels)  # (B, 1, T)

                # Discriminators: real segments towards 1, generated ones towards 0 (one pass over both).
                with loop.autocast(run, cfg):
                    scores, _ = critic(torch.cat([real, generated.detach()]))
                b = len(clips)
                d_losses = {"loss": discriminator_loss([s[:b] for s in scores], [s[b:] for s in scores])}
                d_result = loop.backward_and_step(d_losses, critic, d_optimizer, d_scaler, cfg.grad_clip,
                                                  stop.requested, run.distributed)

                # Generator, through the updated discriminators (frozen: no gradients for their weights).
                discriminator.requires_grad_(False)
                with loop.autocast(run, cfg):
                    scores, maps = discriminator(torch.cat([real, generated]))
                discriminator.requires_grad_(True)
                mel_l1 = hifigan_mel_loss(features, generated, audio)
                adversarial = generator_loss([s[b:] for s in scores])
                matching = feature_matching_loss([[m[:b] for m in ms] for ms in maps],
                                                 [[m[b:] for m in ms] for ms in maps])
                g_losses = {"loss": adversarial + matching + MEL_WEIGHT * mel_l1, "mel_l1": mel_l1,
                            "adversarial": adversarial, "feature_matching": matching}
                g_result = loop.backward_and_step(g_losses, model, optimizer, scaler, cfg.grad_clip, stop.requested,
                                                  run.distributed)
                result = _merge(d_result, g_result)
                loop.end_step(run, cfg, state, step, result, bar, lr, float(audio.numel()), "samples")
                if state.step % cfg.val_every == 0 and run.main and val_clips:
                    validate()
                path = checkpoint_if_due(run, model, optimizer, scaler, state, cfg, data, result, path, extra)
                if result.stop:
                    break
        # A run that was over before it began has saved nothing: save its start.
        return path if path is not None else save_checkpoint(run, model, optimizer, scaler, state, cfg, data, extra())
