"""SSML: the part of W3C's Speech Synthesis Markup Language that a Tacotron 2 voice can honour, as plain segments.

:func:`parse_ssml` turns a document into :class:`SSMLSegment` s in reading order: text to speak at a rate,
each followed by the seconds of silence that come after it. The :class:`~tacoglow.synthesizer.Synthesizer`
makes sentence jobs of them (``Synthesizer.synthesize_ssml``); nothing here touches a model.

Supported (anything else is spoken as its text, with a warning that names the tag):

==============================  ===========================================================================
``<speak>``                     the root; any other root is refused
``<break time strength>``       silence: ``time="500ms"`` / ``"1.2s"``, or a ``strength`` (``BREAK_STRENGTHS``;
                                no attribute: ``medium``); it replaces the pause a sentence or paragraph
                                edge would make there; ``none`` or ``0ms`` remove it
``<prosody rate>``              speaking rate: ``x-slow`` .. ``x-fast`` (``RATE_NAMES``), ``90%`` or a
                                multiplier ``1.5``, all of the voice's own pace (as W3C says, whatever
                                encloses it); ``+10%`` / ``-20%``: a change of the enclosing rate; pitch,
                                volume and the rest are ignored
``<say-as interpret-as>``       ``characters`` / ``spell-out``, ``cardinal``, ``ordinal``, ``digits``,
                                ``date`` (``format`` mdy, dmy, ymd, ydm, md, dm, ym, my, d, m, y), ``time``,
                                ``telephone``
``<sub alias>``                 the alias is spoken instead of the text
``<phoneme alphabet ph>``       ``alphabet="x-arpabet"``: the phones (CMUdict's, e.g. ``HH AH0 L OW1``) are
                                read as given, through the front-end's ARPAbet-in-braces path; any other
                                alphabet: the text is spoken, with a warning
``<s>``, ``<p>``                a sentence / paragraph: the voice's sentence pause after a sentence,
                                ``PARAGRAPH_PAUSE_FACTOR`` times it after a paragraph
``<mark>``, ``<desc>``,         not spoken (``UNSPOKEN``): a mark is only a name, a description stands for
``<meta>``, ``<metadata>``,     an audio file, the rest describes the document; ``<lexicon>`` is ignored with
``<lexicon>``                   a warning
==============================  ===========================================================================

Untrusted input is safe to give: documents are parsed only with ``defusedxml``, their size is checked before
parsing (``MAX_SSML_BYTES``), a DTD or an entity declaration (billion laughs, external entities) is refused,
and breaks add up to at most ``MAX_TOTAL_BREAK_SECONDS``. Every refusal is an :class:`SSMLError` naming the
problem. Curly braces in the text are dropped (in plain text they would be read as ARPAbet: in SSML that is
``<phoneme>``'s job), and whitespace runs become one space.
"""
from __future__ import annotations

import calendar
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

import defusedxml.ElementTree as SafeElementTree
from defusedxml import DefusedXmlException

from .errors import TacoglowError
from .text.normalize import normalize_text
from .text.numbers import cardinal_words, decimal_words, digit_words, ordinal_words, year_words
from .text.symbols import ARPABET

log = logging.getLogger(__name__)

__all__ = ["MAX_SSML_BYTES", "SSMLError", "SSMLParse", "SSMLSegment", "is_ssml", "parse_ssml"]

MAX_SSML_BYTES = 1 << 20  # a document's UTF-8 size, checked before any parsing
MAX_DEPTH = 100  # elements nested deeper are refused (the reader recurses once per level)
MAX_BREAK_SECONDS = 10.0  # one <break> longer than this is cut to it, with a warning
MAX_TOTAL_BREAK_SECONDS = 600.0  # all of a document's breaks together; more is refused (its audio would be huge)
MIN_RATE, MAX_RATE = 0.25, 4.0  # the server's `speed` bounds; rates outside are clamped, with a warning
PARAGRAPH_PAUSE_FACTOR = 3.0  # a paragraph ends with this many sentence pauses of silence

# Seconds of silence of each <break strength>; a <break/> without attributes is "medium" (W3C's default).
BREAK_STRENGTHS = {"none": 0.0, "x-weak": 0.1, "weak": 0.2, "medium": 0.4, "strong": 0.7, "x-strong": 1.0}
# <prosody rate> labels, as multiples of the voice's own pace (not of the enclosing rate).
RATE_NAMES = {"x-slow": 0.5, "slow": 0.75, "medium": 1.0, "default": 1.0, "fast": 1.25, "x-fast": 1.5}
# Elements whose content W3C SSML 1.1 never speaks (see _Reader.unspoken); <lexicon> is ignored with a warning.
UNSPOKEN = ("mark", "desc", "meta", "metadata", "lexicon")
SAY_AS = ("characters", "spell-out", "cardinal", "ordinal", "digits", "date", "time", "telephone")
DATE_FORMATS = ("mdy", "dmy", "ymd", "ydm", "md", "dm", "ym", "my", "d", "m", "y")
MONTHS = ("January February March April May June July August September October November December").split()

_SSML_START = re.compile(r"\s*(?:<\?xml[\s?]|<!DOCTYPE[\s>]|<speak[\s/>])")
_TIME = re.compile(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(ms|s)\s*", re.IGNORECASE)
_RATE = re.compile(r"\s*([+-])?([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*(%?)\s*")
_SPACES = re.compile(r"\s+")
_ARPABET = frozenset(ARPABET)


class SSMLError(TacoglowError, ValueError):
    """An SSML document that is refused: too large, malformed, with a DTD or entities, or a bad attribute value."""


@dataclass(frozen=True)
class SSMLSegment:
    """A piece of a document in reading order: ``text`` spoken at ``rate`` (1.0: the voice's own pace; 0.5: half
    as fast, so about twice as long), then ``pause`` seconds of silence. ``text`` is stripped, never empty, and
    may hold ARPAbet in curly braces (from ``<phoneme>``); sentences inside it are split by the synthesizer."""

    text: str
    rate: float = 1.0
    pause: float = 0.0


@dataclass
class SSMLParse:
    """What :func:`parse_ssml` found: the segments, and one message per distinct thing it ignored."""

    segments: list[SSMLSegment] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def is_ssml(text: str) -> bool:
    """Whether ``text`` is an SSML document: it starts (after whitespace and an optional BOM) with a ``<speak>``
    tag, an XML declaration or a ``<!DOCTYPE`` (which :func:`parse_ssml` then refuses). Plain text never does,
    so callers may take such input as SSML unasked."""
    return _SSML_START.match(text.lstrip("\ufeff")) is not None


def parse_ssml(document: str, sentence_pause: float = 0.2) -> SSMLParse:
    """``document`` → its segments; ``sentence_pause``: the voice's silence after a sentence, in seconds (what
    ``<s>`` ends with; a ``<p>`` ends with ``PARAGRAPH_PAUSE_FACTOR`` times it).

    Pauses: between two pieces of text, the breaks there add up and replace the pause of any sentence or
    paragraph edge there (a zero break removes it); with no break, the longest edge's pause counts. A break
    before any text is ignored (with a warning); breaks after the last text stay as its pause, an edge's
    pause there does not. A change of rate starts a new segment with no pause. Text without a letter or digit
    (a lone "." between tags) is no piece of text: it joins the text before it, or is dropped after a pause.

    Raises :class:`SSMLError` (a ``ValueError``) for documents over ``MAX_SSML_BYTES`` (checked before parsing),
    malformed XML, a DTD or entity declaration, a root other than ``<speak>``, bad attribute values, or breaks
    adding up to more than ``MAX_TOTAL_BREAK_SECONDS``.
    """
    if not isinstance(document, str):
        raise SSMLError(f"an SSML document must be text, got {type(document).__name__}")
    try:
        size = len(document.encode("utf-8"))
    except UnicodeEncodeError as error:  # a lone surrogate: from bytes that were not UTF-8, or a JSON "\ud800"
        raise SSMLError(f"the SSML document is not valid Unicode text: {document[error.start]!r} at character "
                        f"{error.start} is half of a surrogate pair; give UTF-8 text") from None
    if size > MAX_SSML_BYTES:
        raise SSMLError(f"the SSML document has {size} bytes, more than the {MAX_SSML_BYTES} read at once; "
                        "split it into several documents")
    try:
        root = SafeElementTree.fromstring(document.lstrip("\ufeff"), forbid_dtd=True, forbid_entities=True,
                                          forbid_external=True)
    except DefusedXmlException as error:
        raise SSMLError(f"SSML documents may not have a DTD or declare entities ({type(error).__name__}): "
                        "remove the <!DOCTYPE ...> part") from None
    except SafeElementTree.ParseError as error:
        raise SSMLError(f"malformed SSML: {error}") from None
    if _local(root.tag) != "speak":
        raise SSMLError(f"the root element of an SSML document must be <speak>, got <{_local(root.tag)}>")
    reader = _Reader(sentence_pause)
    reader.content(root, 1.0, 0)
    return SSMLParse(_segments(reader.events, reader.warn), reader.warnings)


# ------------------------------------------------------------------------------------------ reading the tree
# Events, in reading order: ("text", text, rate), ("break", seconds) and ("edge", seconds) for <s>/<p> edges.
Event = tuple[Any, ...]


def _local(tag: Any) -> str:
    """The tag's name without its namespace ("{http://www.w3.org/2001/10/synthesis}speak" → "speak")."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else str(tag)


class _Reader:
    def __init__(self, sentence_pause: float):
        self.sentence_pause = sentence_pause
        self.events: list[Event] = []
        self.warnings: list[str] = []
        self.warned: set[str] = set()
        self.handlers: dict[str, Callable[[Element, float, int], None]] = {
            "speak": self.content, "break": self.break_, "prosody": self.prosody, "say-as": self.say_as,
            "sub": self.sub, "phoneme": self.phoneme, "s": self.edges, "p": self.edges,
            **{name: self.unspoken for name in UNSPOKEN}}

    def warn(self, message: str) -> None:
        if message not in self.warned:  # once per distinct message: a long document may repeat a tag
            self.warned.add(message)
            self.warnings.append(message)
            log.warning("SSML: %s", message)

    def text(self, text: str | None, rate: float) -> None:
        if text:
            self.events.append(("text", text.replace("{", "").replace("}", ""), rate))

    def content(self, element: Element, rate: float, depth: int) -> None:
        """The element's text and children, in order (its tail belongs to its parent)."""
        self.text(element.text, rate)
        for child in element:
            if not isinstance(child.tag, str):  # comments and processing instructions, if a parser kept them
                self.text(child.tail, rate)
                continue
            if depth + 1 > MAX_DEPTH:
                raise SSMLError(f"the SSML document nests elements more than {MAX_DEPTH} deep")
            name = _local(child.tag)
            handler = self.handlers.get(name)
            if name == "speak" or handler is None:
                self.warn(f"<{name}> is not supported: its text is spoken as it is")
                handler = self.content
            handler(child, rate, depth + 1)
            self.text(child.tail, rate)

    def unspoken(self, element: Element, rate: float, depth: int) -> None:
        """An element whose content W3C says is not spoken (``<mark>`` is empty; ``<desc>`` describes an audio
        file; ``<meta>``, ``<metadata>`` and ``<lexicon>`` are about the document): nothing is read."""
        if _local(element.tag) == "lexicon":
            self.warn("<lexicon> is not supported: ignored (use <phoneme> or <sub> for a word's pronunciation)")

    def edges(self, element: Element, rate: float, depth: int) -> None:
        pause = self.sentence_pause * (PARAGRAPH_PAUSE_FACTOR if _local(element.tag) == "p" else 1.0)
        self.events.append(("edge", pause))
        self.content(element, rate, depth)
        self.events.append(("edge", pause))

    def break_(self, element: Element, rate: float, depth: int) -> None:
        time, strength = element.get("time"), element.get("strength")
        if time is not None:
            match = _TIME.fullmatch(time)
            if match is None:
                raise SSMLError(f"<break time={time!r}>: give a time such as '500ms' or '1.2s'")
            seconds = float(match[1]) / (1000 if match[2].lower() == "ms" else 1)
        elif strength is not None:
            if strength not in BREAK_STRENGTHS:
                raise SSMLError(f"<break strength={strength!r}>: use one of {', '.join(BREAK_STRENGTHS)}")
            seconds = BREAK_STRENGTHS[strength]
        else:
            seconds = BREAK_STRENGTHS["medium"]
        if seconds > MAX_BREAK_SECONDS:
            self.warn(f"<break time={time!r}> is longer than {MAX_BREAK_SECONDS:g} s: cut to {MAX_BREAK_SECONDS:g} s")
            seconds = MAX_BREAK_SECONDS
        self.events.append(("break", seconds))
        self.content(element, rate, depth)

    def prosody(self, element: Element, rate: float, depth: int) -> None:
        for name in sorted(set(element.attrib) - {"rate"}):
            self.warn(f"<prosody {_local(name)}> is not supported: ignored")
        value = element.get("rate")
        if value is not None:
            rate = _rate(value, rate)
            if not MIN_RATE <= rate <= MAX_RATE:
                clamped = min(max(rate, MIN_RATE), MAX_RATE)
                self.warn(f"<prosody rate={value!r}> gives rate {rate:g}, outside [{MIN_RATE:g}, {MAX_RATE:g}]: "
                          f"{clamped:g} is used")
                rate = clamped
        self.content(element, rate, depth)

    def sub(self, element: Element, rate: float, depth: int) -> None:
        alias = element.get("alias")
        if alias is None:
            self.warn("<sub> without alias: its text is spoken")
            self.content(element, rate, depth)
        else:
            self.text(alias, rate)

    def phoneme(self, element: Element, rate: float, depth: int) -> None:
        alphabet, phones = (element.get("alphabet") or "").lower(), element.get("ph")
        if alphabet != "x-arpabet" or phones is None:
            self.warn(f"<phoneme alphabet={element.get('alphabet')!r}> is not supported (only alphabet='x-arpabet'"
                      " with ph): its text is spoken")
            self.content(element, rate, depth)
            return
        unknown = [p for p in phones.upper().split() if p not in _ARPABET]
        if not phones.split():
            raise SSMLError(f"<phoneme ph={phones!r}>: give its phones, CMUdict's ARPAbet (e.g. 'HH AH0 L OW1')")
        if unknown:
            raise SSMLError(f"<phoneme ph={phones!r}>: {', '.join(unknown)} is not an ARPAbet phone of CMUdict "
                            "(e.g. 'HH AH0 L OW1')")
        self.events.append(("text", "{" + " ".join(phones.upper().split()) + "}", rate))

    def say_as(self, element: Element, rate: float, depth: int) -> None:
        kind, text = element.get("interpret-as"), "".join(element.itertext())
        if kind not in SAY_AS:
            self.warn(f"<say-as interpret-as={kind!r}> is not supported (use one of {', '.join(SAY_AS)}): "
                      "its text is spoken as it is")
            self.text(text, rate)
            return
        words = _interpret(kind, text.strip(), element.get("format"))
        if words is None:
            self.warn(f"<say-as interpret-as={kind!r}> cannot read {text.strip()[:40]!r}: it is spoken as it is")
            words = text
        self.text(words, rate)


def _rate(value: str, enclosing: float) -> float:
    """A <prosody rate> value → the rate it sets, given the enclosing one. As W3C SSML 1.1 says, a label, a
    percentage ("90%") or a multiplier ("1.5") is of the voice's default rate, whatever encloses it; a signed
    percentage ("+10%", SSML 1.0's relative change) changes the enclosing rate."""
    if value.strip().lower() in RATE_NAMES:
        return RATE_NAMES[value.strip().lower()]
    match = _RATE.fullmatch(value)
    if match is None:
        raise SSMLError(f"<prosody rate={value!r}>: use {', '.join(RATE_NAMES)}, a percentage ('90%', '+10%', "
                        "'-20%') or a multiplier ('1.5')")
    sign, number, percent = match[1], float(match[2]), match[3]
    if sign and not percent:
        raise SSMLError(f"<prosody rate={value!r}>: a change of rate is a percentage, such as '+10%' or '-20%'")
    if sign:  # a change: "+10%" is 1.1 times the enclosing rate
        return enclosing * (1 + number / 100 if sign == "+" else 1 - number / 100)
    return number / 100 if percent else number


# ------------------------------------------------------------------------------------------ say-as
def _interpret(kind: str, text: str, fmt: str | None) -> str | None:
    """The words that ``<say-as interpret-as=kind>`` reads ``text`` as; None where it is not such a thing."""
    if kind in ("characters", "spell-out"):
        spelled = [digit_words(c) if c.isdigit() else c for c in text if c.isascii() and c.isalnum()]
        return " ".join(spelled) or None
    if kind == "cardinal":
        match = re.fullmatch(r"([-−+])?([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(\.[0-9]+)?", text)
        if match is None:
            return None
        words = decimal_words(match[2] + (match[3] or ""))
        return ("minus " + words) if match[1] in ("-", "−") else words
    if kind == "ordinal":
        match = re.fullmatch(r"([0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:st|nd|rd|th)?", text, re.IGNORECASE)
        return ordinal_words(match[1].replace(",", "")) if match else None
    if kind == "digits":
        groups = re.findall(r"[0-9]+", text)
        return " ".join(digit_words(g) for g in groups) or None
    if kind == "telephone":
        parts = re.findall(r"\+|[0-9]+|[A-Za-z]+", text)
        if not any(p.isdigit() for p in parts):
            return None
        words = ", ".join("plus" if p == "+" else digit_words(p) if p.isdigit() else p for p in parts)
        return words.replace("plus, ", "plus ")
    if kind == "date":
        return _date(text, fmt)
    return _time(text)


def _date(text: str, fmt: str | None) -> str | None:
    fields = re.split(r"\s*[-/.]\s*|\s+", text)
    if not all(f.isdecimal() for f in fields):  # what int() reads ("²" is a digit to isdigit(), not to int())
        return None
    fmt = (fmt or ("ymd" if len(fields[0]) == 4 else "mdy")).lower()
    if fmt not in DATE_FORMATS or len(fields) != len(fmt):
        return None
    parts = dict(zip(fmt, fields))
    if any(len(value) > (4 if key == "y" else 2) for key, value in parts.items()):
        return None  # not a date (and int() refuses strings of over 4,300 digits)
    month, day = int(parts.get("m", "1")), int(parts.get("d", "1"))
    # the days of that month: of that year when given, else of a leap year ("2/29" is a date)
    in_year = int(parts["y"]) if "y" in parts and int(parts["y"]) >= 1 else 2000
    if not (1 <= month <= 12 and 1 <= day <= (calendar.monthrange(in_year, month)[1] if "m" in parts else 31)):
        return None
    day_words = ordinal_words(str(day)) if "d" in parts else ""
    if "m" in parts:
        head = f"{MONTHS[month - 1]} {day_words}".strip()  # "December twenty-fifth", "December"
    else:
        head = f"the {day_words}" if day_words else ""
    if "y" not in parts:
        return head
    year = year_words(parts["y"])
    return f"{head}{',' if day_words else ''} {year}" if head else year


def _time(text: str) -> str | None:
    match = re.fullmatch(r"([0-9]{1,2}):([0-5][0-9])(?::([0-5][0-9]))?\s*([AaPp]\.?\s?[Mm]\.?)?", text)
    if match is None:
        words = normalize_text(text)  # "7pm", "7 p.m."
        return words if words != text else None
    clock = f"{match[1]}:{match[2]}" + (f" {match[4]}" if match[4] else "")
    words = normalize_text(clock)
    if words == clock:
        return None
    if match[3]:
        words += f" and {cardinal_words(match[3])} second" + ("" if int(match[3]) == 1 else "s")
    return words


# ------------------------------------------------------------------------------------------ events → segments
def _segments(events: list[Event], warn: Callable[[str], None]) -> list[SSMLSegment]:
    """Fold the events into segments (see :func:`parse_ssml` for how pauses combine)."""
    segments: list[SSMLSegment] = []
    pieces: list[str] = []  # the text of the segment being built
    rate = 1.0
    breaks: float | None = None  # breaks since the last text, added up; None: no break there
    edge: float | None = None  # the longest <s>/<p> edge pause since the last text; None: no edge
    total = 0.0

    def close(pause: float) -> None:
        text = _SPACES.sub(" ", "".join(pieces)).strip()
        segments.append(SSMLSegment(text, rate, pause))
        pieces.clear()

    for event in _merged_text(events):
        if event[0] == "break":
            breaks = (breaks or 0.0) + event[1]
            total += event[1]
            if total > MAX_TOTAL_BREAK_SECONDS:
                raise SSMLError(f"the SSML document's breaks add up to more than {MAX_TOTAL_BREAK_SECONDS:g} s; "
                                "use shorter or fewer breaks")
        elif event[0] == "edge":
            edge = max(edge or 0.0, event[1])
        elif any(c.isalnum() for c in event[1]):
            if pieces and ((breaks or 0.0) > 0 or edge is not None or event[2] != rate):
                close(breaks if breaks is not None else (edge or 0.0))
            elif pieces and breaks is not None:  # a zero break: no pause, but still a word boundary
                pieces.append(" ")
            elif not pieces and not segments and breaks:
                warn("a <break> before any text is ignored")
            pieces.append(event[1])
            rate, breaks, edge = event[2], None, None
        elif pieces and breaks is None and edge is None:  # punctuation or space between elements: part of the text
            pieces.append(event[1] if event[1].strip() else " ")
        # Else punctuation with no word before it, or after a pause: nothing to speak, and the pause goes on
        # (<p>.</p> repeated adds no silence: the silence of a document grows only with its breaks and words).
    if pieces:
        close(breaks or 0.0)
    return segments


def _merged_text(events: list[Event]) -> Iterator[Event]:
    """The events with consecutive texts of one rate joined, so a tag inside a word ("<sub>" in "<sub
    alias='Doctor'>Dr</sub>.") does not leave a piece without letters. Linear in the text's length."""
    texts: list[str] = []
    rate = 1.0
    for event in events:
        if event[0] == "text" and texts and event[2] != rate:
            yield ("text", "".join(texts), rate)
            texts = []
        if event[0] == "text":
            texts.append(event[1])
            rate = event[2]
            continue
        if texts:
            yield ("text", "".join(texts), rate)
            texts = []
        yield event
    if texts:
        yield ("text", "".join(texts), rate)
