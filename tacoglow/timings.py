"""Word timings from Tacotron 2's attention: when each spoken word starts and ends in a sentence's audio.

Tacotron 2 makes ``n_frames_per_step`` (r) mel frames per decoder step, and each step attends over the input ids
(the alignment, (steps, ids)). The estimator, per sentence:

1. Per step, the attended input position: the attention-weighted mean of the id indices (``"mean"``, the
   default: it moves smoothly between neighbouring ids where the attention is shared) or the most attended id
   (``"argmax"``). Made monotonic by a running maximum, since speech never goes back over the text.
2. Step t's position is placed at the middle of its r frames, (t r + (r - 1) / 2) frames from the start: mel
   frame k is centred on audio sample k * hop_length (the STFT is centred), and a vocoder's audio keeps that
   alignment. Between two steps the position is interpolated linearly, so boundaries fall between step centres.
3. Input id i takes the time where the position is within half an id of i. A word covering ids [s, e) starts
   where the position reaches s - 1/2 and ends where it reaches e - 1/2, so spaces and punctuation (and the
   pauses spoken on them) lie between words. The first word starts no earlier than the audio; a word the
   position never leaves (the last one, when no punctuation follows it) ends with the audio.

Words the attention skips (the position jumps over them from one step to the next) get their share of the jump's
interpolated time: every word gets start <= end, and words never overlap or go back in time.

Times are in seconds: frames times ``seconds_per_frame`` (hop_length / sample_rate for audio as decoded). Audio
stretched in time (a speaking rate) scales the factor alike, so the timings follow the stretched audio.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from .text.words import WordSpan

__all__ = ["METHODS", "WordTiming", "attended_positions", "shift_words", "word_timings"]

METHODS = ("mean", "argmax")


@dataclass(frozen=True)
class WordTiming:
    """A spoken word and where it is in the audio, in seconds."""

    text: str
    start: float
    end: float


def attended_positions(alignment: torch.Tensor | np.ndarray, method: str = "mean") -> np.ndarray:
    """alignment (steps, ids) -> the attended input position per step, (steps,) float64, non-decreasing.

    A step whose weights are all zero (e.g. padding) keeps the position of the step before it.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    weights = np.asarray(alignment.detach().float().cpu() if isinstance(alignment, torch.Tensor) else alignment,
                         dtype=np.float64)
    if weights.ndim != 2:
        raise ValueError(f"alignment must be (steps, ids), got shape {weights.shape}")
    if weights.shape[0] == 0:
        return np.zeros(0)
    weights = np.clip(np.nan_to_num(weights), 0.0, None)
    totals = weights.sum(axis=1)
    if method == "argmax":
        positions = weights.argmax(axis=1).astype(np.float64)
    else:
        positions = weights @ np.arange(weights.shape[1], dtype=np.float64) / np.where(totals > 0, totals, 1.0)
    positions[totals <= 0] = -np.inf  # taken from the step before by the running maximum
    positions = np.maximum.accumulate(positions)
    positions[np.isneginf(positions)] = 0.0
    return positions


def _crossings(positions: np.ndarray, centres: np.ndarray, levels: np.ndarray, end: float) -> np.ndarray:
    """For each level, the time where the (non-decreasing, piecewise linear) position reaches it; ``end`` where
    it never does, 0 where it already has at the first step."""
    times = np.full(len(levels), end, dtype=np.float64)
    t = np.searchsorted(positions, levels, side="left")  # first step at or past the level
    for k, (step, level) in enumerate(zip(t, levels)):
        if step >= len(positions):
            continue
        if step == 0:
            times[k] = 0.0
            continue
        p0, p1 = positions[step - 1], positions[step]
        c0, c1 = centres[step - 1], centres[step]
        times[k] = c0 + (c1 - c0) * (level - p0) / (p1 - p0)  # p0 < level <= p1
    return times


def word_timings(alignment: torch.Tensor | np.ndarray, spans: Sequence[WordSpan], *, frames_per_step: int,
                 seconds_per_frame: float, duration: float | None = None, method: str = "mean") -> list[WordTiming]:
    """One sentence's words, in seconds from the start of its audio (see the module's notes).

    Args:
        alignment: (steps, ids) attention weights of the sentence's decoder steps (a gate-stopped sentence's
            stop step may be included: it lies past the audio and changes nothing).
        spans: the sentence's words (:func:`tacoglow.text.words.word_spans`), indices into the alignment's ids.
        frames_per_step: the model's ``n_frames_per_step``.
        seconds_per_frame: how long one decoded mel frame lasts in the audio: hop_length / sample_rate, times
            the stretch factor when the mel was stretched in time before vocoding.
        duration: the audio's length in seconds; times are clipped to it. Default: steps x frames_per_step
            frames.
        method: "mean" (attention-weighted mean position) or "argmax" (most attended id).
    """
    if frames_per_step < 1 or seconds_per_frame < 0:
        raise ValueError(f"need frames_per_step >= 1 and seconds_per_frame >= 0, got {frames_per_step} and "
                         f"{seconds_per_frame}")
    positions = attended_positions(alignment, method)
    steps = len(positions)
    end = steps * frames_per_step * seconds_per_frame if duration is None else float(duration)
    if not spans:
        return []
    if spans[-1].end > alignment.shape[1]:
        raise ValueError(f"word {spans[-1].text!r} ends at id {spans[-1].end}, past the alignment's "
                         f"{alignment.shape[1]} ids")
    if steps == 0:
        return [WordTiming(w.text, 0.0, 0.0) for w in spans]
    centres = (np.arange(steps) * frames_per_step + (frames_per_step - 1) / 2) * seconds_per_frame
    levels = np.array([[w.start - 0.5, w.end - 0.5] for w in spans], dtype=np.float64).ravel()
    times = np.clip(_crossings(positions, centres, levels, end), 0.0, end)
    times = np.maximum.accumulate(times)  # already ordered; guards against rounding at equal levels
    return [WordTiming(w.text, float(times[2 * k]), float(times[2 * k + 1])) for k, w in enumerate(spans)]


def shift_words(words: Iterable[WordTiming], offset: float) -> list[WordTiming]:
    """``words`` moved ``offset`` seconds later (a sentence's words placed in the joined audio)."""
    return [WordTiming(w.text, w.start + offset, w.end + offset) for w in words]
