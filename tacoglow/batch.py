"""Speaking a file of lines into a folder: one WAV per line, named by its line number and seeded per line.

The names and seeds are the contract of bulk synthesis (``tacoglow synthesize -i LINES -o DIR``): line n of
N is written to ``DIR/{n:04d}.wav`` (wider when N needs it) with seed ``seed + n - 1``, so a seeded run gives
the same file for a line however the lines are shared out.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from .audio import save_wav
from .errors import TacoglowError
from .subtitles import write_sidecar
from .synthesizer import Speech, Synthesizer

log = logging.getLogger(__name__)


def synthesize_text(synth: Synthesizer, text: str, seed: int | None = None, progress: bool = True) -> Speech:
    """``synth.synthesize`` with a progress bar for texts of several sentences, and a warning for each
    sentence cut at the decoding cap."""
    bars: list[tqdm] = []

    def report(done: int, total: int) -> None:
        if total < 2 or not progress:
            return
        if not bars:  # created on first use, so that an error before any audio stays one line
            bars.append(tqdm(total=total, desc="synthesizing", unit="sentence"))
        bars[0].update(done - bars[0].n)

    try:
        speech = synth.synthesize(text, seed=seed, progress=report)
    finally:
        for bar in bars:
            bar.close()
    for sentence in speech.sentences:
        if sentence.stopped_by == "cap":
            log.warning("%r was cut at the decoding cap", sentence.text[:50])
    return speech


def read_lines(path: str | os.PathLike) -> list[str]:
    """The non-empty lines of a UTF-8 text file, stripped; a TacoglowError names the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise TacoglowError(f"{path}: no such text file")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except UnicodeDecodeError as error:
        raise TacoglowError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    lines = [line for line in lines if line]
    if not lines:
        raise TacoglowError(f"{path}: has no text lines")
    return lines


def line_name(n: int, total: int) -> str:
    """File name of line ``n`` (1-based) of ``total``: zero-padded so that names sort in input order."""
    return f"{n:0{max(4, len(str(total)))}d}.wav"


def line_seed(seed: int | None, n: int) -> int | None:
    """Seed of line ``n`` (1-based) in a run seeded with ``seed``; None draws a fresh one."""
    return None if seed is None else seed + n - 1


def check_output_folder(out_dir: str | os.PathLike) -> Path:
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise TacoglowError(f"{out_dir}: with --input, -o must be a folder")
    return out_dir


def synthesize_lines(synth: Synthesizer, lines: list[str], out_dir: str | os.PathLike, seed: int | None = None,
                     progress: bool = True, sidecars: Sequence[str] = ()) -> list[Path]:
    """Speak each line into its own WAV in ``out_dir`` (created); returns the paths in input order.

    ``sidecars``: suffixes (".srt", ".vtt", ".json") of subtitle and timings files written beside each WAV, with
    its name (:func:`tacoglow.subtitles.write_sidecar`)."""
    out_dir = check_output_folder(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for n, line in enumerate(tqdm(lines, desc="synthesizing", unit="line", disable=not progress), start=1):
        speech = synth.synthesize(line, seed=line_seed(seed, n))
        paths.append(out_dir / line_name(n, len(lines)))
        save_wav(paths[-1], speech.audio, speech.sample_rate)
        for suffix in sidecars:
            write_sidecar(paths[-1].with_suffix(suffix), speech)
    log.info("wrote %d files to %s", len(lines), out_dir)
    return paths
