"""Hostile text through the whole front-end: never an undocumented exception, never a hang.

CI runs a small sample; ``make fuzz`` runs 2,500 generated cases for each of the five
properties (12,500 in all; ``TACOGLOW_FUZZ_EXAMPLES`` sets the number per property), each under a
per-case time limit, and prints the case count and the slowest case.
"""
import os
import signal
import time
from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tacoglow.text import normalize_text, prepare_text, split_sentences, symbols, text_to_sequence

EXAMPLES = int(os.environ.get("TACOGLOW_FUZZ_EXAMPLES", "150"))
CASE_LIMIT_S = 10.0
# The only errors the front-end documents, by message prefix.
DOCUMENTED = ("text is empty", "text ")

prepare_text("warm up: 12 $3.50 10:30am \u00e9")  # lazy imports (inflect) happen here, not in a timed case
_slowest = {"seconds": 0.0, "text": ""}
_count = {"cases": 0}


@contextmanager
def time_limit(seconds: float, text: str):
    """Fail the case (instead of hanging the run) if it takes longer than ``seconds``."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"front-end took over {seconds} s on {text[:80]!r} ({len(text)} chars)")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.perf_counter()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        elapsed = time.perf_counter() - start
        _count["cases"] += 1
        if elapsed > _slowest["seconds"]:
            _slowest.update(seconds=elapsed, text=text)


def check_front_end(text: str) -> None:
    with time_limit(CASE_LIMIT_S, text):
        normalized = normalize_text(text)
        assert isinstance(normalized, str)
        for cleaners in (["english_cleaners"], ["basic_cleaners"], ["transliteration_cleaners"]):
            for source in (text, normalized):
                ids = text_to_sequence(source, cleaners)
                assert all(isinstance(i, int) and 0 <= i < len(symbols) for i in ids)
        try:
            ids = prepare_text(text)
        except ValueError as error:
            message = str(error)
            assert message.startswith(DOCUMENTED) and "\n" not in message, message
        else:
            assert ids and all(0 <= i < len(symbols) for i in ids)
        pieces = split_sentences(text, max_chars=120)
        assert all(p.strip() for p in pieces)


digits = st.text(alphabet="0123456789", min_size=1, max_size=400)
money_time = st.lists(
    st.one_of(digits, st.sampled_from(["$", "£", "€", "¥", "%", " %", ":", "am", "pm", "a.m.", ".", ",", "-", "–",
                                       "—", "/", " ", "km", "kg", "°C", "°F", "st", "nd", "th", "1st", "s",
                                       "million", "Mr.", "Dr.", "p.m.", "'", "+", "(", ")"])),
    max_size=40).map("".join)
braces = st.text(alphabet="{}{ }AA1 HH AH0 L OW1 @x\n", max_size=3000)
scripts = st.text(alphabet=st.one_of(
    st.characters(min_codepoint=0x0590, max_codepoint=0x06FF),  # Hebrew, Arabic (right to left)
    st.characters(min_codepoint=0x0300, max_codepoint=0x036F),  # combining marks
    st.characters(min_codepoint=0x1F300, max_codepoint=0x1FAFF),  # emoji
    st.characters(min_codepoint=0x0000, max_codepoint=0x001F),  # control characters
    st.sampled_from(["\u200f", "\u202e", "\u200b", "\ufeff", "\u2028", "\u0301", "ﬁ", "Ⅻ", "①", "½"]),
    st.characters(),
), max_size=300)
anything = st.text(alphabet=st.characters(blacklist_categories=()), max_size=500)  # surrogates too
mixed = st.lists(st.one_of(anything, money_time, braces, scripts, st.text(max_size=50)), max_size=6).map("".join)

SETTINGS = settings(max_examples=EXAMPLES, deadline=None, database=None,
                    suppress_health_check=list(HealthCheck))


@SETTINGS
@given(anything)
def test_arbitrary_unicode(text):
    check_front_end(text)


@SETTINGS
@given(money_time)
def test_currency_time_and_number_edges(text):
    check_front_end(text)


@SETTINGS
@given(braces)
def test_malformed_arpabet_braces(text):
    check_front_end(text)


@SETTINGS
@given(scripts)
def test_scripts_emoji_controls_and_marks(text):
    check_front_end(text)


@SETTINGS
@given(mixed)
def test_mixtures(text):
    check_front_end(text)


LONG = {
    "letters": "The quick brown fox jumps over the lazy dog. " * 2300,
    "digits": "7" * 100_000,
    "grouped numbers": "1,234,567 " * 10_000,
    "money": "$1,234.56 " * 10_000,
    "open braces": "{" * 100_000,
    "close braces": "}{" * 50_000,
    "arpabet": "{HH AH0 L OW1} " * 7000,
    "emoji": "\U0001F600" * 100_000,
    "combining": "e\u0301" * 50_000,
    "no spaces": "abc" * 33_334,
    "dots": "." * 100_000,
    "times": "10:30am " * 12_500,
}


@pytest.mark.parametrize("name", sorted(LONG))
def test_100k_character_inputs_finish(name):
    check_front_end(LONG[name])


def _seconds(text: str) -> float:
    # CPU seconds of this process (other processes' load does not count), the fastest of three.
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        check_front_end(text)
        best = min(best, time.process_time() - start)
    return best


@pytest.mark.parametrize("name", sorted(LONG))
def test_time_grows_linearly_with_length(name):
    # 10x the text must cost about 10x the time; a quadratic path would cost 100x.
    big = LONG[name]
    small = big[: len(big) // 10]
    assert _seconds(big) < 30 * _seconds(small) + 0.05


def test_hundreds_of_digits_are_read_out():
    words = normalize_text("Pay $" + "9" * 300 + ".99 now.")
    assert "9" not in words and "dollars" in words
    ids = prepare_text("1" * 500)
    assert len(ids) > 500


def teardown_module(module):
    print(f"\nfront-end fuzz: {_count['cases']} cases, slowest {_slowest['seconds']:.3f} s "
          f"on {_slowest['text'][:60]!r} ({len(_slowest['text'])} chars)")
