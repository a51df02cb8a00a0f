"""Bulk synthesis on a Ray cluster: a file of lines into a folder of WAVs, spoken by a Ray Data job whose actors
each load the voice once (``tacoglow synthesize -i LINES -o DIR --ray [ADDRESS]``).

The files are the single-machine path's (:mod:`tacoglow.batch`): line n of N goes to ``line_name(n, N)`` with seed
``line_seed(seed, n)``, so a seeded line gives the same bytes on any actor, in any order. A file is written under a
temporary name in the same folder and renamed into place (atomic on POSIX file systems), so a WAV under its final
name is whole; a run over a folder that already holds some of them speaks only the others (resume). A file that a
crash or another program left cut short is caught by :func:`wav_is_complete` and spoken again.

Ray is imported inside the functions (:func:`import_ray`): importing tacoglow never needs it.
"""
from __future__ import annotations

import logging
import os
import re
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from .audio import wav_bytes
from .batch import check_output_folder, line_name, line_seed
from .errors import TacoglowError
from .ssml import is_ssml
from .synthesizer import Synthesizer

log = logging.getLogger(__name__)

INSTALL = "pip install 'tacoglow[cluster]'"
PART = ".part"  # suffix of a file being written: ".{name}.{random}.part"


def import_ray(feature: str = "--ray") -> Any:
    """The ``ray`` module with its Serve and Data libraries; a one-line TacoglowError naming the pip command
    when they are not installed."""
    try:
        import ray
        import ray.data  # noqa: F401  (the libraries are imported here so that a missing one fails here)
        import ray.serve  # noqa: F401
    except ImportError as error:
        missing = f" ({error.name} is not installed)" if error.name else ""
        raise TacoglowError(f"{feature} needs Ray{missing}: {INSTALL}") from None
    return ray


def connect(address: str | None) -> bool:
    """Join the cluster at ``address``, or start one on this machine when it is None; nothing when this process
    already has one. Returns whether this call connected (then the caller disconnects at its end)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    try:
        ray.init(address=address or None, logging_level=logging.WARNING)
    except ConnectionError as error:
        raise TacoglowError(f"cannot join the Ray cluster at {address}: {str(error).splitlines()[0]}; "
                            "start one with 'ray start --head', or leave the address out to start one here") from None
    return True


def error_cause(text: str) -> str:
    """The reason in a traceback that Ray hands back as text: its last ``SomeError: message`` line (the message alone
    for tacoglow's own errors, which say what to do), else its first line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    raised = [line for line in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception): ", line)]
    if not raised:
        return lines[0] if lines else "no reason given"
    name, _, message = raised[-1].partition(": ")
    return message if name.startswith("tacoglow.") else raised[-1]


# ---------------------------------------------------------------------------------------------------------
# Whole files only
# ---------------------------------------------------------------------------------------------------------

def wav_is_complete(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a whole RIFF/WAVE file: its RIFF size is the file's, and its chunks, a ``data`` chunk
    among them, fill the file exactly (a file cut short, or one still being written in place, fails)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
                return False
            if int.from_bytes(head[4:8], "little") + 8 != size:
                return False
            position, has_data = 12, False
            while position + 8 <= size:
                f.seek(position)
                chunk = f.read(8)
                length = int.from_bytes(chunk[4:], "little")
                has_data |= chunk[:4] == b"data"
                position += 8 + length + (length & 1)  # chunks are padded to an even length
            return has_data and position in (size, size + 1)  # a last odd chunk may omit its pad byte
    except OSError:
        return False


def write_wav_atomically(path: Path, audio: torch.Tensor | np.ndarray, sampling_rate: int) -> None:
    """Write the WAV to a temporary name beside ``path``, flush it to disk, then rename it to ``path``."""
    part = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}{PART}")
    try:
        with open(part, "wb") as f:
            f.write(wav_bytes(audio, sampling_rate))
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
    finally:
        part.unlink(missing_ok=True)


def remaining_lines(total: int, out_dir: Path) -> tuple[list[int], list[int]]:
    """The line numbers (1-based) of ``total`` lines whose WAV in ``out_dir`` is missing or not whole, and those
    whose WAV is whole."""
    todo: list[int] = []
    done: list[int] = []
    for n in range(1, total + 1):
        (done if wav_is_complete(out_dir / line_name(n, total)) else todo).append(n)
    return todo, done


# ---------------------------------------------------------------------------------------------------------
# The job
# ---------------------------------------------------------------------------------------------------------

class LineSpeaker:
    """A Ray Data actor: loads the voice once, then speaks each batch of ``{"n", "text"}`` rows into its files."""

    def __init__(self, synthesizer: Callable[[], Synthesizer], out_dir: str, total: int, seed: int | None,
                 threads: int):
        torch.set_num_threads(threads)
        self.synth, self.out_dir, self.total, self.seed = synthesizer(), Path(out_dir), total, seed

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        seconds = []
        for n, text in zip(batch["n"].tolist(), batch["text"].tolist()):
            # as synthesize_lines: a line that starts with <speak> is SSML
            speech = self.synth.synthesize(text, seed=line_seed(self.seed, n), ssml=is_ssml(text))
            write_wav_atomically(self.out_dir / line_name(n, self.total), speech.audio, speech.sample_rate)
            seconds.append(speech.duration)
        return {"n": batch["n"], "seconds": np.asarray(seconds)}


@dataclass
class BulkReport:
    """What a bulk run did: every line's file (input order), the lines it spoke and those already whole."""

    paths: list[Path]
    written: list[int] = field(default_factory=list)  # line numbers, 1-based, in the order they finished
    skipped: list[int] = field(default_factory=list)
    audio_seconds: float = 0.0


def synthesize_lines_on_ray(synthesizer: Callable[[], Synthesizer], lines: list[str], out_dir: str | os.PathLike,
                            *, seed: int | None = None, address: str | None = None, actors: int | None = None,
                            threads: int = 1, progress: bool = True) -> BulkReport:
    """Speak each line into its own WAV in ``out_dir`` (created) on a Ray cluster; the files equal
    :func:`tacoglow.batch.synthesize_lines`'s.

    ``synthesizer`` loads the voice on each actor: it is pickled to the cluster, so it must be a module-level
    function or a ``functools.partial`` of one (e.g. of ``Synthesizer.from_checkpoints``) whose files every node
    can read. ``address``: a running cluster's (``ray start --head`` prints it); None starts one on this machine,
    or uses the one this process has. ``actors``: how many actors speak, each with ``threads`` torch threads and as
    many Ray CPUs (default: as many as the cluster's CPUs allow, at most one per line). Lines whose WAV is already
    whole are skipped.
    """
    out_dir = check_output_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = len(lines)
    report = BulkReport([out_dir / line_name(n, total) for n in range(1, total + 1)])
    for stale in out_dir.glob(f".*{PART}"):  # left by a run that was killed while writing
        stale.unlink(missing_ok=True)
    todo, report.skipped = remaining_lines(total, out_dir)
    if report.skipped and progress:
        print(f"{len(report.skipped)} of {total} files already written in {out_dir}; speaking the other {len(todo)}",
              file=sys.stderr)
    if not todo:
        return report
    ray = import_ray()
    if (actors is not None and actors < 1) or threads < 1:
        raise TacoglowError(f"actors ({actors}) and threads ({threads}) must be at least 1")
    connected = connect(address)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # this job's own bar counts lines
        context.print_on_execution_start = False
        if actors is None:
            actors = max(1, min(len(todo), int(ray.cluster_resources().get("CPU", 1) // threads)))
        rows = ray.data.from_items([{"n": n, "text": lines[n - 1]} for n in todo])
        pool = ray.data.ActorPoolStrategy(size=actors)  # each actor loads the voice once, then speaks line after line
        spoken = rows.map_batches(LineSpeaker, batch_size=1, compute=pool, num_cpus=threads,
                                  fn_constructor_kwargs=dict(synthesizer=synthesizer, out_dir=str(out_dir),
                                                             total=total, seed=seed, threads=threads))
        with tqdm(total=len(todo), desc="synthesizing", unit="line", disable=not progress) as bar:
            for row in spoken.iter_rows():
                report.written.append(int(row["n"]))
                report.audio_seconds += float(row["seconds"])
                bar.update(1)
    except ray.exceptions.RayError as error:  # e.g. the voice failed to load on an actor: its reason, in a line
        raise TacoglowError(f"the Ray job stopped after {len(report.written)} of {len(todo)} lines: "
                            f"{error_cause(str(error))}") from None
    finally:
        if connected:
            ray.shutdown()
    log.info("wrote %d files to %s on %d actors", len(report.written), out_dir, actors)
    return report
