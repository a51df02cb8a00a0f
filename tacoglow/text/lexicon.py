"""Pronunciations: words to ARPAbet from the packaged lexicon, for voices that read phones.

NVIDIA's front-end already reads ARPAbet in curly braces ("{HH AH0 L OW1} world"). A voice trained with
some of its words replaced by their lexicon pronunciations (``p_arpabet`` in ``tacoglow.train``, as in
NVIDIA's later Flowtron and RAD-TTS recipes) is given every word the lexicon knows as phones at synthesis:
it no longer has to guess English spelling. Words the lexicon lacks, and homographs (left out of it), stay
spelled out, and the model reads them from their letters.

The lexicon (``lexicon.tsv.gz``, 105,309 words, 0.7 MB) is Festival's CMU lexicon converted to ARPAbet by
``recipes/slt/make_lexicon.py``; its licence notice is in the file's header.
"""
from __future__ import annotations

import gzip
import re
from functools import lru_cache
from pathlib import Path
from typing import Sequence, cast

import numpy as np

from .cleaners import TextError, cleaner_functions

__all__ = ["LEXICON_PATH", "LEXICON_VERSION", "load_lexicon", "to_arpabet"]

LEXICON_PATH = Path(__file__).with_name("lexicon.tsv.gz")
# Recorded in a checkpoint's "text" settings by training with p_arpabet > 0; bump when the file changes.
LEXICON_VERSION = "festival-cmudict-0.4/1"

_BRACES = re.compile(r"(\{[^{}]*\})")  # ARPAbet the caller wrote: kept as it is
_WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")  # cleaned text is lower case; "don't" is one word


@lru_cache(maxsize=4)
def load_lexicon(path: str | Path = LEXICON_PATH) -> dict[str, str]:
    """word -> "PH1 PH2 ..." from a gzipped ``word<TAB>phones`` file ('#' lines are comments)."""
    path = Path(path)
    try:
        with gzip.open(path, "rt", encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, EOFError) as error:
        raise TextError(f"{path}: cannot read the pronunciation lexicon ({error}); reinstall tacoglow or "
                         "rebuild it with recipes/slt/make_lexicon.py") from None
    lexicon = {}
    for n, line in enumerate(lines, start=1):
        if not line or line.startswith("#"):
            continue
        word, tab, phones = line.partition("\t")
        if not tab or not phones.strip():
            raise TextError(f"{path}:{n}: expected 'word<TAB>phones', got {line[:60]!r}")
        lexicon[word] = phones.strip()
    return lexicon


def to_arpabet(text: str, p: float = 1.0, rng: np.random.Generator | None = None,
               cleaners: str | Sequence[str] = ("english_cleaners",), lexicon: dict[str, str] | None = None) -> str:
    """``text`` cleaned, with each word the lexicon knows replaced by ``{PHONES}`` with probability ``p``.

    The result goes to ``text_to_sequence`` (whose cleaners leave it unchanged: they are applied here first,
    outside braces, so that words are looked up in the form the model reads them). Groups already in curly
    braces are kept. ``0 < p < 1`` needs ``rng`` (one draw per known word, in order): training's mixed reading.

    >>> to_arpabet("Hello, wonderful world!")
    '{HH AH0 L OW1}, {W AH1 N D ER0 F AH0 L} {W ER1 L D}!'
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be in [0, 1], got {p}")
    if 0.0 < p < 1.0 and rng is None:
        raise ValueError("to_arpabet with p < 1 needs an rng (numpy Generator) to choose the words")
    lexicon = load_lexicon() if lexicon is None else lexicon
    functions = cleaner_functions(cleaners)

    def replace(match: re.Match) -> str:
        phones = lexicon.get(match.group(0))
        if phones is None or (p < 1.0 and cast(np.random.Generator, rng).random() >= p):  # rng: checked above
            return match.group(0)
        return "{" + phones + "}"

    pieces = []
    for piece in _BRACES.split(text):
        if piece.startswith("{") and piece.endswith("}"):
            pieces.append(piece)
            continue
        for clean in functions:
            piece = clean(piece)
        pieces.append(_WORD.sub(replace, piece) if p > 0.0 else piece)
    return "".join(pieces)

