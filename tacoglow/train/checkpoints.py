"""Checkpoints of a run: saving (model, optimizer, grad scaler, counters and every process's RNG state),
finding the newest, starting a run from one (resumed, or warm-started from any loadable checkpoint), and
exporting the model alone for shipping."""
from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
from pathlib import Path
from typing import Any, Callable, NamedTuple, cast

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..checkpoint import CheckpointError, atomic_save, checkpoint_dict, inspect_checkpoint, read_checkpoint
from ..data import PreparedData
from ..synthesis import SynthesisConfig
from ..text.lexicon import LEXICON_VERSION
from .config import TrainConfig
from .run import (
    Run,
    StepResult,
    TrainingError,
    TrainState,
    finished,
    grad_scaler,
    nonfinite_error,
    seed_everything,
    unwrap,
)

__all__ = ["latest_checkpoint", "resume_point", "ResumePoint", "save_checkpoint", "export_checkpoint",
           "start_training", "checkpoint_if_due", "make_optimizer"]

log = logging.getLogger(__name__)


def _rng_state() -> dict[str, Any]:
    """The process's RNG states, as tensors and plain numbers (loadable with weights_only=True)."""
    # numpy's stubs type get_state() as its dict form; called so (legacy=True) it returns this tuple.
    kind, keys, pos, has_gauss, gauss = cast(tuple[str, np.ndarray, int, int, float], np.random.get_state())
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                       "has_gauss": int(has_gauss), "gauss": float(gauss)},
             "python": {"version": version, "internal": torch.tensor(internal, dtype=torch.int64),
                        "gauss_next": gauss_next}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"].tolist()), p["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


_CHECKPOINT_NAME = re.compile(r"^step_(\d+)\.pt$")


def _checkpoint_files(run_dir: Path) -> list[Path]:
    found = [(int(m.group(1)), p) for p in (run_dir / "checkpoints").glob("step_*.pt")
             if (m := _CHECKPOINT_NAME.match(p.name))]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The run's newest checkpoint (highest step), or None."""
    files = _checkpoint_files(Path(run_dir))
    return files[-1] if files else None


class ResumePoint(NamedTuple):
    """A run's newest checkpoint and the step it was saved at."""

    path: Path
    step: int


def resume_point(run_dir: str | os.PathLike) -> ResumePoint | None:
    """Where a run resumes: its newest checkpoint and that checkpoint's step; None for a new run."""
    path = latest_checkpoint(run_dir)
    if path is None:
        return None
    match = _CHECKPOINT_NAME.match(path.name)
    assert match is not None  # latest_checkpoint finds only names that match
    return ResumePoint(path, int(match.group(1)))


def save_checkpoint(run: Run, model: nn.Module, optimizer: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, state: TrainState, cfg: TrainConfig,
                    data: PreparedData, extra: dict[str, Any] | None = None) -> Path:
    """Collective (every process calls it): rank 0 writes step_XXXXXXX.pt atomically, keeps the newest
    ``keep_checkpoints`` and returns its path. ``extra``: more training state (HiFi-GAN's discriminator)."""
    rng: list[dict[str, Any] | None] = [_rng_state()]
    if run.distributed:
        rng = [None] * run.world_size
        dist.all_gather_object(rng, _rng_state())
    path = run.checkpoints / f"step_{state.step:07d}.pt"
    if run.main:
        training = {"state": dataclasses.asdict(state), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(), "rng": rng, "world_size": run.world_size, **(extra or {})}
        # A model that learned phones says which lexicon: synthesis reads with it (Synthesizer's arpabet).
        text = {**data.text, "arpabet": LEXICON_VERSION} if cfg.p_arpabet > 0 else dict(data.text)
        if cfg.leading_pause:  # and reads with a pause before the first word (SynthesisConfig.leading_pause)
            text["leading_pause"] = True
        atomic_save(checkpoint_dict(unwrap(model), audio=data.audio, text=text, step=state.step,
                                    train_config=cfg.to_dict(), training=training), path)
        for old in _checkpoint_files(run.dir)[:-cfg.keep_checkpoints]:
            old.unlink()
        log.info("saved %s", path)
    run.barrier()
    return path


def export_checkpoint(source: str | os.PathLike, target: str | os.PathLike, dtype: torch.dtype | None = None,
                      synthesis: dict[str, Any] | None = None) -> None:
    """Write the model of a training checkpoint alone (config, audio, text, step and weights; optionally cast
    to ``dtype``), atomically: what a voice ships. ``synthesis``: the voice's measured synthesis defaults,
    e.g. ``{"griffin_lim_power": 1.4}``, fields of `SynthesisConfig` checked as it reads them (read back by
    ``Synthesizer.from_checkpoints``)."""
    obj = read_checkpoint(source)
    if not isinstance(obj, dict) or obj.get("format") != "tacoglow":
        raise CheckpointError(f"{source}: not a tacoglow checkpoint")
    model = {k: v for k, v in obj.items() if k not in ("training", "train_config")}
    if synthesis:
        settings = SynthesisConfig.from_dict(synthesis)  # refuses unknown fields and bad values now, not at load
        model["synthesis"] = {k: getattr(settings, k) for k in synthesis}
    if dtype is not None:
        model["state_dict"] = {k: _cast(v, dtype) for k, v in obj["state_dict"].items()}
    atomic_save(model, target)


def _cast(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A floating tensor in ``dtype``, unless its values lie beyond that type's range (a batch-norm running
    variance above fp16's 65,504): then as it was, since a loader refuses infinite weights."""
    if not tensor.is_floating_point():
        return tensor
    narrowed = tensor.to(dtype)
    return narrowed if torch.isfinite(narrowed).all() or not torch.isfinite(tensor).all() else tensor


def _resume(run: Run, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
            cfg: TrainConfig) -> TrainState | None:
    """Restore the newest checkpoint of the run (model, optimizer, scaler, counters, RNG); None if there is
    none."""
    path = latest_checkpoint(run.dir)
    if path is None:
        return None
    obj = read_checkpoint(path)
    training = obj.get("training") if isinstance(obj, dict) else None
    if not isinstance(training, dict):
        raise TrainingError(f"{path}: has no training state; it cannot be resumed (use it with --warm-start "
                            "in a new --run folder)")
    model.load_state_dict(obj["state_dict"])
    optimizer.load_state_dict(training["optimizer"])
    if training["scaler"] and scaler.is_enabled():
        scaler.load_state_dict(training["scaler"])
    state = TrainState(**training["state"])
    rng = training["rng"]
    if len(rng) == run.world_size:
        _set_rng_state(rng[run.rank])
    else:  # a different number of processes: fresh, distinct streams
        log.warning("%s was written by %d processes, now %d: reseeding the random streams", path, len(rng),
                    run.world_size)
        seed_everything(cfg.seed + 7919 * state.step + run.rank)
    log.info("resumed from %s (step %d, epoch %d)", path, state.step, state.epoch)
    return state


def _warm_start(model: nn.Module, path: str | os.PathLike, drop_embedding: bool, data: PreparedData,
                cfg: TrainConfig) -> None:
    """Copy every tensor of ``path`` whose name and shape match the model (any loadable checkpoint layout);
    the rest keeps its fresh initialisation. ``drop_embedding`` leaves the text embedding out (new symbols)."""
    loaded = inspect_checkpoint(path)
    if loaded.audio != data.audio:
        raise TrainingError(f"{path}: was trained on other audio settings ({loaded.audio}) than the data "
                            f"({data.audio}); warm-starting would mix features")
    paused = bool(loaded.text.get("leading_pause"))
    if paused != cfg.leading_pause:
        log.warning("%s: was trained with leading_pause %s, this run has leading_pause %s; its first words will be "
                    "relearnt (set leading_pause in the config as the checkpoint has it to continue its reading)",
                    path, paused, cfg.leading_pause)
    own = model.state_dict()
    skip = {"embedding.weight"} if drop_embedding else set()
    matched = {k: v for k, v in _split_weight_norm(loaded.state_dict, own).items()
               if k in own and k not in skip and tuple(v.shape) == tuple(own[k].shape)}
    fresh = sorted(set(own) - set(matched))
    if len(matched) < len(own) // 2:
        raise TrainingError(f"{path}: only {len(matched)} of the model's {len(own)} tensors match in name and "
                            "shape; it is not a warm start for this model configuration")
    model.load_state_dict({**own, **matched})
    log.info("warm start from %s: %d tensors loaded, %d fresh%s", path, len(matched), len(fresh),
             f" ({', '.join(fresh[:6])}{', ...' if len(fresh) > 6 else ''})" if fresh else "")


def _split_weight_norm(loaded: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Weights folded by ``remove_weight_norm`` (a HiFi-GAN saved for inference), split again where the model
    trains with weight norm: v = w and g = ||w|| (norm over all but the first axis) give the same weight."""
    out = dict(loaded)
    for key, weight in loaded.items():
        stem = key[:-len("weight")]
        if key.endswith(".weight") and stem + "weight_g" in own and stem + "weight_g" not in loaded:
            out[stem + "weight_v"] = weight
            out[stem + "weight_g"] = weight.norm(2, dim=tuple(range(1, weight.dim())), keepdim=True)
    return out


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The config's optimizer (Adam or AdamW) over ``model``'s parameters."""
    kind = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
    return kind(model.parameters(), lr=cfg.learning_rate, betas=cfg.adam_betas, eps=cfg.adam_eps,
                weight_decay=cfg.weight_decay)


def start_training(run: Run, model: nn.Module, cfg: TrainConfig, data: PreparedData, resume: bool,
                   warm_start: str | os.PathLike | None, drop_embedding: bool
                   ) -> tuple[nn.Module, torch.optim.Optimizer, torch.amp.GradScaler, TrainState]:
    """Model (wrapped in DDP under torchrun), optimizer, scaler and state: resumed from the run's newest
    checkpoint, else fresh (or warm-started)."""
    model.to(run.device)
    optimizer = make_optimizer(model, cfg)
    scaler = grad_scaler(run, cfg)
    existing = latest_checkpoint(run.dir)
    if existing is not None and not resume:
        raise TrainingError(f"{run.dir} already holds checkpoints ({existing.name}); resume it or choose a "
                            "new --run folder")
    state = _resume(run, model, optimizer, scaler, cfg) if resume else None
    if state is None:
        if warm_start is not None:
            _warm_start(model, warm_start, drop_embedding, data, cfg)
        state = TrainState()
    elif warm_start is not None:
        log.warning("resuming %s: --warm-start %s is ignored", run.dir, warm_start)
    if run.distributed:
        ddp_args: dict[str, Any] = {"device_ids": [run.device.index]} if run.device.type == "cuda" else {}
        model = nn.parallel.DistributedDataParallel(model, **ddp_args)
    return model, optimizer, scaler, state


def checkpoint_if_due(run: Run, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                      state: TrainState, cfg: TrainConfig, data: PreparedData, result: StepResult,
                      path: Path | None, extra: Callable[[], dict[str, Any]] | None = None) -> Path | None:
    """Save on schedule, on a stop request, at the end, or before giving up after too many non-finite steps
    in a row (then raise, naming the step). Returns the newest checkpoint's path."""
    give_up = state.nonfinite_in_a_row >= cfg.max_nonfinite
    if state.step % cfg.checkpoint_every == 0 or result.stop or give_up or finished(cfg, state):
        path = save_checkpoint(run, model, optimizer, scaler, state, cfg, data, extra() if extra else None)
    if give_up:
        assert path is not None  # saved just above
        raise nonfinite_error(state, path)
    return path
