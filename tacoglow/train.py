"""Training Tacotron 2 and WaveGlow on a prepared dataset: one visible loop per model.

    train_tacotron2(data_dir, run_dir, "small")    # text -> mel, teacher forcing
    train_waveglow(data_dir, run_dir, "small")     # mel -> audio, random segments

``data_dir`` is what ``tacoglow prepare`` writes (dataset.json, train.jsonl, val.jsonl, wavs/, mels/).
``run_dir`` holds everything a run produces, so a run describes itself::

    run_dir/config.json                 the TrainConfig (on resume: only run-length and schedule fields may change)
    run_dir/log.jsonl                   one JSON object per logged step / validation
    run_dir/checkpoints/step_XXXXXXX.pt model checkpoint (loads in load_tacotron2 / Synthesizer) + training state
    run_dir/plots/                      Tacotron 2 validation: alignment, mel, gate and inference PNGs, a WAV
    run_dir/tensorboard/                the same scalars, when TensorBoard is installed

A run resumes from its newest checkpoint (model, optimizer, grad scaler, step, epoch, position in the
epoch, RNG states), so a resumed run continues the same loss curve. SIGINT/SIGTERM finish the current
step, save a checkpoint and return. Steps with a non-finite loss are skipped and counted; ``max_nonfinite``
of them in a row stop the run. Under ``torchrun`` the batches are sharded over processes (gloo on CPU,
nccl on CUDA) and only rank 0 writes files.

Recipes (``--config nvidia|small|FILE``): "nvidia" is NVIDIA's DeepLearningExamples recipe; "small" is sized
for training on a few CPU cores (see ``PRESETS``).

Several processes (``--run`` is spelled ``--run-dir`` here: torchrun would take ``--run`` for its own
``--run-path``)::

    torchrun --standalone --nproc_per_node 2 -m tacoglow train tacotron2 --data DATA --run-dir RUN

Training checkpoints carry the optimizer state (about twice the model's size); ``export_checkpoint`` writes
the model alone for shipping.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from .audio import griffin_lim, save_wav
from .config import dataclass_from_dict
from .checkpoint import CheckpointError, atomic_save, checkpoint_dict, inspect_checkpoint, read_checkpoint
from .data import Clip, PreparedData, TextMelBatch, bucket_batches, collate_audio_mel, collate_text_mel
from .errors import TacoglowError
from .plots import save_alignment_plot, save_gate_plot, save_mel_plot
from .tacotron2 import Tacotron2, Tacotron2Config, Tacotron2Loss, attention_scores, guided_attention_loss
from .text import text_to_sequence
from .text.lexicon import LEXICON_VERSION, to_arpabet
from .waveglow import WaveGlow, WaveGlowConfig, WaveGlowLoss

__all__ = [
    "TrainConfig", "PRESETS", "load_train_config", "train_tacotron2", "train_waveglow", "TrainingError",
    "tacotron2_loss", "guided_attention_loss", "attention_scores", "learning_rate_at",
    "backward_and_step", "StepResult", "validate_tacotron2", "validate_waveglow", "latest_checkpoint",
    "export_checkpoint",
]

log = logging.getLogger(__name__)

MODELS = ("tacotron2", "waveglow")


class TrainingError(TacoglowError, RuntimeError):
    """Training cannot go on; the message says where and what to do."""


# ==========================================================================================================
# Configuration
# ==========================================================================================================

@dataclass
class TrainConfig:
    """Everything a run needs besides its data. Defaults are NVIDIA's Tacotron 2 recipe
    (``scripts/train_tacotron2.sh``); ``PRESETS`` holds the named recipes. Saved as ``run_dir/config.json``
    and inside every checkpoint."""

    model: str = "tacotron2"  # "tacotron2" or "waveglow"
    # Tacotron2Config / WaveGlowConfig fields that differ from the model's defaults.
    model_config: dict[str, Any] = field(default_factory=dict)

    # Optimiser: Adam, as the reference.
    learning_rate: float = 1e-3
    weight_decay: float = 1e-6
    adam_betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    grad_clip: float | None = 1.0  # max gradient norm; None: no clipping (the norm is still checked)
    # Learning rate = learning_rate * anneal_factor ** p, p = how many of anneal_at have been reached,
    # counted in anneal_unit ("epoch" as the reference, or "step"). A factor of 0.3 follows NVIDIA's
    # recipes instead: x1, x0.3, x0.1, x0.03, ... (see learning_rate_at).
    anneal_at: list[int] = field(default_factory=lambda: [500, 1000, 1500])
    anneal_unit: str = "epoch"
    anneal_factor: float = 0.1

    # Batches
    batch_size: int = 48  # per process
    bucket_batches: int = 32  # length bucketing: batches drawn from pools of this many batches' items
    max_frames: int | None = None  # Tacotron 2: leave out training clips longer than this (mel frames)
    segment_length: int = 16000  # WaveGlow: audio samples per training segment
    seed: int = 1234
    # Tacotron 2 input: each word the pronunciation lexicon knows is read as ARPAbet with this probability,
    # drawn anew per word and step (NVIDIA's Flowtron / RAD-TTS "p_arpabet"); 0 keeps the dataset's
    # character ids. A voice trained with p > 0 reads every known word as phones at synthesis.
    p_arpabet: float = 0.0

    # Tacotron 2 loss: mel MSE + postnet MSE + gate BCE (+ guided attention).
    masked_loss: bool = False  # False: padding counts, as the reference; True: only real frames/steps
    gate_pos_weight: float = 1.0  # BCE weight of "stop" targets (one per item when masked_loss)
    # Guided attention (Tachibana et al., 2017): penalises attention far from the diagonal n/N = t/T.
    guided_attention_weight: float = 0.0
    guided_attention_sigma: float = 0.2
    guided_attention_half_life: int | None = None  # steps for the weight to halve; None: constant
    guided_attention_stop: int | None = None  # step from which the term is off
    # WaveGlow loss
    waveglow_sigma: float = 1.0

    # Precision: "none", "fp16" (CUDA, with a GradScaler) or "bf16" (autocast).
    amp: str = "none"

    # Length of the run and bookkeeping (may change when a run is resumed).
    max_steps: int | None = None
    epochs: int | None = 1501
    log_every: int = 10
    val_every: int = 1000
    val_items: int | None = 64  # validation clips used (None: all)
    checkpoint_every: int = 1000
    keep_checkpoints: int = 5
    max_nonfinite: int = 10  # stop after this many non-finite losses in a row

    def __post_init__(self) -> None:
        self.adam_betas = tuple(self.adam_betas)
        self.anneal_at = list(self.anneal_at)
        self.model_config = dict(self.model_config)

        def fail(message: str) -> None:
            raise ValueError(f"invalid TrainConfig: {message}")

        if self.model not in MODELS:
            fail(f"model must be one of {MODELS}, got {self.model!r}")
        if self.anneal_unit not in ("epoch", "step"):
            fail(f"anneal_unit must be 'epoch' or 'step', got {self.anneal_unit!r}")
        if self.amp not in ("none", "fp16", "bf16"):
            fail(f"amp must be 'none', 'fp16' or 'bf16', got {self.amp!r}")
        if self.max_steps is None and self.epochs is None:
            fail("set max_steps or epochs (or both): the run needs an end")
        for name in ("batch_size", "bucket_batches", "log_every", "val_every", "checkpoint_every",
                     "keep_checkpoints", "max_nonfinite", "segment_length"):
            if getattr(self, name) < 1:
                fail(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            fail(f"learning_rate must be positive, got {self.learning_rate}")
        if not 0.0 <= self.p_arpabet <= 1.0:
            fail(f"p_arpabet must be in [0, 1], got {self.p_arpabet}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["adam_betas"] = list(self.adam_betas)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        return dataclass_from_dict(cls, d)


# Fields that describe how long and how verbosely a run goes, and its learning-rate schedule (a run that is
# extended past its plan needs its annealing points moved); they may differ when a run is resumed. The
# learning rate is recomputed from the schedule at every step, so a changed schedule applies at once.
_RUN_FIELDS = frozenset({"max_steps", "epochs", "log_every", "val_every", "val_items", "checkpoint_every",
                         "keep_checkpoints", "max_nonfinite", "amp",
                         "learning_rate", "anneal_at", "anneal_unit", "anneal_factor"})

# Tacotron 2 "small": NVIDIA's layers at half width (the "reduced" size, 7.4 M parameters) predicting
# r = 3 frames per decoder step, with guided attention so that alignment comes early. Measured on the
# 2-core EPYC this was sized on (idle), batch 32 of 3 s clips (258 frames): 1.3 s/step with 2 threads,
# 1.9 s/step with 1 (r = 2 costs 1.9 / 2.7 s), so 5,000 steps take about 2 hours.
_TACOTRON2_SMALL = dict(
    symbols_embedding_dim=256, encoder_embedding_dim=256, attention_rnn_dim=512, attention_dim=128,
    decoder_rnn_dim=512, prenet_dim=128, postnet_embedding_dim=256, n_frames_per_step=3)
# WaveGlow "small": 8 flows of a 4-layer, 64-channel WN (10.2 M parameters, 6.5 M of them the fixed-size
# mel upsampler); RTF ~1 at inference on 2 cores. Batch 8 x 8000 samples: 2.0 s/step with 1 thread.
_WAVEGLOW_SMALL = dict(n_flows=8, n_layers=4, n_channels=64)

PRESETS: dict[str, dict[str, TrainConfig]] = {
    "tacotron2": {
        # scripts/train_tacotron2.sh: Adam 1e-3, wd 1e-6, clip 1.0, batch 48, lr x0.1 at epochs 500/1000/1500.
        "nvidia": TrainConfig(),
        "small": TrainConfig(
            model_config=_TACOTRON2_SMALL, batch_size=32, anneal_at=[5000, 14000], anneal_unit="step",
            anneal_factor=0.3, max_frames=1000, masked_loss=True, gate_pos_weight=5.0,
            guided_attention_weight=2.0, guided_attention_half_life=5000, max_steps=20_000, epochs=None,
            log_every=10, val_every=250, val_items=32, checkpoint_every=250),
    },
    "waveglow": {
        # scripts/train_waveglow.sh: Adam 1e-4, no weight decay, no clipping, batch 4 x 8000 samples.
        "nvidia": TrainConfig(model="waveglow", learning_rate=1e-4, weight_decay=0.0, grad_clip=None,
                              anneal_at=[], batch_size=4, segment_length=8000, epochs=1501,
                              val_items=16),
        "small": TrainConfig(model="waveglow", model_config=_WAVEGLOW_SMALL, learning_rate=1e-4,
                             weight_decay=0.0, grad_clip=None, anneal_at=[], batch_size=8,
                             segment_length=8000, max_steps=50_000, epochs=None, log_every=10,
                             val_every=500, val_items=16, checkpoint_every=500),
    },
}


def load_train_config(config: TrainConfig | str | os.PathLike | None, model: str) -> TrainConfig:
    """A TrainConfig from an object, a preset name ("nvidia", "small") or a JSON file of its fields
    (missing fields take the TrainConfig defaults, i.e. NVIDIA's Tacotron 2 recipe)."""
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    if config is None:
        config = "small"
    if isinstance(config, TrainConfig):
        cfg = config
    elif isinstance(config, str) and config in PRESETS[model]:
        cfg = PRESETS[model][config]
    else:
        path = Path(config)
        if not path.is_file():
            raise ValueError(f"--config {config}: neither a preset ({', '.join(PRESETS[model])}) nor a JSON file")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            cfg = TrainConfig.from_dict({"model": model, **d})
        except (json.JSONDecodeError, ValueError, TypeError) as error:
            raise ValueError(f"{path}: not a usable training config: {error}") from None
    if cfg.model != model:
        raise ValueError(f"the config is for {cfg.model}, not {model}")
    return dataclasses.replace(cfg)  # a copy: presets stay untouched


def learning_rate_at(cfg: TrainConfig, step: int, epoch: int) -> float:
    """NVIDIA's ``adjust_learning_rate``: lr0 * factor^p after p annealing points; its factor-0.3 recipes
    alternate x0.3 and x0.1/0.3 (1, 0.3, 0.1, 0.03, ...)."""
    now = epoch if cfg.anneal_unit == "epoch" else step
    p = sum(now >= point for point in cfg.anneal_at)
    if cfg.anneal_factor == 0.3:
        return cfg.learning_rate * 0.1 ** (p // 2) * (0.3 if p % 2 else 1.0)
    return cfg.learning_rate * cfg.anneal_factor ** p


def guided_attention_weight_at(cfg: TrainConfig, step: int) -> float:
    if cfg.guided_attention_weight <= 0 or (cfg.guided_attention_stop is not None
                                            and step >= cfg.guided_attention_stop):
        return 0.0
    if cfg.guided_attention_half_life is None:
        return cfg.guided_attention_weight
    return cfg.guided_attention_weight * 0.5 ** (step / cfg.guided_attention_half_life)


# ==========================================================================================================
# The loss of a run (Tacotron2Loss, beside the model, with this run's settings)
# ==========================================================================================================

def tacotron2_loss(outputs: Sequence[Tensor], batch: TextMelBatch, cfg: TrainConfig,
                   step: int) -> dict[str, Tensor]:
    """The run's :class:`~tacoglow.tacotron2.Tacotron2Loss` of a batch at ``step`` (where the guided-attention
    weight stands in its schedule): the total ("loss") and each term."""
    criterion = Tacotron2Loss(cfg.masked_loss, cfg.gate_pos_weight, cfg.guided_attention_sigma)
    return criterion(outputs, batch.mels, batch.gate, batch.mel_lengths, batch.text_lengths,
                     guided_attention_weight_at(cfg, step))


# ==========================================================================================================
# Shared machinery: the run, one optimisation step, checkpoints, signals
# ==========================================================================================================

@dataclass
class TrainState:
    step: int = 0  # batches consumed (optimizer updates plus skipped steps)
    epoch: int = 0
    batch_in_epoch: int = 0  # position in the epoch's batch list: batches already used
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0


class _Run:
    """Where a run lives and who writes: process group, device, run folder, log.jsonl, TensorBoard, bar.

    Under ``torchrun`` (WORLD_SIZE > 1 in the environment) it joins the process group (gloo on CPU, nccl on
    CUDA) unless the caller has; leaving the ``with`` block (or :meth:`close`) closes the logs and leaves a
    group it joined.
    """

    def __init__(self, run_dir: str | os.PathLike, device: str | None, threads: int | None):
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        self.distributed = self.world_size > 1
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.local_rank)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if threads is None and self.distributed and self.device.type == "cpu" and "OMP_NUM_THREADS" not in os.environ:
            local = int(os.environ.get("LOCAL_WORLD_SIZE", self.world_size))
            threads = max(1, (os.cpu_count() or 1) // local)  # processes on one machine share its cores
        if threads is not None:
            torch.set_num_threads(threads)
        self._owns_group = self.distributed and not dist.is_initialized()
        if self._owns_group:
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        self.main = self.rank == 0
        self.dir = Path(run_dir)
        self.checkpoints = self.dir / "checkpoints"
        self.plots = self.dir / "plots"
        self._log_file = None
        self.tensorboard = None
        if self.main:
            self.checkpoints.mkdir(parents=True, exist_ok=True)
            self.plots.mkdir(parents=True, exist_ok=True)
        self.barrier()

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def open_logs(self, step: int) -> None:
        """Open log.jsonl (and TensorBoard) to go on from ``step``: records of later steps, written after the
        checkpoint the run resumes from, are dropped, so the log shows the loss curve the run really took."""
        if not self.main:
            return
        path = self.dir / "log.jsonl"
        if path.exists():
            kept = []
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    if json.loads(line)["step"] <= step:
                        kept.append(line + "\n")
                except (json.JSONDecodeError, KeyError, TypeError):  # a line cut short by a hard kill
                    continue
            path.write_text("".join(kept), encoding="utf-8")
        self._log_file = path.open("a", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # TensorBoard is optional; log.jsonl holds the same numbers
            self.tensorboard = None
        else:
            self.tensorboard = SummaryWriter(str(self.dir / "tensorboard"), purge_step=step)

    def log(self, record: dict[str, Any], bar: Any = None) -> None:
        """One line of log.jsonl (and TensorBoard scalars), rank 0 only; without a visible progress ``bar``
        (not a terminal) training records are also logged as text."""
        if not self.main or self._log_file is None:
            return
        if bar is not None and bar.disable and record.get("split") == "train":
            log.info("step %d: loss %s, %.2f s/step", record["step"], record.get("loss"),
                     record["seconds_per_step"])
        record = {"time": round(time.time(), 3),
                  **{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}}
        self._log_file.write(json.dumps(record) + "\n")
        self._log_file.flush()
        if self.tensorboard is not None:
            split = record.get("split", "train")
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key not in ("step", "time"):
                    self.tensorboard.add_scalar(f"{split}/{key}", value, record["step"])

    def log_media(self, step: int, media: dict[str, Any]) -> None:
        """Validation figures and audio to TensorBoard (rank 0, when TensorBoard is installed)."""
        if not self.main or self.tensorboard is None:
            return
        for name, figure in media.get("figures", {}).items():
            self.tensorboard.add_figure(f"val/{name}", figure, step, close=False)
        if media.get("audio") is not None and media["audio"].numel():
            self.tensorboard.add_audio("val/inference", media["audio"].clamp(-1, 1).unsqueeze(0), step,
                                       sample_rate=media["sampling_rate"])

    def close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self._owns_group and dist.is_initialized():
            dist.destroy_process_group()
        self._owns_group = False

    def __enter__(self) -> "_Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_run_config(run: _Run, cfg: TrainConfig, explicit: bool) -> TrainConfig:
    """Write config.json for a new run; on an existing run, use its config (run-length fields may change)."""
    path = run.dir / "config.json"
    if path.is_file():
        saved = TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
        if explicit:
            changed = sorted(k for k, v in cfg.to_dict().items()
                             if k not in _RUN_FIELDS and saved.to_dict()[k] != v)
            if changed:
                raise TrainingError(
                    f"{path}: this run was started with other settings ({', '.join(changed)} differ); resume it "
                    "without --config or with the same one, or start a new --run folder")
        runs = {k: getattr(cfg, k) for k in _RUN_FIELDS} if explicit else {}
        cfg = dataclasses.replace(saved, **runs)
    run.barrier()
    if run.main:
        path.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    return cfg


def _autocast(run: _Run, cfg: TrainConfig) -> contextlib.AbstractContextManager:
    if cfg.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.float16 if cfg.amp == "fp16" else torch.bfloat16
    return torch.autocast(run.device.type, dtype=dtype)


def _grad_scaler(run: _Run, cfg: TrainConfig) -> torch.amp.GradScaler:
    if cfg.amp == "fp16" and run.device.type != "cuda":
        raise TrainingError("amp 'fp16' needs a CUDA device (its loss scaling exists for fp16 gradients); "
                            "use 'bf16' on CPU")
    # fp16 gradients underflow without loss scaling; bf16 has fp32's range and needs none.
    return torch.amp.GradScaler(run.device.type, enabled=cfg.amp == "fp16")


@dataclass
class StepResult:
    stats: dict[str, float]  # loss terms, averaged over processes
    skipped: bool  # no update: non-finite loss or gradient norm (counted towards max_nonfinite)
    scaler_skipped: bool  # no update: the grad scaler found inf/NaN gradients (normal while it calibrates)
    grad_norm: float
    stop: bool  # a process was asked to stop (SIGINT/SIGTERM)


def backward_and_step(losses: dict[str, Tensor], model: nn.Module, optimizer: torch.optim.Optimizer,
                      scaler: torch.amp.GradScaler, grad_clip: float | None, stop_requested: bool = False,
                      distributed: bool = False) -> StepResult:
    """Backward (scaled), agree across processes on the loss and on stopping, then unscale, clip and step.

    Every process runs backward even on a bad step, so DDP's gradient all-reduce stays in step; the update is
    then skipped everywhere when any process saw a non-finite loss.
    """
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(losses["loss"]).backward()
    names = list(losses)
    values = torch.stack([losses[k].detach().float().reshape(()) for k in names])
    flags = torch.tensor([float(not torch.isfinite(values).all()), float(stop_requested)], device=values.device)
    packed = torch.cat([values, flags])
    if distributed:
        dist.all_reduce(packed)
        packed[:len(names)] /= dist.get_world_size()
    stats = dict(zip(names, packed[:len(names)].tolist()))
    nonfinite, stop = bool(packed[-2] > 0), bool(packed[-1] > 0)
    if nonfinite:
        optimizer.zero_grad(set_to_none=True)
        return StepResult(stats, skipped=True, scaler_skipped=False, grad_norm=float("nan"), stop=stop)
    scaler.unscale_(optimizer)
    grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), grad_clip if grad_clip else float("inf")))
    if not math.isfinite(grad_norm) and not scaler.is_enabled():
        optimizer.zero_grad(set_to_none=True)
        return StepResult(stats, skipped=True, scaler_skipped=False, grad_norm=grad_norm, stop=stop)
    scale = scaler.get_scale() if scaler.is_enabled() else 1.0
    scaler.step(optimizer)  # with scaling on, skipped when the gradients hold inf/NaN
    scaler.update()
    scaler_skipped = scaler.is_enabled() and scaler.get_scale() < scale
    return StepResult(stats, skipped=False, scaler_skipped=scaler_skipped, grad_norm=grad_norm, stop=stop)


def _set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _rng_state() -> dict[str, Any]:
    """The process's RNG states, as tensors and plain numbers (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
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


def _save_checkpoint(run: _Run, model: nn.Module, optimizer: torch.optim.Optimizer,
                     scaler: torch.amp.GradScaler, state: TrainState, cfg: TrainConfig,
                     data: PreparedData) -> Path:
    """Collective (every process calls it): rank 0 writes step_XXXXXXX.pt atomically, keeps the newest
    ``keep_checkpoints`` and returns its path."""
    rng = [_rng_state()]
    if run.distributed:
        rng = [None] * run.world_size
        dist.all_gather_object(rng, _rng_state())
    path = run.checkpoints / f"step_{state.step:07d}.pt"
    if run.main:
        training = {"state": dataclasses.asdict(state), "optimizer": optimizer.state_dict(),
                    "scaler": scaler.state_dict(), "rng": rng, "world_size": run.world_size}
        # A model that learned phones says which lexicon: synthesis reads with it (Synthesizer's arpabet).
        text = {**data.text, "arpabet": LEXICON_VERSION} if cfg.p_arpabet > 0 else data.text
        atomic_save(checkpoint_dict(_unwrap(model), audio=data.audio, text=text, step=state.step,
                                    train_config=cfg.to_dict(), training=training), path)
        for old in _checkpoint_files(run.dir)[:-cfg.keep_checkpoints]:
            old.unlink()
        log.info("saved %s", path)
    run.barrier()
    return path


def export_checkpoint(source: str | os.PathLike, target: str | os.PathLike, dtype: torch.dtype | None = None,
                      synthesis: dict[str, float] | None = None) -> None:
    """Write the model of a training checkpoint alone (config, audio, text, step and weights; optionally cast
    to ``dtype``), atomically: what a voice ships. ``synthesis``: the voice's measured synthesis defaults,
    e.g. ``{"griffin_lim_power": 1.4}`` (read by ``Synthesizer.from_checkpoints``)."""
    obj = read_checkpoint(source)
    if not isinstance(obj, dict) or obj.get("format") != "tacoglow":
        raise CheckpointError(f"{source}: not a tacoglow checkpoint")
    model = {k: v for k, v in obj.items() if k not in ("training", "train_config")}
    if synthesis:
        model["synthesis"] = {k: float(v) for k, v in synthesis.items()}
    if dtype is not None:
        model["state_dict"] = {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in obj["state_dict"].items()}
    atomic_save(model, target)


def _resume(run: _Run, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
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
        _seed_everything(cfg.seed + 7919 * state.step + run.rank)
    log.info("resumed from %s (step %d, epoch %d)", path, state.step, state.epoch)
    return state


def _warm_start(model: nn.Module, path: str | os.PathLike, drop_embedding: bool, data: PreparedData) -> None:
    """Copy every tensor of ``path`` whose name and shape match the model (any loadable checkpoint layout);
    the rest keeps its fresh initialisation. ``drop_embedding`` leaves the text embedding out (new symbols)."""
    loaded = inspect_checkpoint(path)
    if loaded.audio != data.audio:
        raise TrainingError(f"{path}: was trained on other audio settings ({loaded.audio}) than the data "
                            f"({data.audio}); warm-starting would mix features")
    own = model.state_dict()
    skip = {"embedding.weight"} if drop_embedding else set()
    matched = {k: v for k, v in loaded.state_dict.items()
               if k in own and k not in skip and tuple(v.shape) == tuple(own[k].shape)}
    fresh = sorted(set(own) - set(matched))
    if len(matched) < len(own) // 2:
        raise TrainingError(f"{path}: only {len(matched)} of the model's {len(own)} tensors match in name and "
                            "shape; it is not a warm start for this model configuration")
    model.load_state_dict({**own, **matched})
    log.info("warm start from %s: %d tensors loaded, %d fresh%s", path, len(matched), len(fresh),
             f" ({', '.join(fresh[:6])}{', ...' if len(fresh) > 6 else ''})" if fresh else "")


def _seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


class _StopSignals:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s received: finishing this step and saving a checkpoint", signal.Signals(signum).name)

    def __enter__(self) -> "_StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def _epoch_plan(plan: Callable[[int], list[list[int]]]) -> Callable[[int], list[list[int]]]:
    """``plan(epoch)``, remembered for the current epoch, refusing an epoch without a complete batch."""
    cache: dict[int, list[list[int]]] = {}

    def batches(epoch: int) -> list[list[int]]:
        if epoch not in cache:
            cache.clear()
            cache[epoch] = plan(epoch)
            if not cache[epoch]:
                raise TrainingError("an epoch has no complete batch: the training set is smaller than "
                                    "batch_size x processes; lower batch_size")
        return cache[epoch]
    return batches


def _advance(state: TrainState, batches_in_epoch: int) -> None:
    """One batch consumed: the step and the position in the epoch move on (into the next epoch at its end)."""
    state.step += 1
    state.batch_in_epoch += 1
    if state.batch_in_epoch >= batches_in_epoch:
        state.epoch += 1
        state.batch_in_epoch = 0


def _finished(cfg: TrainConfig, state: TrainState) -> bool:
    return ((cfg.max_steps is not None and state.step >= cfg.max_steps)
            or (cfg.epochs is not None and state.epoch >= cfg.epochs))


def _log_step(run: _Run, cfg: TrainConfig, state: TrainState, result: StepResult, bar: Any, lr: float,
              started: float, amount: float, unit: str) -> None:
    """Progress bar, and every ``log_every`` steps (or on a skipped step) a train line of the log;
    ``amount`` is this rank's mel frames or audio samples in the step."""
    bar.update(1)
    bar.set_postfix(loss=f"{result.stats['loss']:.4f}", refresh=False)
    if state.step % cfg.log_every == 0 or result.skipped:
        run.log(_train_record(result, state, lr, time.perf_counter() - started, amount * run.world_size, unit), bar)


def _checkpoint_if_due(run: _Run, model: nn.Module, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
                       state: TrainState, cfg: TrainConfig, data: PreparedData, result: StepResult,
                       path: Path | None) -> Path | None:
    """Save on schedule, on a stop request, at the end, or before giving up after too many non-finite steps
    in a row (then raise, naming the step). Returns the newest checkpoint's path."""
    give_up = state.nonfinite_in_a_row >= cfg.max_nonfinite
    if state.step % cfg.checkpoint_every == 0 or result.stop or give_up or _finished(cfg, state):
        path = _save_checkpoint(run, model, optimizer, scaler, state, cfg, data)
    if give_up:
        raise _nonfinite_error(state, path)
    return path


def _progress_bar(run: _Run, cfg: TrainConfig, state: TrainState, steps_per_epoch: int, name: str):
    from tqdm import tqdm

    totals = [cfg.max_steps] if cfg.max_steps is not None else []
    if cfg.epochs is not None:
        totals.append(cfg.epochs * steps_per_epoch)
    return tqdm(total=min(totals), initial=state.step, desc=name, unit="step", dynamic_ncols=True,
                disable=None if run.main else True)


def _count_nonfinite(state: TrainState, result: StepResult) -> None:
    """Count skipped steps; too many non-finite losses in a row end the run."""
    if result.skipped:
        state.nonfinite_total += 1
        state.nonfinite_in_a_row += 1
        log.warning("step %d: non-finite loss or gradient, update skipped (%d in a row)", state.step,
                    state.nonfinite_in_a_row)
    else:
        state.nonfinite_in_a_row = 0


def _nonfinite_error(state: TrainState, path: Path) -> TrainingError:
    first = state.step - state.nonfinite_in_a_row + 1
    return TrainingError(
        f"stopped at step {state.step}: the loss or gradient was not finite for {state.nonfinite_in_a_row} steps "
        f"in a row (steps {first}-{state.step}); the last good weights are in {path}. Lower the learning "
        "rate, check the data, or resume from an earlier checkpoint")


def _prepare(run_dir: str | os.PathLike, config: TrainConfig | str | os.PathLike | None, model_name: str, *,
             max_steps: int | None, threads: int | None, device: str | None,
             amp: str | None) -> tuple[_Run, TrainConfig]:
    """The run in ``run_dir`` and its config: ``config`` (with ``max_steps`` and ``amp`` overriding it) for a
    new run, the run's own config.json (whose run-length fields ``config`` may change) for an existing one."""
    cfg = load_train_config(config, model_name)
    overrides = {k: v for k, v in (("max_steps", max_steps), ("amp", amp)) if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    run = _Run(run_dir, device, threads)
    try:
        cfg = _check_run_config(run, cfg, explicit=config is not None)
    except BaseException:
        run.close()
        raise
    cfg = dataclasses.replace(cfg, **overrides)
    return run, cfg


def _optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.Adam(model.parameters(), lr=cfg.learning_rate, betas=cfg.adam_betas, eps=cfg.adam_eps,
                            weight_decay=cfg.weight_decay)


def _start(run: _Run, model: nn.Module, cfg: TrainConfig, data: PreparedData, resume: bool,
           warm_start: str | os.PathLike | None, drop_embedding: bool):
    """Optimizer, scaler and state: resumed from the run's newest checkpoint, else fresh (or warm-started)."""
    model.to(run.device)
    optimizer = _optimizer(model, cfg)
    scaler = _grad_scaler(run, cfg)
    existing = latest_checkpoint(run.dir)
    if existing is not None and not resume:
        raise TrainingError(f"{run.dir} already holds checkpoints ({existing.name}); resume it or choose a "
                            "new --run folder")
    state = _resume(run, model, optimizer, scaler, cfg) if resume else None
    if state is None:
        if warm_start is not None:
            _warm_start(model, warm_start, drop_embedding, data)
        state = TrainState()
    elif warm_start is not None:
        log.warning("resuming %s: --warm-start %s is ignored", run.dir, warm_start)
    if run.distributed:
        ddp_args = {"device_ids": [run.device.index]} if run.device.type == "cuda" else {}
        model = nn.parallel.DistributedDataParallel(model, **ddp_args)
    return model, optimizer, scaler, state


def _train_record(result: StepResult, state: TrainState, lr: float, seconds: float, items: float,
                  unit: str) -> dict[str, Any]:
    return {"split": "train", "step": state.step, "epoch": state.epoch,
            **{k: round(v, 6) for k, v in result.stats.items()}, "grad_norm": round(result.grad_norm, 4),
            "lr": lr, "skipped": result.skipped, "nonfinite_total": state.nonfinite_total,
            "seconds_per_step": round(seconds, 4), f"{unit}_per_second": round(items / max(seconds, 1e-9), 1)}


# ==========================================================================================================
# Tacotron 2
# ==========================================================================================================

def _spread(clips: Sequence[Clip], n: int | None) -> list[Clip]:
    """Up to n clips evenly spaced over the clips sorted by length (short to long): a fixed validation set
    that spans the lengths."""
    ordered = sorted(clips, key=lambda c: (c.frames, c.id))
    if n is None or n >= len(ordered):
        return ordered
    return [ordered[round(k * (len(ordered) - 1) / max(n - 1, 1))] for k in range(n)]


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


def _read_arpabet(data: PreparedData, clips: Sequence[Clip], p: float, rng: np.random.Generator | None) -> list[Clip]:
    """The clips with their ids made again from their text, lexicon words as ARPAbet with probability p."""
    if p <= 0.0:
        return list(clips)
    cleaners = data.text.get("cleaners") or ["english_cleaners"]
    read = []
    for clip in clips:
        if not clip.text.strip():
            raise TrainingError(f"{data.dir}: clip {clip.id} has no text; p_arpabet needs each clip's text "
                                "(prepare the data again with this tacoglow)")
        read.append(dataclasses.replace(clip, ids=text_to_sequence(to_arpabet(clip.text, p, rng, cleaners),
                                                                    cleaners)))
    return read


def _tacotron2_batch(data: PreparedData, clips: Sequence[Clip], r: int, p_arpabet: float = 0.0,
                     rng: np.random.Generator | None = None) -> TextMelBatch:
    return collate_text_mel(_read_arpabet(data, clips, p_arpabet, rng), [data.load_mel(c) for c in clips], r)


@torch.no_grad()
def validate_tacotron2(model: Tacotron2, data: PreparedData, clips: Sequence[Clip], cfg: TrainConfig, step: int,
                       device: torch.device, plots: Path | None = None,
                       media: dict[str, Any] | None = None) -> dict[str, float]:
    """Teacher-forced loss and attention measures on ``clips`` (eval mode), then one free-running decode
    of the first clip; with ``plots``, its alignments, mels and stop token go to PNG files and the decoded
    mel (through Griffin-Lim) to a WAV, and ``media`` receives the figures and audio for TensorBoard. Uses
    its own random streams, so training's are untouched."""
    media = {} if media is None else media
    was_training = model.training
    model.eval()
    r = model.config.n_frames_per_step
    totals: dict[str, float] = {}
    focus, diagonality = [], []
    first = None
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        for start in range(0, len(clips), cfg.batch_size):
            # Read as synthesis reads: every lexicon word as phones when the model learns them.
            batch = _tacotron2_batch(data, clips[start:start + cfg.batch_size], r,
                                     1.0 if cfg.p_arpabet > 0 else 0.0).to(device)
            outputs = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths)
            for k, v in tacotron2_loss(outputs, batch, cfg, step).items():
                totals[k] = totals.get(k, 0.0) + float(v) * len(batch.ids)
            f, d = attention_scores(outputs[3], batch.text_lengths, batch.step_lengths, cfg.guided_attention_sigma)
            focus += f.tolist()
            diagonality += d.tolist()
            if first is None:
                first = (batch, [x[0] for x in outputs])
        # Free running: does the model align and stop on its own?
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
    run, cfg = _prepare(run_dir, config, "tacotron2", max_steps=max_steps, threads=threads, device=device, amp=amp)
    with run:  # leaves the process group it joined, whatever happens
        data = PreparedData(data_dir)
        _seed_everything(cfg.seed + run.rank)  # the reference seeds seed + rank
        model = Tacotron2(_tacotron2_config(cfg, data)).train()
        r = model.config.n_frames_per_step
        model, optimizer, scaler, state = _start(run, model, cfg, data, resume, warm_start, drop_embedding)

        train_clips = [c for c in data.train if cfg.max_frames is None or c.frames <= cfg.max_frames]
        if len(train_clips) < len(data.train):
            log.info("leaving out %d training clips longer than %d frames", len(data.train) - len(train_clips),
                     cfg.max_frames)
        val_clips = _spread(data.val, cfg.val_items)
        lengths = [c.frames for c in train_clips]

        plan = _epoch_plan(lambda epoch: bucket_batches(lengths, cfg.batch_size, cfg.seed, epoch,
                                                        bucket_batches=cfg.bucket_batches, rank=run.rank,
                                                        world_size=run.world_size))
        run.open_logs(state.step)
        path = latest_checkpoint(run.dir)
        with _StopSignals() as stop, _progress_bar(run, cfg, state, len(plan(0)), "tacotron2") as bar:
            while not _finished(cfg, state):
                started = time.perf_counter()
                batches = plan(state.epoch)
                # Which words are read as phones depends only on (seed, epoch, position, rank), as resumption needs.
                words = np.random.default_rng([cfg.seed, state.epoch, state.batch_in_epoch, run.rank, 1])
                batch = _tacotron2_batch(data, [train_clips[i] for i in batches[state.batch_in_epoch]], r,
                                         cfg.p_arpabet, words).to(run.device)
                lr = learning_rate_at(cfg, state.step, state.epoch)
                _set_learning_rate(optimizer, lr)

                with _autocast(run, cfg):
                    outputs = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths)
                losses = tacotron2_loss(outputs, batch, cfg, state.step)
                result = backward_and_step(losses, model, optimizer, scaler, cfg.grad_clip, stop.requested,
                                           run.distributed)
                _advance(state, len(batches))
                _count_nonfinite(state, result)

                _log_step(run, cfg, state, result, bar, lr, started, float(batch.mel_lengths.sum()), "frames")
                if state.step % cfg.val_every == 0 and run.main and val_clips:
                    media: dict[str, Any] = {}
                    metrics = validate_tacotron2(_unwrap(model), data, val_clips, cfg, state.step, run.device,
                                                 run.plots, media)
                    run.log({"split": "val", "step": state.step, **metrics})
                    run.log_media(state.step, media)
                    log.info("step %d: val loss %.4f, attention focus %.3f, diagonality %.3f", state.step,
                             metrics["loss"], metrics["attention_focus"], metrics["diagonality"])
                path = _checkpoint_if_due(run, model, optimizer, scaler, state, cfg, data, result, path)
                if result.stop:
                    break
        if path is None:  # the run was over before it began and never saved: save the start
            path = _save_checkpoint(run, model, optimizer, scaler, state, cfg, data)
    return path


# ==========================================================================================================
# WaveGlow
# ==========================================================================================================

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
    run, cfg = _prepare(run_dir, config, "waveglow", max_steps=max_steps, threads=threads, device=device, amp=amp)
    with run:
        data = PreparedData(data_dir)
        _seed_everything(cfg.seed + run.rank)
        model = WaveGlow(_waveglow_config(cfg, data)).train()
        model, optimizer, scaler, state = _start(run, model, cfg, data, resume, warm_start, drop_embedding=False)
        criterion = WaveGlowLoss(cfg.waveglow_sigma)
        train_clips, val_clips = data.train, _spread(data.val, cfg.val_items)
        lengths = [0] * len(train_clips)  # segments all have the same length: plain shuffling

        plan = _epoch_plan(lambda epoch: bucket_batches(lengths, cfg.batch_size, cfg.seed, epoch,
                                                        bucket_batches=cfg.bucket_batches, rank=run.rank,
                                                        world_size=run.world_size))
        run.open_logs(state.step)
        path = latest_checkpoint(run.dir)
        with _StopSignals() as stop, _progress_bar(run, cfg, state, len(plan(0)), "waveglow") as bar:
            while not _finished(cfg, state):
                started = time.perf_counter()
                batches = plan(state.epoch)
                clips = [train_clips[i] for i in batches[state.batch_in_epoch]]
                # Segment offsets depend only on (seed, epoch, position, rank): a resumed run reads the same ones.
                rng = np.random.default_rng([cfg.seed, state.epoch, state.batch_in_epoch, run.rank])
                batch = collate_audio_mel(data, clips, _segment_starts(clips, cfg.segment_length, rng),
                                          cfg.segment_length).to(run.device)
                lr = learning_rate_at(cfg, state.step, state.epoch)
                _set_learning_rate(optimizer, lr)

                with _autocast(run, cfg):
                    z, log_s, log_det_w = model(batch.mels, batch.audio)
                output = (z.float(), [x.float() for x in log_s], [x.float() for x in log_det_w])
                losses = {"loss": criterion(output)}
                result = backward_and_step(losses, model, optimizer, scaler, cfg.grad_clip, stop.requested,
                                           run.distributed)
                _advance(state, len(batches))
                _count_nonfinite(state, result)

                _log_step(run, cfg, state, result, bar, lr, started, float(batch.audio.numel()), "samples")
                if state.step % cfg.val_every == 0 and run.main and val_clips:
                    metrics = validate_waveglow(_unwrap(model), data, val_clips, cfg, run.device)
                    run.log({"split": "val", "step": state.step, **metrics})
                    log.info("step %d: val loss %.4f", state.step, metrics["loss"])
                path = _checkpoint_if_due(run, model, optimizer, scaler, state, cfg, data, result, path)
                if result.stop:
                    break
        if path is None:
            path = _save_checkpoint(run, model, optimizer, scaler, state, cfg, data)
    return path
