"""The 148-symbol input alphabet of NVIDIA's Tacotron 2 checkpoints.

The order is part of every trained embedding table, so it must never change:
pad, the hyphen, ten punctuation marks (space included), upper- and lower-case
letters, then the 84 CMUdict ARPAbet symbols, each prefixed with '@' so that
'@B' cannot be confused with the letter 'B'.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from functools import lru_cache

from .cleaners import TextError, cleaner_functions
from .lexicon import to_arpabet
from .normalize import normalize_text

PAD = "_"
SPECIAL = "-"
PUNCTUATION = "!'(),.:;? "
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# CMUdict's phone set: 15 vowels with lexical stress 0-2 (plus the bare vowel) and
# 24 consonants, in CMUdict's alphabetical order.
ARPABET = (
    "AA AA0 AA1 AA2 AE AE0 AE1 AE2 AH AH0 AH1 AH2 AO AO0 AO1 AO2 AW AW0 AW1 AW2 "
    "AY AY0 AY1 AY2 B CH D DH EH EH0 EH1 EH2 ER ER0 ER1 ER2 EY EY0 EY1 EY2 F G HH "
    "IH IH0 IH1 IH2 IY IY0 IY1 IY2 JH K L M N NG OW OW0 OW1 OW2 OY OY0 OY1 OY2 P R "
    "S SH T TH UH UH0 UH1 UH2 UW UW0 UW1 UW2 V W Y Z ZH"
).split()

symbols: list[str] = [PAD, *SPECIAL, *PUNCTUATION, *LETTERS, *("@" + p for p in ARPABET)]

PAD_ID: int = 0
SYMBOL_TO_ID: dict[str, int] = {s: i for i, s in enumerate(symbols)}
ID_TO_SYMBOL: dict[int, str] = dict(enumerate(symbols))

# Ids that carry sound: letters and ARPAbet phones (punctuation only shapes prosody).
FIRST_LETTER_ID: int = SYMBOL_TO_ID["A"]
FIRST_ARPABET_ID: int = SYMBOL_TO_ID["@" + ARPABET[0]]

# A pause before the first word: ", " in ids. Every recording starts with silence (about 0.17 s in the
# default voice's corpus) that no symbol stands for; a voice trained with these ids before each label
# (TrainConfig.leading_pause) gives that silence a symbol of its own, and reads with it (prepare_text).
LEADING_PAUSE_IDS: tuple[int, ...] = (SYMBOL_TO_ID[","], SYMBOL_TO_ID[" "])


def with_leading_pause(ids: Sequence[int]) -> list[int]:
    """``ids`` read after a leading pause: ``LEADING_PAUSE_IDS`` first (training labels and synthesis alike)."""
    return [*LEADING_PAUSE_IDS, *ids]


@lru_cache(maxsize=4096)
def _clean_to_ids(text: str, cleaners: tuple[Callable[[str], str], ...]) -> tuple[int, ...]:
    for clean in cleaners:
        text = clean(text)
    # '_' is the pad symbol and must never appear inside a sequence; unknown characters
    # (braces, digits the cleaners left, '~', ...) are dropped as the reference does.
    return tuple(SYMBOL_TO_ID[ch] for ch in text if ch in SYMBOL_TO_ID and ch != PAD)


def _text_ids(text: str, cleaners: tuple[Callable[[str], str], ...]) -> tuple[int, ...]:
    if not text:
        return ()
    if len(text) > 200:  # long segments are unlikely to repeat; keep them out of the cache
        return _clean_to_ids.__wrapped__(text, cleaners)
    return _clean_to_ids(text, cleaners)


def _arpabet_ids(phones: str) -> list[int]:
    # Unknown phones are dropped silently, as in the reference.
    return [SYMBOL_TO_ID["@" + p] for p in phones.split() if "@" + p in SYMBOL_TO_ID]


def text_to_sequence(text: str, cleaners: str | Sequence[str] = ("english_cleaners",)) -> list[int]:
    """Clean ``text`` and map it to symbol ids; ARPAbet may be given in curly braces.

    "Turn {HH AH0 L OW1}" cleans "Turn " and maps the braces' content to '@' phones.
    The reference finds braces with ``(.*?)\\{(.+?)\\}(.*)`` repeatedly; this scan gives
    the same segments in linear time (the regex is quadratic on unmatched braces):

    * Only the first line can hold a braced group ('.' does not cross a newline): the
      first '{' on it pairs with the first '}' at least two characters later; if there
      is none, no later '{' can pair either and the whole text is plain.
    * After a match the reference continues with the rest of that first line only;
      whatever follows its newline is discarded.

    Raises TextError (a ValueError) naming an unknown cleaner.
    """
    functions = cleaner_functions(cleaners)
    ids: list[int] = []
    pos, end = 0, len(text)
    newline = text.find("\n")
    first_line_end = end if newline < 0 else newline
    while pos < end:
        line_end = first_line_end if pos == 0 else end
        opening = text.find("{", pos, line_end)
        closing = text.find("}", opening + 2, line_end) if opening >= 0 else -1
        if closing < 0:
            ids += _text_ids(text[pos:end], functions)
            break
        ids += _text_ids(text[pos:opening], functions)
        ids += _arpabet_ids(text[opening + 1 : closing])
        pos, end = closing + 1, line_end
    return ids


def sequence_to_text(ids: Iterable[int]) -> str:
    """Map ids back to text, ARPAbet phones inside curly braces ("{HH AH0}").

    Unknown ids are skipped. Adjacent phones share one pair of braces, as in the reference.
    """
    pieces = []
    for symbol_id in ids:
        symbol = ID_TO_SYMBOL.get(int(symbol_id))
        if symbol is None:
            continue
        pieces.append("{" + symbol[1:] + "}" if len(symbol) > 1 and symbol[0] == "@" else symbol)
    return "".join(pieces).replace("}{", " ")


def prepare_text(
    text: str, normalize: bool = True, cleaners: str | Sequence[str] = ("english_cleaners",),
    arpabet: bool = False, leading_pause: bool = False,
) -> list[int]:
    """Text to model input ids: optional ``normalize_text``, optionally every word the pronunciation
    lexicon knows as ARPAbet (:func:`tacoglow.text.lexicon.to_arpabet`, for voices trained so), then
    ``text_to_sequence``; ``leading_pause`` puts ``LEADING_PAUSE_IDS`` first (for voices trained so).

    Raises TextError (a ValueError) when ``text`` is empty or leaves nothing speakable (no letter or
    ARPAbet id), so that callers never feed the model punctuation alone.
    """
    if not text.strip():
        raise TextError("text is empty")
    if normalize:
        text = normalize_text(text)
    if arpabet:
        text = to_arpabet(text, cleaners=cleaners)
    ids = text_to_sequence(text, cleaners)
    if not any(i >= FIRST_LETTER_ID for i in ids):
        raise TextError(
            f"text {text[:40]!r} has no characters the model can speak "
            "(letters, numbers or ARPAbet in curly braces)"
        )
    return with_leading_pause(ids) if leading_pause else ids
