"""Transliteration of non-ASCII text exactly as NVIDIA's reference front-end does it.

The reference keeps every character below U+007F and looks all others up in its own
table (a unidecode-style replacement list plus homoglyphs); characters missing from the
table are dropped. For the Basic Multilingual Plane that table agrees with
``unidecode`` 1.4.0 except on about 40,000 characters (mostly CJK, which it drops, and a
few choices such as "ä" -> "ae"). Only about 1,400 BMP characters survive at all, so the
complete result is shipped here (``transliteration.json.gz``, about 5 KB) instead of
depending on whatever ``unidecode`` release is installed: a different release would
silently change the ids the checkpoints were trained on.

Characters outside the BMP (emoji, mathematical alphanumerics, historic scripts) are
dropped. The reference's behaviour there is not pinned down by its published data, and
dropping is what it does for every character it does not know.
"""
from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Mapping
from functools import lru_cache
from importlib import resources

TABLE_FILE = "transliteration.json.gz"
_FIRST_MAPPED = 127  # the reference keeps ord < 127 verbatim; DEL goes through the table


@lru_cache(maxsize=1)
def _table() -> dict[str, str]:
    with resources.files(__package__).joinpath(TABLE_FILE).open("rb") as handle:
        data = json.loads(gzip.decompress(handle.read()).decode("ascii"))
    return {chr(int(code)): out for code, out in data["table"].items()}


def transliteration_table() -> Mapping[str, str]:
    """The shipped table: every BMP character >= U+007F with a non-empty ASCII output."""
    return _table()


def to_ascii(text: str) -> str:
    """Transliterate ``text`` to ASCII as the reference's ``convert_to_ascii`` does."""
    if text.isascii() and "\x7f" not in text:
        return text
    table = _table()
    return "".join(ch if ch < "\x7f" else table.get(ch, "") for ch in text)


def build_table(differences: Mapping[str, str], unidecode: Callable[[str], str]) -> dict[str, str]:
    """Derive the shipped table: ``unidecode`` (1.4.0) overridden by the reference's differences.

    Returns ``{str(code point): output}`` for BMP characters from U+007F on whose output is
    non-empty. Kept here so the packaged file can be regenerated and checked.
    """
    table = {}
    for code in range(_FIRST_MAPPED, 0x10000):
        char = chr(code)
        if 0xD800 <= code <= 0xDFFF:  # lone surrogates cannot be encoded; never in valid text
            out = differences.get(char, "")
        else:
            out = differences.get(char, unidecode(char))
        if out:
            table[str(code)] = out
    return table
