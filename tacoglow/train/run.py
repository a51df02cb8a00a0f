"""The machinery every training loop shares: the run (process group, device, run folder, log.jsonl,
TensorBoard), its counters, one optimisation step with mixed precision, stop signals and progress."""
from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import random
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple, Sequence, TextIO

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..data import Clip, bucket_batches
from ..errors import TacoglowError
from .config import RUN_FIELDS, TrainConfig, load_train_config

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["TrainingError", "TrainState", "Run", "open_run", "autocast", "grad_scaler", "StepResult",
           "backward_and_step", "set_learning_rate", "unwrap", "seed_everything", "StopSignals", "epoch_plan",
           "advance", "finished", "count_nonfinite", "nonfinite_error", "progress_bar", "log_step",
           "spread_by_length"]

log = logging.getLogger(__name__)


class TrainingError(TacoglowError, RuntimeError):
    """Training cannot go on; the message says where and what to do."""


@dataclass
class TrainState:
    step: int = 0  # batches consumed (optimizer updates plus skipped steps)
    epoch: int = 0
    batch_in_epoch: int = 0  # position in the epoch's batch list: batches already used
    nonfinite_total: int = 0
    nonfinite_in_a_row: int = 0


class Run:
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
        self._log_file: TextIO | None = None
        self.tensorboard: SummaryWriter | None = None
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

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _check_run_config(run: Run, cfg: TrainConfig, explicit: bool) -> TrainConfig:
    """Write config.json for a new run; on an existing run, use its config (run-length fields may change)."""
    path = run.dir / "config.json"
    if path.is_file():
        saved = TrainConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
        if explicit:
            changed = sorted(k for k, v in cfg.to_dict().items()
                             if k not in RUN_FIELDS and saved.to_dict()[k] != v)
            if changed:
                raise TrainingError(
                    f"{path}: this run was started with other settings ({', '.join(changed)} differ); resume it "
                    "without --config or with the same one, or start a new --run folder")
        runs = {k: getattr(cfg, k) for k in RUN_FIELDS} if explicit else {}
        cfg = dataclasses.replace(saved, **runs)
    run.barrier()
    if run.main:
        path.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    return cfg


def open_run(run_dir: str | os.PathLike, config: TrainConfig | str | os.PathLike | None, model_name: str, *,
             max_steps: int | None, threads: int | None, device: str | None,
             amp: str | None, **fields: Any) -> tuple[Run, TrainConfig]:
    """The run in ``run_dir`` and its config: ``config`` (with ``max_steps``, ``amp`` and any other given
    ``fields`` overriding it) for a new run, the run's own config.json (whose run-length fields ``config`` may
    change) for an existing one."""
    cfg = load_train_config(config, model_name)
    overrides: dict[str, Any] = {k: v for k, v in (("max_steps", max_steps), ("amp", amp), *fields.items())
                                 if v is not None}
    cfg = dataclasses.replace(cfg, **overrides)
    run = Run(run_dir, device, threads)
    try:
        cfg = _check_run_config(run, cfg, explicit=config is not None)
    except BaseException:
        run.close()
        raise
    cfg = dataclasses.replace(cfg, **overrides)
    return run, cfg


def autocast(run: Run, cfg: TrainConfig) -> contextlib.AbstractContextManager:
    """The forward pass's precision: fp32, or fp16/bf16 autocast (``cfg.amp``)."""
    if cfg.amp == "none":
        return contextlib.nullcontext()
    dtype = torch.float16 if cfg.amp == "fp16" else torch.bfloat16
    return torch.autocast(run.device.type, dtype=dtype)


def grad_scaler(run: Run, cfg: TrainConfig) -> torch.amp.GradScaler:
    """Loss scaling for fp16 (CUDA only); a disabled scaler, which passes everything through, otherwise."""
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


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


class StopSignals:
    """SIGINT/SIGTERM ask the loop to stop after the current step; a second SIGINT interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("%s received: finishing this step and saving a checkpoint", signal.Signals(signum).name)

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


class Step(NamedTuple):
    """One training step to take: its items and when it started."""

    items: list[int]  # indices of this step's training items
    epoch_batches: int  # batches in the current epoch, what `advance` moves through
    started: float  # time.perf_counter() at the start of the step (for the throughput in the log)


def steps(cfg: TrainConfig, state: TrainState, plan: Callable[[int], list[list[int]]]) -> Iterator[Step]:
    """The steps still to take, in order, until the run is finished; the loop body advances ``state``."""
    while not finished(cfg, state):
        started = time.perf_counter()
        batches = plan(state.epoch)
        yield Step(batches[state.batch_in_epoch], len(batches), started)


def epoch_plan(lengths: Sequence[int], cfg: TrainConfig, run: Run) -> Callable[[int], list[list[int]]]:
    """``plan(epoch)``: this process's batches of the training items (their ``lengths``; all equal for plain
    shuffling) for an epoch, bucketed by length, remembered for the current epoch; an epoch without a
    complete batch is refused."""
    cache: dict[int, list[list[int]]] = {}

    def batches(epoch: int) -> list[list[int]]:
        if epoch not in cache:
            cache.clear()
            cache[epoch] = bucket_batches(lengths, cfg.batch_size, cfg.seed, epoch, bucket_batches=cfg.bucket_batches,
                                          rank=run.rank, world_size=run.world_size)
            if not cache[epoch]:
                raise TrainingError("an epoch has no complete batch: the training set is smaller than "
                                    "batch_size x processes; lower batch_size")
        return cache[epoch]
    return batches


def advance(state: TrainState, batches_in_epoch: int) -> None:
    """One batch consumed: the step and the position in the epoch move on (into the next epoch at its end)."""
    state.step += 1
    state.batch_in_epoch += 1
    if state.batch_in_epoch >= batches_in_epoch:
        state.epoch += 1
        state.batch_in_epoch = 0


def finished(cfg: TrainConfig, state: TrainState) -> bool:
    """Whether the run has taken ``max_steps`` steps or ``epochs`` epochs."""
    return ((cfg.max_steps is not None and state.step >= cfg.max_steps)
            or (cfg.epochs is not None and state.epoch >= cfg.epochs))


def progress_bar(run: Run, cfg: TrainConfig, state: TrainState, steps_per_epoch: int, name: str):
    """A tqdm bar of the run's steps on rank 0 (hidden without a terminal)."""
    from tqdm import tqdm

    totals = [cfg.max_steps] if cfg.max_steps is not None else []
    if cfg.epochs is not None:
        totals.append(cfg.epochs * steps_per_epoch)
    return tqdm(total=min(totals), initial=state.step, desc=name, unit="step", dynamic_ncols=True,
                disable=None if run.main else True)


def count_nonfinite(state: TrainState, result: StepResult) -> None:
    """Count skipped steps; too many non-finite losses in a row end the run."""
    if result.skipped:
        state.nonfinite_total += 1
        state.nonfinite_in_a_row += 1
        log.warning("step %d: non-finite loss or gradient, update skipped (%d in a row)", state.step,
                    state.nonfinite_in_a_row)
    else:
        state.nonfinite_in_a_row = 0


def nonfinite_error(state: TrainState, path: Path) -> TrainingError:
    first = state.step - state.nonfinite_in_a_row + 1
    return TrainingError(
        f"stopped at step {state.step}: the loss or gradient was not finite for {state.nonfinite_in_a_row} steps "
        f"in a row (steps {first}-{state.step}); the last good weights are in {path}. Lower the learning "
        "rate, check the data, or resume from an earlier checkpoint")


def end_step(run: Run, cfg: TrainConfig, state: TrainState, step: Step, result: StepResult, bar: Any, lr: float,
             amount: float, unit: str) -> None:
    """A step taken: the state moves on, a non-finite loss is counted (too many end the run), and the step is
    logged (``amount``: this rank's mel frames or audio samples in it)."""
    advance(state, step.epoch_batches)
    count_nonfinite(state, result)
    log_step(run, cfg, state, result, bar, lr, step.started, amount, unit)


def log_step(run: Run, cfg: TrainConfig, state: TrainState, result: StepResult, bar: Any, lr: float,
             started: float, amount: float, unit: str) -> None:
    """Progress bar, and every ``log_every`` steps (or on a skipped step) a train line of the log;
    ``amount`` is this rank's mel frames or audio samples in the step."""
    bar.update(1)
    bar.set_postfix(loss=f"{result.stats['loss']:.4f}", refresh=False)
    if state.step % cfg.log_every == 0 or result.skipped:
        run.log(_train_record(result, state, lr, time.perf_counter() - started, amount * run.world_size, unit), bar)


def _train_record(result: StepResult, state: TrainState, lr: float, seconds: float, items: float,
                  unit: str) -> dict[str, Any]:
    return {"split": "train", "step": state.step, "epoch": state.epoch,
            **{k: round(v, 6) for k, v in result.stats.items()}, "grad_norm": round(result.grad_norm, 4),
            "lr": lr, "skipped": result.skipped, "nonfinite_total": state.nonfinite_total,
            "seconds_per_step": round(seconds, 4), f"{unit}_per_second": round(items / max(seconds, 1e-9), 1)}


def spread_by_length(clips: Sequence[Clip], n: int | None) -> list[Clip]:
    """Up to n clips evenly spaced over the clips sorted by length (short to long): a fixed validation set
    that spans the lengths."""
    ordered = sorted(clips, key=lambda c: (c.frames, c.id))
    if n is None or n >= len(ordered):
        return ordered
    return [ordered[round(k * (len(ordered) - 1) / max(n - 1, 1))] for k in range(n)]
