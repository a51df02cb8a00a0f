"""Attention targets from phone timings: where each decoder step of a clip should attend.

A corpus spoken by a synthesizer knows when each of its phones sounds (`recipes/slt/build_corpus.py` keeps
Festival's segments of every clip in `phone_timings.jsonl`). Instead of guiding attention towards the
diagonal, training can then guide each decoder step towards the input symbols of the phone it predicts
(`TrainConfig.attention_timings`).

A segment is `(phone, end_seconds, word)`: Festival's phone name, when it ends, and which word it belongs
to ("0" for a pause; equal names are the same word). Input symbols are mapped to segments word by word:

* the clip's words are the spoken words of the reading's ids (`tacoglow.text.words`), split at hyphens as
  Festival splits them, and must be as many as Festival's words, in order, or the clip gets no target;
* a word read as ARPAbet with as many phones as Festival's segments of it: each phone is its own segment's;
* any other word (spelled, or pronounced with another phone count): its symbols are spread evenly over the
  word's time, with one symbol of slack each side;
* a pause: the punctuation and spaces between the words it separates (before the first word, after the
  last).

A target is a band `(lo, hi)` of input positions per decoder step (the step's middle frame decides); the
prior of position n is exp(-d^2 / 2 sigma^2), d its distance from the band (`band_prior`), which the
guided-attention term (`tacoglow.train.losses.guided_attention_loss`) takes in place of the diagonal.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from ..text.symbols import FIRST_ARPABET_ID, SYMBOL_TO_ID
from ..text.words import spans_from_ids

__all__ = ["Segment", "festival_words", "attention_bands", "band_prior"]

Segment = tuple[str, float, str]  # (phone, end in seconds, word; "0" for a pause)

_Band = tuple[float, float, float, float, float, float]

PAUSE_WORD = "0"
_HYPHEN = SYMBOL_TO_ID["-"]


def festival_words(ids: Sequence[int]) -> list[tuple[int, int]]:
    """The [start, end) positions in ``ids`` of each word as Festival counts words: the spoken words of
    :func:`tacoglow.text.words.spans_from_ids`, with a hyphenated one ("forty-two") split at its hyphens."""
    spans = []
    for word in spans_from_ids(ids):
        start = word.start
        for n in range(word.start, word.end):
            if ids[n] == _HYPHEN:
                spans.append((start, n))
                start = n + 1
        spans.append((start, word.end))
    return spans


def _segment_bands(ids: Sequence[int], segments: Sequence[Segment]) -> list[_Band] | None:
    """Per segment: (start s, end s, lo, hi at its start, lo, hi at its end): the input positions it covers
    (a phone or a pause: the same at both ends; a spread word moves along its symbols). None when the words
    do not match."""
    spans = festival_words(ids)
    words: list[list[int]] = []  # segment indices of each Festival word, in order
    last_word = None
    for k, (_, _, word) in enumerate(segments):
        if word == PAUSE_WORD:
            last_word = None
            continue
        if word != last_word:
            words.append([])
            last_word = word
        words[-1].append(k)
    if len(words) != len(spans) or not spans:
        return None
    where: dict[int, tuple[int, int]] = {}  # segment index -> (word, index of the segment in its word)
    for w, members in enumerate(words):
        for j, k in enumerate(members):
            where[k] = (w, j)
    bands: list[_Band] = []
    start_time = 0.0
    words_before = 0  # words that ended before this segment
    for k, (_, end, word) in enumerate(segments):
        if word == PAUSE_WORD:
            lo = spans[words_before - 1][1] if words_before > 0 else 0
            hi = spans[words_before][0] - 1 if words_before < len(spans) else len(ids) - 1
            lo, hi = (lo, hi) if lo <= hi else (hi, lo)  # no symbol between: the two words' edges
            bands.append((start_time, end, float(lo), float(hi), float(lo), float(hi)))
        else:
            w, j = where[k]
            a, b = spans[w]
            members = words[w]
            if all(i >= FIRST_ARPABET_ID for i in ids[a:b]) and b - a == len(members):
                bands.append((start_time, end, float(a + j), float(a + j), float(a + j), float(a + j)))
            else:  # spread: the word's symbols over the word's time
                word_start = segments[members[0] - 1][1] if members[0] > 0 else 0.0
                word_end = segments[members[-1]][1]
                rate = (b - a) / max(word_end - word_start, 1e-6)  # symbols per second
                p0, p1 = a + rate * (start_time - word_start), a + rate * (end - word_start)
                bands.append((start_time, end, max(p0 - 1.0, a), min(p0 + 1.0, b - 1),
                              max(p1 - 1.0, a), min(p1 + 1.0, b - 1)))
            if j == len(words[w]) - 1:
                words_before = w + 1
        start_time = end
    return bands


def attention_bands(ids: Sequence[int], segments: Sequence[Segment], frames: int, frames_per_step: int,
                    seconds_per_frame: float) -> np.ndarray | None:
    """(steps, 2) float32 bands [lo, hi] of input positions for each of the ``ceil(frames / r)`` decoder steps
    of a clip read as ``ids``, from its segments; None when its words do not match Festival's."""
    if not segments:
        return None
    bands = _segment_bands(ids, segments)
    if bands is None:
        return None
    steps = -(-frames // frames_per_step)
    out = np.empty((steps, 2), dtype=np.float32)
    ends = np.array([b[1] for b in bands])
    for t in range(steps):
        # Mel frame k is centred at k hops; the step's middle frame stands for the step.
        time = (t * frames_per_step + (frames_per_step - 1) / 2) * seconds_per_frame
        k = min(int(np.searchsorted(ends, time, side="right")), len(bands) - 1)
        start, end, lo0, hi0, lo1, hi1 = bands[k]
        f = 0.0 if end <= start else min(max((time - start) / (end - start), 0.0), 1.0)
        out[t] = (lo0 + f * (lo1 - lo0), hi0 + f * (hi1 - hi0))
    return out


def band_prior(bands: Tensor, width: int, sigma: float) -> Tensor:
    """exp(-d^2 / 2 sigma^2) over (B, steps, width), d the distance of each input position from its step's band
    [lo, hi] (``bands``: (B, steps, 2), in positions; 1 inside the band; NaN where the band is NaN)."""
    n = torch.arange(width, device=bands.device, dtype=bands.dtype)[None, None, :]
    distance = (bands[..., :1] - n).clamp(min=0) + (n - bands[..., 1:]).clamp(min=0)
    return torch.exp(-distance ** 2 / (2 * sigma ** 2))
