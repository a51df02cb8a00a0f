"""Spoken words of the model input: which input ids each word covers, for word timings and subtitles.

A word is read from the ids themselves, so it always addresses exactly what ``prepare_text`` gives the model: a
maximal run of letter and ARPAbet ids, in which one apostrophe or one hyphen between two such ids continues the
word ("don't", "forty-two", "well-known"). Spaces, punctuation and the other marks separate words and belong to
none. Consequences of reading the ids:

* Numbers are the words they are read as, as the model hears them: "42" -> "forty-two" (one word, as written
  with its hyphen), "123" -> "one hundred twenty-three" (three words), "$5" -> "five dollars" (two words).
* Abbreviations are their expansions: "Dr." -> "doctor".
* With ``arpabet=True`` a lexicon word is one run of phones (``{HH AH0 L OW1}``): it is one word, and its display
  text is the spelled word it replaced ("hello"), not its phones. ARPAbet the caller wrote in braces is displayed
  as phones ("{HH AH0 L OW1}"): there is no spelling to show.

Display texts are the front-end's: lower case, numbers and abbreviations spelled out (what was spoken). Subtitles
map them back onto the text as written (``tacoglow.subtitles``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from .lexicon import to_arpabet
from .normalize import normalize_text
from .symbols import FIRST_LETTER_ID, SYMBOL_TO_ID, prepare_text, sequence_to_text, text_to_sequence

__all__ = ["WordSpan", "spans_from_ids", "word_spans"]

# Inside a word, between two letters or phones, one of these keeps the word going.
_JOINERS = frozenset({SYMBOL_TO_ID["'"], SYMBOL_TO_ID["-"]})


@dataclass(frozen=True)
class WordSpan:
    """One spoken word: ``ids[start:end]`` of the model input are its letters or phones (and inner joiners)."""

    text: str   # what was spoken, as the front-end reads it: "forty-two", "doctor", "hello"
    start: int  # index of its first id
    end: int    # one past its last id


def _is_sound(symbol_id: int) -> bool:
    return symbol_id >= FIRST_LETTER_ID  # letters, then the ARPAbet phones


def _runs(ids: Sequence[int]) -> list[tuple[int, int]]:
    """[start, end) of each word in ``ids``."""
    runs: list[tuple[int, int]] = []
    start = None
    for i, symbol_id in enumerate(ids):
        if _is_sound(symbol_id):
            if start is None:
                start = i
            continue
        joins = (start is not None and symbol_id in _JOINERS and i + 1 < len(ids) and _is_sound(ids[i + 1]))
        if start is not None and not joins:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(ids)))
    return runs


def spans_from_ids(ids: Sequence[int], texts: Sequence[str] | None = None) -> list[WordSpan]:
    """The words of model input ``ids`` in order; each displays as ``texts[k]`` when given (one per word, else
    ValueError), or as its own ids read back (``sequence_to_text``: letters, or phones in braces).

    >>> [(w.text, w.start, w.end) for w in spans_from_ids(text_to_sequence("Hi, forty-two!"))]
    [('hi', 0, 2), ('forty-two', 4, 13)]
    """
    runs = _runs([int(i) for i in ids])
    if texts is not None and len(texts) != len(runs):
        raise ValueError(f"got {len(texts)} display texts for {len(runs)} words")
    return [WordSpan(texts[k] if texts is not None else sequence_to_text(ids[a:b]), a, b)
            for k, (a, b) in enumerate(runs)]


def word_spans(text: str, normalize: bool = True, cleaners: str | Sequence[str] = ("english_cleaners",),
               arpabet: bool = False, leading_pause: bool = False) -> list[WordSpan]:
    """The spoken words of ``text`` with the range of ``prepare_text(text, normalize, cleaners, arpabet,
    leading_pause)``'s ids each covers (same arguments, same TextError for empty or unspeakable text).

    >>> [(w.text, w.start, w.end) for w in word_spans("Hello, world!", arpabet=True)]
    [('hello', 0, 4), ('world', 6, 10)]
    """
    ids = prepare_text(text, normalize=normalize, cleaners=cleaners, arpabet=arpabet, leading_pause=leading_pause)
    if not arpabet:
        return spans_from_ids(ids)
    # The same text with no lexicon word replaced: its words are those of ``ids`` one for one (a replacement
    # turns a run of letters into a run of phones and keeps every separator), spelled out.
    spelled = spans_from_ids(text_to_sequence(to_arpabet(normalize_text(text) if normalize else text, p=0.0,
                                                         cleaners=cleaners), cleaners))
    try:
        return spans_from_ids(ids, [w.text for w in spelled])
    except ValueError:  # a lexicon entry with no known phone: keep the model's own reading
        return spans_from_ids(ids)

