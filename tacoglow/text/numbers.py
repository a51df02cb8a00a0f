"""Numbers to words.

Two families live here:

* ``normalize_numbers`` reproduces the number expansion inside NVIDIA's
  ``english_cleaners`` (built on ``inflect``), quirks included, because the published
  checkpoints were trained on its output. Where the reference crashes, it falls back:
  integers of 37 or more significant digits (beyond inflect's "decillion") are read
  digit by digit ("one two three ..."), their ordinals end on an ordinal digit
  ("... two third"), and dollar amounts that the reference cannot parse have their
  stray commas ignored. It never raises.
* ``cardinal_words``, ``ordinal_words``, ``year_words``, ``decimal_words`` and ``digit_words`` are our own
  spellings for the normalization stage that runs before the cleaners: no commas, no
  "and", digit-by-digit fractions.

Every regular expression is written so that a run of digits is scanned a bounded number
of times: the reference's patterns restart inside long digit runs and take quadratic time.
"""
from __future__ import annotations

import re
from functools import lru_cache


@lru_cache(maxsize=1)
def _engine():
    # inflect takes about a second to import: load it only when a number is read.
    import inflect

    return inflect.engine()

# inflect names groups up to "decillion" (10**33), so 36 significant digits is its limit.
MAX_NAMED_DIGITS = 36

_ONES = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen "
    "fourteen fifteen sixteen seventeen eighteen nineteen"
).split()
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_SCALES = (
    "_ thousand million billion trillion quadrillion quintillion sextillion septillion "
    "octillion nonillion decillion"
).split()
_ORDINAL_DIGITS = "zeroth first second third fourth fifth sixth seventh eighth ninth".split()


def digit_words(digits: str) -> str:
    """Read a string of ASCII digits one digit at a time: "105" -> "one zero five"."""
    return " ".join(_ONES[int(d)] for d in digits)


def _below_hundred(n: int) -> str:
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + ("-" + _ONES[ones] if ones else "")


def _below_thousand(n: int) -> str:
    hundreds, rest = divmod(n, 100)
    words = [_ONES[hundreds] + " hundred"] if hundreds else []
    if rest or not hundreds:
        words.append(_below_hundred(rest))
    return " ".join(words)


def cardinal_words(digits: str) -> str:
    """Spell a non-negative integer given as ASCII digits, without commas or "and".

    "1234" -> "one thousand two hundred thirty-four". Numbers beyond the named scales
    (more than 36 significant digits) are read digit by digit.
    """
    significant = digits.lstrip("0")
    if not significant:
        return "zero"
    if len(significant) > MAX_NAMED_DIGITS:
        return digit_words(significant)
    value = int(significant)
    groups = []
    scale = 0
    while value:
        value, group = divmod(value, 1000)
        if group:
            name = _below_thousand(group)
            groups.append(name + (" " + _SCALES[scale] if scale else ""))
        scale += 1
    return " ".join(reversed(groups))


def year_words(digits: str) -> str:
    """Read 1001-2999 the way the reference's cleaners do: "1984" -> "nineteen eighty-four".

    Other values are read as cardinals.
    """
    value = int(digits) if digits.isdigit() and len(digits) <= 4 else -1
    if not 1000 < value < 3000:
        return cardinal_words(digits)
    if value == 2000:
        return "two thousand"
    if 2000 < value < 2010:
        return "two thousand " + _ONES[value % 100]
    century, rest = divmod(value, 100)
    if rest == 0:
        return _below_hundred(century) + " hundred"
    return _below_hundred(century) + " " + ("oh " + _ONES[rest] if rest < 10 else _below_hundred(rest))


_ORDINAL_ENDINGS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                    "nine": "ninth", "twelve": "twelfth"}


def ordinal_words(digits: str) -> str:
    """Spell a non-negative integer given as ASCII digits as an ordinal: "21" -> "twenty-first",
    "100" -> "one hundredth" (the last word of :func:`cardinal_words` made ordinal)."""
    words = cardinal_words(digits)
    cut = max(words.rfind(" "), words.rfind("-")) + 1
    last = words[cut:]
    if last in _ORDINAL_ENDINGS:
        last = _ORDINAL_ENDINGS[last]
    elif last.endswith("y"):
        last = last[:-1] + "ieth"
    else:
        last += "th"
    return words[:cut] + last


def decimal_words(number: str) -> str:
    """"1,234.05" -> "one thousand two hundred thirty-four point zero five"."""
    whole, _, fraction = number.replace(",", "").partition(".")
    words = cardinal_words(whole)
    return words + " point " + digit_words(fraction) if fraction else words


# --- the reference's expansion ------------------------------------------------------------

_COMMA_NUMBER_RE = re.compile(r"([0-9][0-9,]+[0-9])")
_POUNDS_RE = re.compile(r"£([0-9,]*[0-9]+)")
_DOLLARS_RE = re.compile(r"\$([0-9.,]*[0-9]+)")
# The look-behinds below do not change which text matches: scanning left to right, a match
# of these patterns always starts at the first digit of a run. They only stop the regex
# engine from retrying at every later digit of a long run, which is quadratic.
_DECIMAL_RE = re.compile(r"(?<![0-9])([0-9]+\.[0-9]+)")
_ORDINAL_RE = re.compile(r"(?<![0-9])[0-9]+(st|nd|rd|th)")
_NUMBER_RE = re.compile(r"[0-9]+")

# Cache only short keys: a 100,000-digit key must not stay alive in the cache.
_CACHE_MAX_KEY = 40


def _canonical_integer(text: str) -> str:
    """What ``str(int(text))`` gives for the reference's amounts, minus its crashes.

    ``int`` rejects stray commas ("1,.50") and strings over Python's 4,300-digit limit;
    commas are ignored here and no conversion to ``int`` happens.
    """
    return text.replace(",", "").lstrip("0") or "0"


def _expand_dollars(match: re.Match[str]) -> str:
    amount = match.group(1)
    parts = amount.split(".")
    if len(parts) > 2:
        return amount + " dollars"  # the reference gives up on "1.2.3"
    dollars = _canonical_integer(parts[0])
    cents = _canonical_integer(parts[1]) if len(parts) > 1 else "0"
    dollar_unit = "dollar" if dollars == "1" else "dollars"
    cent_unit = "cent" if cents == "1" else "cents"
    if dollars != "0" and cents != "0":
        return f"{dollars} {dollar_unit}, {cents} {cent_unit}"
    if dollars != "0":
        return f"{dollars} {dollar_unit}"
    if cents != "0":
        return f"{cents} {cent_unit}"
    return "zero dollars"


def _spelled_ordinal(digits: str) -> str:
    return " ".join([*(_ONES[int(d)] for d in digits[:-1]), _ORDINAL_DIGITS[int(digits[-1])]])


def _expand_ordinal_text(token: str) -> str:
    digits = token[:-2]
    if len(digits.lstrip("0")) > MAX_NAMED_DIGITS:
        return _spelled_ordinal(digits.lstrip("0"))
    try:
        return _engine().number_to_words(token)
    except _out_of_range():
        return _spelled_ordinal(digits.lstrip("0") or "0")


_cached_ordinal = lru_cache(maxsize=4096)(_expand_ordinal_text)


def _expand_ordinal(match: re.Match[str]) -> str:
    token = match.group(0)
    return _cached_ordinal(token) if len(token) <= _CACHE_MAX_KEY else _expand_ordinal_text(token)


def _expand_number_text(digits: str) -> str:
    significant = digits.lstrip("0") or "0"
    if len(significant) > MAX_NAMED_DIGITS:
        return digit_words(significant)
    value = int(significant)
    if 1000 < value < 3000:
        # Read like a year: "1984" -> "nineteen eighty-four"; inflect's group=2 output has
        # ", " between the pairs, which the reference removes.
        if value == 2000:
            return "two thousand"
        if 2000 < value < 2010:
            return "two thousand " + _engine().number_to_words(value % 100)
        if value % 100 == 0:
            return _engine().number_to_words(value // 100) + " hundred"
        return _engine().number_to_words(value, andword="", zero="oh", group=2).replace(", ", " ")
    return _engine().number_to_words(value, andword="")


_cached_number = lru_cache(maxsize=8192)(_expand_number_text)


def _expand_number(match: re.Match[str]) -> str:
    digits = match.group(0)
    return _cached_number(digits) if len(digits) <= _CACHE_MAX_KEY else _expand_number_text(digits)


def normalize_numbers(text: str) -> str:
    """The reference's number expansion: "$3.50" -> "three dollars, fifty cents".

    Keeps its quirks (commas of inflect's output, "1,234" read like a year, "£" only
    handled if it survived transliteration) and never raises.
    """
    if not any(c in text for c in "0123456789"):
        return text
    text = _COMMA_NUMBER_RE.sub(lambda m: m.group(1).replace(",", ""), text)
    text = _POUNDS_RE.sub(r"\1 pounds", text)
    text = _DOLLARS_RE.sub(_expand_dollars, text)
    text = _DECIMAL_RE.sub(lambda m: m.group(1).replace(".", " point "), text)
    text = _ORDINAL_RE.sub(_expand_ordinal, text)
    return _NUMBER_RE.sub(_expand_number, text)


def _out_of_range() -> type[Exception]:
    import inflect

    return inflect.NumOutOfRangeError
