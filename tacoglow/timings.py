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
   where the position reaches s - 1/2 and ends where it reaches e - 1/2, so punctuation (and the pause spoken on
   it) lies between words; the one space between two words is shared: both meet where the position reaches
   the space (Festival's words, measured below, follow each other without a gap where there is no pause). A
   word the position never leaves (the last one, with no punctuation after it) ends with the audio.
4. With the sentence's mel (``mel``), silences refine the boundaries: frames more than ``top_db`` (40) dB below
   the loudest are quiet. The attention rests on the first id through leading silence and on the last through
   trailing silence, so the first word starts after leading silence and the last ends before trailing
   silence. A pause of at least ``min_pause_frames`` (8, 93 ms at 22050 Hz) quiet frames within 6 frames of a
   boundary between two words becomes that boundary: the word before ends where the pause begins, the next
   starts where it ends (the attention moves onto the next word during a pause, and Festival's voice pauses
   at phrase breaks with no punctuation too). A silence runs from its first quiet frame's centre to its last's.

Words the attention skips (the position jumps over them from one step to the next) get their share of the jump's
interpolated time: every word gets start <= end, and words never overlap or go back in time.

Measured against the word boundaries of the Festival voice the default voice learned from (teacher-forced, 112
held-out phrases, 1,188 words; ``benchmarks/timings.py``, table in benchmarks/README.md): median absolute boundary
error 9.4 ms, 95th percentile 43.8 ms (the attention alone: 10.0 and 162 ms; a decoder step is 34.8 ms). The
constants above were chosen on the phrases after the 60th; on the first 60: 9.1 and 46.5 ms.

Times are in seconds: frames times ``seconds_per_frame`` (hop_length / sample_rate for audio as decoded). Audio
stretched in time (a speaking rate) scales the factor alike, so the timings follow the stretched audio.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np
import torch

from .text.words import WordSpan

__all__ = ["METHODS", "WordTiming", "attended_positions", "frame_levels", "shift_words", "silent_runs",
           "word_timings"]

METHODS = ("mean", "argmax")
_NEAR_FRAMES = 6  # a pause this close to a word boundary (in mel frames, 70 ms at 22050 Hz) is that boundary's


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


def frame_levels(mel: torch.Tensor | np.ndarray) -> np.ndarray:
    """mel (n_mel, frames) natural-log magnitudes -> each frame's level in dB below the loudest frame, (frames,)
    <= 0. A frame's level is its summed mel magnitude."""
    logs = np.asarray(mel.detach().float().cpu() if isinstance(mel, torch.Tensor) else mel, dtype=np.float64)
    if logs.ndim != 2:
        raise ValueError(f"mel must be (n_mel, frames), got shape {logs.shape}")
    if logs.shape[1] == 0:
        return np.zeros(0)
    peak = logs.max(axis=0)
    level = 20 / np.log(10) * (peak + np.log(np.exp(logs - peak).sum(axis=0)))
    return level - level.max()


def silent_runs(levels: np.ndarray, top_db: float) -> list[tuple[int, int]]:
    """[first, last] frames of each run of frames more than ``top_db`` dB below the loudest, in order."""
    quiet = np.concatenate([[False], levels < -top_db, [False]])
    edges = np.flatnonzero(quiet[1:] != quiet[:-1])  # run starts, then one past run ends, alternating
    return [(int(a), int(b) - 1) for a, b in zip(edges[0::2], edges[1::2])]


def _snap_to_silence(times: np.ndarray, levels: np.ndarray, top_db: float, min_pause_frames: int,
                     seconds_per_frame: float, end: float) -> np.ndarray:
    """[start_0, end_0, start_1, ...] moved onto the mel's silences (``levels``: :func:`frame_levels`; frames of
    ``seconds_per_frame``). A silence lasts from its first quiet frame's centre to its last's."""
    times = times.copy()
    frames = len(levels)
    runs = silent_runs(levels, top_db)
    if not runs:
        return times
    if runs[0][0] == 0:  # leading silence: the first word starts after it
        times[0] = min(max(times[0], min(runs[0][1] * seconds_per_frame, end)), times[1])
    if runs[-1][1] == frames - 1:  # trailing silence: the last word ends before it
        times[-1] = max(min(times[-1], runs[-1][0] * seconds_per_frame), times[-2])
    # Each pause inside the sentence goes to the word boundary nearest to it, if one is within _NEAR_FRAMES;
    # a boundary near several keeps the longest.
    chosen: dict[int, tuple[int, int]] = {}
    for first, last in runs:
        if first == 0 or last == frames - 1 or last - first + 1 < min_pause_frames or len(times) < 4:
            continue
        a, b = first * seconds_per_frame, last * seconds_per_frame
        distance = [max(times[k] - b, a - times[k + 1], 0.0) for k in range(1, len(times) - 1, 2)]
        k = int(np.argmin(distance))
        if distance[k] <= _NEAR_FRAMES * seconds_per_frame and (
                k not in chosen or last - first > chosen[k][1] - chosen[k][0]):
            chosen[k] = (first, last)
    for k, (first, last) in chosen.items():  # word k ends where the pause begins, word k + 1 starts where it ends
        i = 2 * k + 1
        times[i] = min(max(first * seconds_per_frame, times[i - 1]), times[i + 2])
        times[i + 1] = max(min(last * seconds_per_frame, times[i + 2]), times[i])
    return times


def _levels(spans: Sequence[WordSpan]) -> list[float]:
    """The input positions where each word starts and ends: [start_0, end_0, start_1, end_1, ...]."""
    levels = [spans[0].start - 0.5]
    for word, following in zip(spans, spans[1:]):
        gap = following.start - word.end
        if gap == 1:  # one space: the words follow each other, the space's time is split between them
            levels += [word.end, word.end]
        else:
            levels += [word.end - 0.5, following.start - 0.5]
    return levels + [spans[-1].end - 0.5]


def word_timings(alignment: torch.Tensor | np.ndarray, spans: Sequence[WordSpan], *, frames_per_step: int,
                 seconds_per_frame: float, duration: float | None = None, method: str = "mean",
                 mel: torch.Tensor | np.ndarray | None = None, mel_seconds_per_frame: float | None = None,
                 top_db: float = 40.0, min_pause_frames: int = 8) -> list[WordTiming]:
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
        mel: the sentence's mel (n_mel, frames), optional: its silences (frames more than ``top_db`` dB below
            its loudest) refine the boundaries. Leading and trailing silence belong to no word, and a pause of
            at least ``min_pause_frames`` frames next to a boundary between two words separates them.
        mel_seconds_per_frame: how long one of ``mel``'s frames lasts (default ``seconds_per_frame``; another
            value when the mel given was stretched in time).
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
    levels = np.array(_levels(spans), dtype=np.float64)
    times = np.clip(_crossings(positions, centres, levels, end), 0.0, end)
    times = np.maximum.accumulate(times)  # already ordered; guards against rounding at equal levels
    if mel is not None:
        mel_spf = seconds_per_frame if mel_seconds_per_frame is None else mel_seconds_per_frame
        times = _snap_to_silence(times, frame_levels(mel), top_db, min_pause_frames, mel_spf, end)
    return [WordTiming(w.text, float(times[2 * k]), float(times[2 * k + 1])) for k, w in enumerate(spans)]


def shift_words(words: Iterable[WordTiming], offset: float) -> list[WordTiming]:
    """``words`` moved ``offset`` seconds later (a sentence's words placed in the joined audio)."""
    return [WordTiming(w.text, w.start + offset, w.end + offset) for w in words]
