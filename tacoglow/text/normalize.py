"""Reading numbers, money, times and units before the reference cleaners see them.

``english_cleaners`` must stay byte-compatible with NVIDIA's front-end, which mangles a
lot of everyday text: "£5" loses its currency, "10:30am" becomes "ten:thirtyam", "45%"
loses the percent, "5 ft." becomes "five fort", "$1,234" is read like a year and large
numbers get commas (pauses) between their groups. ``normalize_text`` rewrites those tokens
into plain English words that the cleaners then pass through unchanged:

* money: "$1,234.56" -> "one thousand two hundred thirty-four dollars and fifty-six cents";
  also £ (pounds, pence), € (euros), ¥ (yen), "50¢", "5p", "$2 million", "$5k", "$5-10".
* clock times: "10:30am" -> "ten thirty a m", "7:05 pm" -> "seven oh five p m",
  "14:00" -> "fourteen hundred", "9:00" -> "nine o'clock", "7pm" -> "seven p m".
* percentages, common units after a number ("5 km", "3.5 kg", "20°C", "12 in.", "5 ft."),
  and ranges ("10-20" -> "ten to twenty", "1990–1995" -> "nineteen ninety to nineteen
  ninety-five", "5-10 km" -> "five to ten kilometers").
* numbers the cleaners would read badly: thousands separators ("1,000,000" -> "one
  million"), integers of five or more digits, four-digit integers from 3000 up, and
  decimals with several fractional digits ("3.14" -> "three point one four").

Deliberately left alone, because the cleaners already read them as intended: integers
below 1000, four-digit numbers 1000-2999 without separators (years: "in 1984"),
one-digit decimals ("3.5"), ordinals ("22nd"), numbers with leading zeros, numbers
glued to letters ("1960s", "A4", "MP3"), and dates such as "2020-01-05". Text without any
of the handled tokens comes back byte-identical, so transcripts that are already spelled
out are not disturbed.

The scan is a single regular expression pass whose every branch is anchored on a digit
or currency sign and guarded so that a digit run is examined a bounded number of times;
it takes linear time and never raises.
"""
from __future__ import annotations

import re

from .numbers import cardinal_words, decimal_words, year_words

# Bump on every change of output: training data records which normalizer produced it.
NORMALIZER_VERSION = "1"

_SPACE = r"[ \u00a0\u202f]"  # ordinary, no-break and narrow no-break space
# A number: thousands-separated or plain digits, optional fraction; the guard forbids
# stopping inside a longer number ("1,23", "1.2.3").
_NUMBER = r"(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?(?![0-9]|[.,][0-9])"
# A number must not continue a word, another number, a version string or a date.
_START = r"(?<![0-9A-Za-z_.$£€¥])(?<![0-9][.,:\-–])"
_END = r"(?![0-9A-Za-z_]|[.,:\-–][0-9])"
# A minus sign opens a word ("-5 °C", "(-3%)"), unlike the hyphen of "10-20" or "A-4".
_MINUS = r"(?<![0-9A-Za-z_.$£€¥\-−])(?P<minus>[-−])(?=[0-9])"
_DASH = rf"(?:-|{_SPACE}?–{_SPACE}?)"
_AMPM = r"[AaPp]\.?[Mm]\.?"

_SCALES = {
    "thousand": "thousand", "k": "thousand", "K": "thousand",
    "million": "million", "m": "million", "M": "million", "mn": "million",
    "billion": "billion", "b": "billion", "B": "billion", "bn": "billion",
    "trillion": "trillion", "tn": "trillion",
}
_SCALE = r"(?i:thousand|million|billion|trillion)|mn|bn|tn|[kKmMbB]"

# name: (singular, plural, fractional unit singular, fractional unit plural)
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
    "€": ("euro", "euros", "cent", "cents"),
    "¥": ("yen", "yen", None, None),
}

# unit: (singular, plural). Abbreviations that are often written with a period keep it
# in the match (see _DOTTED_UNITS) so that "5 ft." does not become "five fort".
_UNITS = {
    "km/h": ("kilometer per hour", "kilometers per hour"),
    "kph": ("kilometer per hour", "kilometers per hour"),
    "mph": ("mile per hour", "miles per hour"),
    "m/s": ("meter per second", "meters per second"),
    "km": ("kilometer", "kilometers"),
    "kg": ("kilogram", "kilograms"),
    "cm": ("centimeter", "centimeters"),
    "mm": ("millimeter", "millimeters"),
    "m": ("meter", "meters"),
    "mi": ("mile", "miles"),
    "lb": ("pound", "pounds"),
    "lbs": ("pound", "pounds"),
    "oz": ("ounce", "ounces"),
    "ft": ("foot", "feet"),
    "in": ("inch", "inches"),
    "GB": ("gigabyte", "gigabytes"),
    "MB": ("megabyte", "megabytes"),
    "kB": ("kilobyte", "kilobytes"),
    "KB": ("kilobyte", "kilobytes"),
    "Hz": ("hertz", "hertz"),
    "kHz": ("kilohertz", "kilohertz"),
    "MHz": ("megahertz", "megahertz"),
    "GHz": ("gigahertz", "gigahertz"),
    "ml": ("milliliter", "milliliters"),
    "mL": ("milliliter", "milliliters"),
    "l": ("liter", "liters"),
    "L": ("liter", "liters"),
    "s": ("second", "seconds"),
    "sec": ("second", "seconds"),
    "ms": ("millisecond", "milliseconds"),
    "min": ("minute", "minutes"),
    "h": ("hour", "hours"),
    "hr": ("hour", "hours"),
    "hrs": ("hour", "hours"),
    "%": ("percent", "percent"),
    "€": ("euro", "euros"),
    "¢": ("cent", "cents"),
    "p": ("penny", "pence"),
}
_DOTTED_UNITS = {"mi", "lb", "lbs", "oz", "ft", "in", "sec", "min", "hr", "hrs"}
# "1960s" is a decade and "5 in the" a preposition: these units need a space, or (for
# "in") a period, or no space at all (for "p": "5p").
_UNITS_NEEDING_SPACE = {"s"}
_UNITS_NEEDING_NO_SPACE = {"p"}

_SIGN_UNITS = {"%", "€", "¢"}
_PLAIN_UNITS = [u for u in _UNITS if u not in _SIGN_UNITS and u not in _DOTTED_UNITS]
# Each name is followed by a guard that forbids a letter, digit or '/' after it, so the
# order of the alternatives cannot make "mi" match inside "min" or "km" inside "km/h".
_UNIT = (
    r"(?P<unit>%|€|¢"
    rf"|°(?:{_SPACE}?[CF](?![A-Za-z0-9]))?|℃|℉"
    r"|(?:" + "|".join(re.escape(u) for u in sorted(_DOTTED_UNITS)) + r")(?P<unit_dot>\.)?(?![A-Za-z0-9/])"
    r"|(?:" + "|".join(re.escape(u) for u in _PLAIN_UNITS) + r")(?![A-Za-z0-9/]))"
)

_TOKEN_RE = re.compile(
    # money with the sign first: "$1,234.56", "$2 million", "$5-10", "£3"
    rf"(?P<cur>[$£€¥]){_SPACE}?(?P<cur_a>{_NUMBER})"
    rf"(?:{_DASH}[$£€¥]?(?P<cur_b>{_NUMBER}))?"
    rf"(?:{_SPACE}?(?P<cur_scale>{_SCALE})(?![A-Za-z0-9])|{_END})"
    # clock time: "10:30", "7:05 pm", "10:30a.m."
    rf"|{_START}(?P<hour>[0-9]{{1,2}}):(?P<minute>[0-5][0-9])(?![0-9]|[:.,][0-9])"
    rf"(?:{_SPACE}?(?P<ampm>[AaPp]\.?{_SPACE}?[Mm]\.?)(?![A-Za-z0-9])|{_END})"
    # hour with a.m./p.m.: "7pm", "7 p.m."
    rf"|{_START}(?P<bare_hour>[0-9]{{1,2}}){_SPACE}?(?P<bare_ampm>{_AMPM})(?![A-Za-z0-9])"
    # a number or a range, optionally followed by a unit: "10-20", "45%", "3.5 kg"
    rf"|(?:{_MINUS}|{_START})(?P<a>{_NUMBER})(?:(?P<dash>{_DASH})(?P<b>{_NUMBER}))?"
    rf"(?:(?P<unit_space>{_SPACE}?){_UNIT}|{_END})"
)


def _is_one(number: str) -> bool:
    return number.replace(",", "").lstrip("0") == "1"


def _is_year_like(number: str) -> bool:
    return len(number) == 4 and number.isdigit() and 1000 <= int(number) <= 2999


def _needs_reading(number: str) -> bool:
    """Whether a bare number is one the reference cleaners would read badly."""
    whole, _, fraction = number.partition(".")
    if whole.startswith("0") and whole != "0":
        return False  # codes and ids such as "007"
    if "," in whole or len(fraction) >= 2:
        return True
    return len(whole) >= 5 or (len(whole) == 4 and not _is_year_like(whole))


def _range_end_words(a: str, b: str, dash: str, as_years: bool) -> tuple[str, str] | None:
    """Words for the two ends of "a-b", or None when it is not a range (score, phone)."""
    if dash == "-" and len(a) == 3 and len(b) == 4 and (a + b).isdigit():
        return None  # "555-1234" is a phone number
    a_value = float(a.replace(",", "")) if len(a) < 300 else None
    b_value = float(b.replace(",", "")) if len(b) < 300 else None
    if as_years and _is_year_like(a) and len(b) == 2 and b.isdigit():
        full_b = a[:2] + b  # "1990-95": the second year shares the century
        if int(full_b) > int(a):
            return year_words(a), year_words(full_b)
        return None
    if a_value is None or b_value is None or not a_value < b_value:
        return None
    if as_years:
        read = lambda n: year_words(n) if _is_year_like(n) else decimal_words(n)  # noqa: E731
        return read(a), read(b)
    return decimal_words(a), decimal_words(b)


def _money_words(symbol: str, amount: str, scale: str | None) -> str:
    unit, units, sub_unit, sub_units = _CURRENCIES[symbol]
    whole, _, fraction = amount.replace(",", "").partition(".")
    if scale or (fraction and (len(fraction) > 2 or sub_unit is None)):
        words = decimal_words(amount)
        return f"{words} {scale} {units}" if scale else f"{words} {units}"
    cents = fraction.ljust(2, "0") if fraction else "00"
    has_whole = bool(whole.lstrip("0"))
    has_cents = cents != "00"
    parts = []
    if has_whole or not has_cents:
        parts.append(f"{cardinal_words(whole)} {unit if _is_one(whole) else units}")
    if has_cents:
        parts.append(f"{cardinal_words(cents)} {sub_unit if cents == '01' else sub_units}")
    return " and ".join(parts)


_NEXT_VISIBLE_RE = re.compile(r"\s*(\S)?")


def _keeps_period(text: str, end: int) -> bool:
    """Whether a period swallowed with "a.m." or "ft." also ended the sentence."""
    if end >= len(text):
        return True
    if text[end] in "\"')]”’":
        return True
    visible = _NEXT_VISIBLE_RE.match(text, end)
    assert visible is not None  # the pattern matches anywhere, empty at the end
    next_char = visible.group(1)
    return text[end].isspace() and (next_char is None or next_char.isupper())


def _ampm_words(token: str) -> str:
    return "a m" if token[0] in "Aa" else "p m"


def _with_period(words: str, token: str, text: str, end: int) -> str:
    return words + "." if token.endswith(".") and _keeps_period(text, end) else words


def _read_money(match: re.Match[str]) -> str | None:
    symbol, a, b = match["cur"], match["cur_a"], match["cur_b"]
    scale_token = match["cur_scale"]
    scale = _SCALES.get(scale_token, scale_token.lower()) if scale_token else None
    if b is None:
        return _money_words(symbol, a, scale)
    if "." not in a + b:
        ends = _range_end_words(a, b, "-", as_years=False)
        if ends is None:
            return None
        units = _CURRENCIES[symbol][1]
        return f"{ends[0]} to {ends[1]} {scale} {units}" if scale else f"{ends[0]} to {ends[1]} {units}"
    return _money_words(symbol, a, scale) + " to " + _money_words(symbol, b, scale)


def _read_time(match: re.Match[str], text: str) -> str | None:
    hour, minute, ampm = int(match["hour"]), match["minute"], match["ampm"]
    if hour > 24 or (ampm and not 1 <= hour <= 12):
        return None
    words = cardinal_words(match["hour"])
    if minute == "00":
        if not ampm:
            words += " o'clock" if 1 <= hour <= 12 else " hundred"
    elif minute.startswith("0"):
        words += " oh " + cardinal_words(minute)
    else:
        words += " " + cardinal_words(minute)
    if ampm:
        words = _with_period(words + " " + _ampm_words(ampm), ampm, text, match.end())
    return words


def _read_bare_hour(match: re.Match[str], text: str) -> str | None:
    if not 1 <= int(match["bare_hour"]) <= 12:
        return None
    ampm = match["bare_ampm"]
    words = cardinal_words(match["bare_hour"]) + " " + _ampm_words(ampm)
    return _with_period(words, ampm, text, match.end())


def _unit_words(unit: str, space: str, dotted: bool, plural: bool) -> str | None:
    """Spoken unit, or None when context says it is not a unit ("1960s", "5 in the")."""
    if unit[0] in "°℃℉":
        scale = unit[-1] if unit[-1] in "CF" else {"℃": "C", "℉": "F"}.get(unit, "")
        names = {"C": " Celsius", "F": " Fahrenheit"}
        return ("degrees" if plural else "degree") + names.get(scale, "")
    if unit in _UNITS_NEEDING_SPACE and not space:
        return None
    if unit in _UNITS_NEEDING_NO_SPACE and space:
        return None
    if unit == "in" and space and not dotted:
        return None
    singular, plural_name = _UNITS[unit]
    return plural_name if plural else singular


def _read_number_or_range(match: re.Match[str]) -> str | None:
    a, b = match["a"], match["b"]
    if b is not None:
        ends = _range_end_words(a, b, match["dash"], as_years=True)
        return None if ends is None else f"{ends[0]} to {ends[1]}"
    return decimal_words(a) if _needs_reading(a) else None


def _read_quantity(match: re.Match[str], text: str) -> str | None:
    a, b, unit = match["a"], match["b"], match["unit"]
    if unit is None:
        return _read_number_or_range(match)
    dotted = match["unit_dot"] is not None
    plural = b is not None or not _is_one(a) or "." in a
    unit_words = _unit_words(unit[:-1] if dotted else unit, match["unit_space"], dotted, plural)
    if unit_words is None:
        # Not a unit after all ("5 in the"): read the number alone if it stands alone.
        if not match["unit_space"]:
            return None
        number = _read_number_or_range(match)
        return None if number is None else number + text[match.start("unit_space") : match.end()]
    if dotted:
        unit_words = _with_period(unit_words, unit, text, match.end())
    if b is None:
        return f"{decimal_words(a)} {unit_words}"
    ends = _range_end_words(a, b, match["dash"], as_years=False)
    if ends is None:
        # "3-2 km" is no range: keep "3-" and read the quantity that has the unit.
        return a + match["dash"] + decimal_words(b) + " " + unit_words
    return f"{ends[0]} to {ends[1]} {unit_words}"


def _replacement(match: re.Match[str], text: str) -> str:
    if match["cur"] is not None:
        words = _read_money(match)
    elif match["hour"] is not None:
        words = _read_time(match, text)
    elif match["bare_hour"] is not None:
        words = _read_bare_hour(match, text)
    else:
        words = _read_quantity(match, text)
        if words is not None and match["minus"] is not None:
            words = "minus " + words
    if words is None:
        return match.group(0)
    # Keep words from gluing onto neighbours: "US$5" -> "US five dollars".
    start, end = match.start(), match.end()
    if start > 0 and text[start - 1].isalnum():
        words = " " + words
    if end < len(text) and text[end].isalnum() and words[-1:].isalnum():
        words += " "
    return words


def normalize_text(text: str) -> str:
    """Rewrite money, times, percentages, units, ranges and long numbers as words.

    "He paid £5 at 10:30am" -> "He paid five pounds at ten thirty a m". Text without such
    tokens is returned unchanged (the same string). Never raises.
    """
    if not any(c in text for c in "0123456789"):
        return text
    return _TOKEN_RE.sub(lambda match: _replacement(match, text), text)
