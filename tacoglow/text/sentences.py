"""Splitting long text into pieces Tacotron 2 can read in one go.

The reference model is trained on LJSpeech clips of at most about ten seconds; given a
paragraph its attention drifts and the decoder stops early or babbles. Synthesizing
sentence by sentence avoids that.
"""
from __future__ import annotations

import re

# Words that end with a period without ending the sentence (compared in lower case).
_ABBREVIATIONS = frozenset(
    """
    mr mrs ms dr drs prof st sr jr rev hon capt col gen lt maj sgt cpl esq co corp inc
    ltd bros vs etc no nos vol fig figs approx dept est mt ft ave blvd jan feb mar apr
    jun jul aug sep sept oct nov dec e.g i.e cf al viz
    """.split()
)

# A sentence ends after ., !, ? or ; (possibly repeated, possibly followed by closing
# quotes or brackets) when whitespace or the end of the text follows.
# The look-behind makes a long run of marks be tried once, not once per character.
_BOUNDARY_RE = re.compile(r"(?<![.!?;])[.!?;]+[\"'”’)\]]*(?=\s|$)")
_NEXT_VISIBLE_RE = re.compile(r"\s*(\S)?")
_WORD_BEFORE_RE = re.compile(r"[^\s\"'“‘(\[]{1,12}$")
_CLAUSE_RE = re.compile(r"(?<=[,:])\s+")
_WHITESPACE_RE = re.compile(r"\s+")


def _ends_sentence(text: str, boundary: re.Match[str]) -> bool:
    marks = boundary.group(0)
    if not marks.startswith("."):
        return True
    visible = _NEXT_VISIBLE_RE.match(text, boundary.end())
    assert visible is not None  # the pattern matches anywhere, empty at the end
    next_char = visible.group(1)
    if next_char is not None and next_char.islower():
        return False  # "e.g. the", "No... way": a period before lower case rarely ends one
    if marks.startswith(".."):
        return True
    # Look only at the last few characters before the period: abbreviations are short,
    # and a bounded look keeps the whole split linear in the text length.
    window = text[max(0, boundary.start() - 12) : boundary.start()]
    word = _WORD_BEFORE_RE.search(window)
    if word is None:
        return True
    token = word.group(0)
    if token.lower() in _ABBREVIATIONS:
        return False
    if len(token) == 1 and token.isupper():
        return False  # an initial: "J. Smith"
    if len(token) == 3 and token[1] == "." and token[0].isalpha() and token[2].isalpha():
        return False  # the first half of "e.g." or "U.S." already matched as "e.g"
    return True


def _pack(parts: list[str], max_chars: int, separator: str = " ") -> list[str]:
    """Greedily join consecutive parts while the result stays within max_chars."""
    chunks: list[str] = []
    current = ""
    for part in parts:
        if not current:
            current = part
        elif len(current) + len(separator) + len(part) <= max_chars:
            current += separator + part
        else:
            chunks.append(current)
            current = part
    if current:
        chunks.append(current)
    return chunks


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Split a too-long sentence at commas and colons, then spaces, then anywhere."""
    if len(sentence) <= max_chars:
        return [sentence]
    pieces: list[str] = []
    for clause in _pack(_CLAUSE_RE.split(sentence), max_chars):
        if len(clause) <= max_chars:
            pieces.append(clause)
            continue
        for chunk in _pack(_WHITESPACE_RE.split(clause), max_chars):
            # A single word longer than max_chars (a URL, a digit string) is cut hard.
            pieces.extend(chunk[i : i + max_chars] for i in range(0, len(chunk), max_chars))
    return pieces


def _keep_phones_in_braces(pieces: list[str]) -> list[str]:
    """Pieces of one sentence, cut inside an ARPAbet group ("{HH AH0" | "L OW1}"), each with braces of its own
    ("{HH AH0}", "{L OW1}"), so that every part is still read as phones, not spelled as letters; a part left
    with no phone ("}") is dropped."""
    out, inside = [], False
    for piece in pieces:
        if inside:
            piece = "{" + piece
        inside = piece.rfind("{") > piece.rfind("}")
        out.append(piece + "}" if inside else piece)
    return [p for p in out if p.strip("{} ")]


def sentence_ends(text: str) -> list[int]:
    """Where the sentences of ``text`` end: the index just after each sentence-ending mark (and its closing
    quotes or brackets), by the rule of :func:`split_sentences`."""
    return [boundary.end() for boundary in _BOUNDARY_RE.finditer(text) if _ends_sentence(text, boundary)]


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Split ``text`` into sentences of at most ``max_chars`` characters.

    Sentences end at ".", "!", "?" and ";" followed by whitespace, except after common
    abbreviations ("Mr.", "Dr.", "St.", "e.g.") and initials; "3.5" never splits. A
    sentence longer than ``max_chars`` is split at commas and colons, then at spaces; a cut
    inside ARPAbet braces closes and reopens them (so such a piece may have 2 characters more).
    Pieces are stripped; empty pieces are never returned, so whitespace-only text gives [].
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be at least 1, got {max_chars}")
    sentences = []
    start = 0
    for end in sentence_ends(text):
        sentences.append(text[start:end])
        start = end
    sentences.append(text[start:])
    pieces: list[str] = []
    for sentence in sentences:
        sentence = sentence.strip()
        if sentence:
            parts = [p for p in (p.strip() for p in _split_long(sentence, max_chars)) if p]
            pieces.extend(_keep_phones_in_braces(parts) if len(parts) > 1 and "{" in sentence else parts)
    return pieces
