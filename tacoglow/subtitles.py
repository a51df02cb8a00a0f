"""Subtitles (SRT, WebVTT) and a JSON timings document from the word timings of a :class:`~tacoglow.Speech`.

Subtitles show the text as written, not as spoken: "Dr. Smith paid $42." rather than "doctor smith paid
forty-two dollars". Each written word (a run of non-space characters) takes the times of the spoken words it
became (:func:`written_words`: "$42" gets the times of "forty-two dollars"). Cues follow subtitle practice: a cue
never spans two sentences and holds at most two lines of at most 42 characters (a longer sentence is cut into
several cues at word boundaries; a single word longer than a line gets a line of its own); it lasts from its
first spoken word's start to its last one's end. WebVTT cues also carry each word's start as a cue timestamp
(``<00:00:01.250>``), which players use to highlight the word being spoken; SRT has no such thing.

The JSON document (:func:`timings_document`) lists the sentences with their text, start and end, each with its
spoken words (as the front-end reads them: lower case, numbers in words). Times are in seconds from the start of
the audio, rounded to the millisecond in every format.
"""
from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from .errors import TacoglowError
from .synthesizer import Speech
from .text import TextError
from .text.words import word_spans
from .timings import WordTiming

__all__ = ["SIDECAR_SUFFIXES", "SUBTITLE_FORMATS", "Cue", "SubtitleError", "cues", "line_sidecars", "sidecar_kind",
           "srt", "timings_document", "webvtt", "write_sidecar", "written_words"]

SUBTITLE_FORMATS = ("srt", "vtt")
SIDECAR_SUFFIXES = (".srt", ".vtt", ".json")
MAX_LINE = 42  # characters per line, the common broadcast and streaming limit
MAX_LINES = 2
TIMINGS_FORMAT = "tacoglow-timings"


class SubtitleError(TacoglowError, ValueError):
    """A subtitle or timings file that cannot be written as asked (an unknown format, a bad layout)."""


@dataclass(frozen=True)
class Cue:
    """One subtitle: its lines, shown from ``start`` to ``end`` (seconds), and its written words with times."""

    start: float
    end: float
    lines: tuple[str, ...]
    words: tuple[WordTiming, ...]
    max_line: int = MAX_LINE  # how the words were broken into lines

    def word_lines(self) -> list[list[WordTiming]]:
        """``words`` in the cue's ``lines``."""
        return _lines(self.words, self.max_line)


# ---------------------------------------------------------------- written words
def _reading(token: str) -> list[str]:
    """The spoken words of one written word read alone by the default front-end ("$5" -> five, dollars)."""
    try:
        return [span.text for span in word_spans(token)]
    except TextError:  # nothing speakable ("--", "&")
        return []


def written_words(text: str, spoken: Sequence[WordTiming]) -> list[WordTiming]:
    """The words of ``text`` as written (runs of non-space characters), each timed by the spoken words it became.

    ``spoken`` are the words the front-end read from ``text`` (display texts, e.g. "forty-two"). Each written word
    is read alone ("$42" -> "forty-two dollars"), and these readings, in order, are aligned with the spoken words
    by ``difflib``, word for word; a written word takes the span of the spoken words aligned with its reading, or
    standing where it stands where the two differ (a reading that depends on the next word: "5 km"). A written
    word that became nothing spoken ("--", "&") takes the end of the word before it (the start of the one after
    it when it comes first). Text with no word falls back to the spoken words themselves.
    """
    tokens = re.findall(r"\S+", text)
    if not tokens or not spoken:
        return list(spoken) if not tokens else [WordTiming(token, 0.0, 0.0) for token in tokens]
    read, owner = [], []  # the readings joined, and the written word each reading word comes from
    for t, token in enumerate(tokens):
        words = _reading(token)
        read += words
        owner += [t] * len(words)
    links: list[set[int]] = [set() for _ in tokens]
    matcher = difflib.SequenceMatcher(None, [w.text for w in spoken], read, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2)):
                links[owner[j]].add(i)
        elif i2 > i1:  # spoken words read differently, or not read at all: the written words standing there
            where = set(owner[j1:j2]) or {owner[j1 - 1] if j1 > 0 else 0}
            for t in where:
                links[t].update(range(i1, i2))
    result: list[WordTiming] = []
    for t, token in enumerate(tokens):
        if links[t]:
            start, end = min(spoken[k].start for k in links[t]), max(spoken[k].end for k in links[t])
            if result and start < result[-1].end:  # links crossed: keep the words in order
                start, end = result[-1].end, max(end, result[-1].end)
        else:  # nothing spoken: a point in time next to its neighbour
            after = next((min(spoken[k].start for k in links[u]) for u in range(t + 1, len(tokens)) if links[u]),
                         0.0)
            start = end = result[-1].end if result else after
        result.append(WordTiming(token, start, end))
    return result


# ---------------------------------------------------------------- cues
def _lines(words: Sequence[WordTiming], max_line: int) -> list[list[WordTiming]]:
    """Words filled greedily into lines of at most ``max_line`` characters (a longer word alone on its line)."""
    lines: list[list[WordTiming]] = []
    width = 0
    for word in words:
        if lines and width + 1 + len(word.text) <= max_line:
            lines[-1].append(word)
            width += 1 + len(word.text)
        else:
            lines.append([word])
            width = len(word.text)
    return lines


def _sentence_cues(words: list[WordTiming], max_line: int, max_lines: int) -> list[Cue]:
    groups: list[list[WordTiming]] = []
    for word in words:
        if groups and len(_lines(groups[-1] + [word], max_line)) <= max_lines:
            groups[-1].append(word)
        else:
            groups.append([word])
    return [Cue(group[0].start, group[-1].end,
                tuple(" ".join(w.text for w in line) for line in _lines(group, max_line)), tuple(group), max_line)
            for group in groups]


def cues(speech: Speech, max_line: int = MAX_LINE, max_lines: int = MAX_LINES) -> list[Cue]:
    """The subtitles of ``speech``: sentence by sentence, at most ``max_lines`` lines of ``max_line`` characters."""
    if max_line < 1 or max_lines < 1:
        raise SubtitleError(f"a cue needs at least one line of one character, got max_line={max_line}, "
                            f"max_lines={max_lines}")
    result: list[Cue] = []
    for sentence, spoken in zip(speech.sentences, speech.sentence_words()):
        result += _sentence_cues(written_words(sentence.text, spoken), max_line, max_lines)
    return result


# ---------------------------------------------------------------- formats
def _clock(seconds: float, mark: str) -> str:
    ms = max(0, round(seconds * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{mark}{ms % 1000:03d}"


def srt(items: Sequence[Cue]) -> str:
    """SubRip text: numbered cues, ``HH:MM:SS,mmm`` times."""
    return "".join(f"{n}\n{_clock(c.start, ',')} --> {_clock(c.end, ',')}\n" + "\n".join(c.lines) + "\n\n"
                   for n, c in enumerate(items, start=1))


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _timed_lines(cue: Cue) -> list[str]:
    """The cue's lines with a cue timestamp before each word that starts strictly inside the cue, in order."""
    lines, at, end = [], round(cue.start * 1000), round(cue.end * 1000)
    for line in cue.word_lines():
        pieces = []
        for word in line:
            start = round(word.start * 1000)
            if at < start < end:
                pieces.append(f"<{_clock(word.start, '.')}>{_escape(word.text)}")
                at = start
            else:
                pieces.append(_escape(word.text))
        lines.append(" ".join(pieces))
    return lines


def webvtt(items: Sequence[Cue], word_timestamps: bool = True) -> str:
    """WebVTT text; ``word_timestamps`` puts each word's start in its cue (karaoke-style highlighting)."""
    blocks = ["WEBVTT\n"]
    for c in items:
        lines = _timed_lines(c) if word_timestamps else [_escape(line) for line in c.lines]
        blocks.append(f"{_clock(c.start, '.')} --> {_clock(c.end, '.')}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def _seconds(value: float) -> float:
    return round(value, 3)


def timings_document(speech: Speech) -> dict[str, Any]:
    """The sentences of ``speech`` with their text, start, end and spoken words (seconds, to the millisecond)."""
    sentences = []
    for sentence, start, words in zip(speech.sentences, speech.starts, speech.sentence_words()):
        begin = start / speech.sample_rate
        length = 0 if sentence.audio is None else sentence.audio.numel()
        sentences.append({"text": sentence.text, "start": _seconds(begin),
                          "end": _seconds(begin + length / speech.sample_rate),
                          "words": [{"text": w.text, "start": _seconds(w.start), "end": _seconds(w.end)}
                                    for w in words]})
    return {"format": TIMINGS_FORMAT, "version": 1, "sample_rate": speech.sample_rate,
            "duration": _seconds(speech.duration), "seed": speech.seed, "sentences": sentences}


# ---------------------------------------------------------------- files
def sidecar_kind(path: str | os.PathLike, allowed: Sequence[str] = SIDECAR_SUFFIXES) -> str:
    """The suffix of ``path`` (".srt", ".vtt" or ".json") when it is one of ``allowed``; SubtitleError otherwise."""
    suffix = Path(path).suffix.lower()
    if suffix not in allowed:
        raise SubtitleError(f"{path}: the file name must end in {' or '.join(allowed)} (that names the format)")
    return suffix


def line_sidecars(subtitles: str | None = None, timings: str | None = None) -> list[str]:
    """The suffixes of the files written beside each WAV of a file of lines: ``subtitles`` names a subtitle
    format ("srt" or "vtt"), ``timings`` is "json"; SubtitleError for anything else (such as a file name)."""
    suffixes = []
    for value, allowed, flag in ((subtitles, (".srt", ".vtt"), "subtitles"), (timings, (".json",), "timings")):
        if value is None:
            continue
        suffix = "." + value.lower().lstrip(".")
        if suffix not in allowed:
            raise SubtitleError(f"with a file of lines, {flag} takes the format ({' or '.join(a[1:] for a in allowed)})"
                                f", not {value!r}: each line's file is written beside its WAV, with the same name")
        suffixes.append(suffix)
    return suffixes


def write_sidecar(path: str | os.PathLike, speech: Speech) -> Path:
    """Write subtitles (.srt, .vtt) or the timings document (.json) of ``speech``; the suffix names the format."""
    path = Path(path)
    kind = sidecar_kind(path)
    if kind == ".json":
        text = json.dumps(timings_document(speech), indent=1, ensure_ascii=False) + "\n"
    else:
        text = srt(cues(speech)) if kind == ".srt" else webvtt(cues(speech))
    path.write_text(text, encoding="utf-8")
    return path
