"""Text cleaners, output-identical to NVIDIA's reference front-end.

The published Tacotron 2 checkpoints learned the exact strings these functions produce,
mistakes included ("£" vanishes in transliteration before the pound rule can see it,
"$1,234" is read like a year). Better readings belong in ``normalize.normalize_text``,
which runs before the cleaners; do not "fix" anything here.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from ..errors import TacoglowError
from .numbers import normalize_numbers
from .transliteration import to_ascii


class TextError(TacoglowError, ValueError):
    """Text the front-end refuses (empty, nothing speakable, an unknown cleaner, an unreadable lexicon)."""


_WHITESPACE_RE = re.compile(r"\s+")

# Applied in this order; the reference matches them case-insensitively at a word start.
_ABBREVIATIONS = [
    (re.compile(rf"\b{abbreviation}\.", re.IGNORECASE), expansion)
    for abbreviation, expansion in [
        ("mrs", "misess"),
        ("mr", "mister"),
        ("dr", "doctor"),
        ("st", "saint"),
        ("co", "company"),
        ("jr", "junior"),
        ("maj", "major"),
        ("gen", "general"),
        ("drs", "doctors"),
        ("rev", "reverend"),
        ("lt", "lieutenant"),
        ("hon", "honorable"),
        ("sgt", "sergeant"),
        ("capt", "captain"),
        ("esq", "esquire"),
        ("ltd", "limited"),
        ("col", "colonel"),
        ("ft", "fort"),
    ]
]


def expand_abbreviations(text: str) -> str:
    """"Dr. Who" -> "doctor Who" (the reference's 18 English abbreviations)."""
    if "." not in text:
        return text
    for pattern, expansion in _ABBREVIATIONS:
        text = pattern.sub(expansion, text)
    return text


def collapse_whitespace(text: str) -> str:
    """Replace each run of whitespace with one space; like the reference, do not strip."""
    return _WHITESPACE_RE.sub(" ", text)


def basic_cleaners(text: str) -> str:
    """Lowercase and collapse whitespace; non-ASCII is left for the symbol table to drop."""
    return collapse_whitespace(text.lower())


def transliteration_cleaners(text: str) -> str:
    """Transliterate to ASCII, lowercase and collapse whitespace."""
    return collapse_whitespace(to_ascii(text).lower())


def english_cleaners(text: str) -> str:
    """The reference pipeline for English: ASCII, lowercase, numbers, abbreviations, spaces."""
    text = to_ascii(text).lower()
    text = normalize_numbers(text)
    text = expand_abbreviations(text)
    return collapse_whitespace(text)


CLEANERS: dict[str, Callable[[str], str]] = {
    "english_cleaners": english_cleaners,
    "basic_cleaners": basic_cleaners,
    "transliteration_cleaners": transliteration_cleaners,
}


def cleaner_functions(cleaners: str | Sequence[str]) -> tuple[Callable[[str], str], ...]:
    """The cleaner functions named by ``cleaners`` (one name or several, applied in order)."""
    names = (cleaners,) if isinstance(cleaners, str) else tuple(cleaners)
    functions = []
    for name in names:
        if name not in CLEANERS:
            raise TextError(f"unknown cleaner {name!r}; valid cleaners: {', '.join(sorted(CLEANERS))}")
        functions.append(CLEANERS[name])
    return tuple(functions)
