"""SSML: what each tag does to the segments and to the audio, the refusals of hostile documents, the silences
that sentence jobs carry (joined audio, streams, the server), and the rate's mel stretch."""
import logging
import re

import httpx
import numpy as np
import pytest
import torch

from tacoglow import Synthesizer
from tacoglow.audio import stretch_mel
from tacoglow.serve import ServerLimits, create_app
from tacoglow.ssml import (
    MAX_SSML_BYTES,
    PARAGRAPH_PAUSE_FACTOR,
    SSMLError,
    SSMLSegment,
    is_ssml,
    parse_ssml,
)
from tacoglow.text import TextError, split_sentences
from tacoglow.text.symbols import SYMBOL_TO_ID

from conftest import fixture_path
from test_server import error_of, pcm16, running_server, same_audio, samples

RATE = 22050
BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE speak [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<speak>&lol9;</speak>"""
EXTERNAL = '<?xml version="1.0"?><!DOCTYPE speak [<!ENTITY x SYSTEM "file:///etc/passwd">]><speak>&x;</speak>'


def speak(body: str) -> str:
    return f'<speak version="1.1" xmlns="http://www.w3.org/2001/10/synthesis">{body}</speak>'


def segments(body: str, **kwargs) -> list[tuple[str, float, float]]:
    return [(s.text, s.rate, round(s.pause, 6)) for s in parse_ssml(speak(body), **kwargs).segments]


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    return Synthesizer.from_checkpoints(fixture_path("tacotron2_small_ngc.pt"), fixture_path("waveglow_small_ngc.pt"))


# --------------------------------------------------------------------------------- the parser
def test_breaks_by_time_and_strength():
    assert segments('Hello <break time="500ms"/> world. <break time="1.2s"/>Again') == [
        ("Hello", 1.0, 0.5), ("world.", 1.0, 1.2), ("Again", 1.0, 0.0)]
    assert segments("a <break/> b") == [("a", 1.0, 0.4), ("b", 1.0, 0.0)]  # no attribute: medium
    for strength, seconds in [("x-weak", 0.1), ("weak", 0.2), ("medium", 0.4), ("strong", 0.7), ("x-strong", 1.0)]:
        assert segments(f'a<break strength="{strength}"/>b') == [("a", 1.0, seconds), ("b", 1.0, 0.0)]
    # A break of nothing is no boundary: the words stay one segment, still two words.
    assert segments('a<break strength="none"/>b <break time="0ms"/> c') == [("a b c", 1.0, 0.0)]
    # time wins over strength, as W3C says; breaks in a row add up; trailing ones stay.
    assert segments('a<break time="2s" strength="weak"/><break time="250ms"/>b<break time="1s"/>') == [
        ("a", 1.0, 2.25), ("b", 1.0, 1.0)]


def test_sentence_and_paragraph_edges_and_breaks_replace_them():
    assert segments("<p><s>One.</s><s>Two.</s></p><p>Three.</p>", sentence_pause=0.25) == [
        ("One.", 1.0, 0.25), ("Two.", 1.0, 0.25 * PARAGRAPH_PAUSE_FACTOR), ("Three.", 1.0, 0.0)]
    assert segments('<s>One.</s><break time="50ms"/><s>Two.</s>') == [("One.", 1.0, 0.05), ("Two.", 1.0, 0.0)]
    assert segments('<s>One.</s><break strength="none"/><s>Two.</s>') == [("One.", 1.0, 0.0), ("Two.", 1.0, 0.0)]


def test_a_break_before_any_text_is_ignored_with_a_warning():
    parsed = parse_ssml(speak('<break time="3s"/>Hi.'))
    assert parsed.segments == [SSMLSegment("Hi.", 1.0, 0.0)]
    assert parsed.warnings == ["a <break> before any text is ignored"]


def test_prosody_rates_nest_and_are_clamped():
    assert segments('Normal <prosody rate="x-slow">slow <prosody rate="+100%">back</prosody> '
                    '<prosody rate="fast">fast</prosody></prosody> <prosody rate="90%">ninety</prosody>') == [
        ("Normal", 1.0, 0.0), ("slow", 0.5, 0.0), ("back", 1.0, 0.0), ("fast", 1.25, 0.0), ("ninety", 0.9, 0.0)]
    # W3C SSML 1.1: a percentage (or multiplier) is of the voice's default rate, whatever encloses it; a signed
    # percentage changes the enclosing rate.
    assert segments('<prosody rate="50%"><prosody rate="-20%">a</prosody><prosody rate="1.5">b</prosody>'
                    '<prosody rate="50%">c</prosody></prosody>') == [("a", 0.4, 0.0), ("b", 1.5, 0.0), ("c", 0.5, 0.0)]
    parsed = parse_ssml(speak('<prosody rate="1000%" pitch="+2st">quick</prosody>'))
    assert parsed.segments == [SSMLSegment("quick", 4.0, 0.0)]
    assert parsed.warnings == ["<prosody pitch> is not supported: ignored",
                               "<prosody rate='1000%'> gives rate 10, outside [0.25, 4]: 4 is used"]
    for bad in ("fastest", "+10", "ten%"):
        with pytest.raises(SSMLError, match=re.escape(f"<prosody rate='{bad}'>: ")):
            parse_ssml(speak(f'<prosody rate="{bad}">x</prosody>'))


@pytest.mark.parametrize("kind, text, fmt, words", [
    ("characters", "TTS", None, "T T S"),
    ("spell-out", "R2-D2", None, "R two D two"),
    ("cardinal", "1,234", None, "one thousand two hundred thirty-four"),
    ("cardinal", "-3.25", None, "minus three point two five"),
    ("ordinal", "21", None, "twenty-first"),
    ("ordinal", "112th", None, "one hundred twelfth"),
    ("digits", "2048", None, "two zero four eight"),
    ("date", "12/25/2020", "mdy", "December twenty-fifth, twenty twenty"),
    ("date", "25.12.1999", "dmy", "December twenty-fifth, nineteen ninety-nine"),
    ("date", "2021-03-04", None, "March fourth, twenty twenty-one"),
    ("date", "07/2020", "my", "July twenty twenty"),
    ("date", "03", "d", "the third"),
    ("time", "10:30", None, "ten thirty"),
    ("time", "7:05:01 pm", None, "seven oh five p m and one second"),
    ("telephone", "+1 (555) 010-9999", None, "plus one, five five five, zero one zero, nine nine nine nine"),
])
def test_say_as_reads_its_kind(kind, text, fmt, words):
    attribute = f' format="{fmt}"' if fmt else ""
    parsed = parse_ssml(speak(f'<say-as interpret-as="{kind}"{attribute}>{text}</say-as>'))
    assert parsed.segments == [SSMLSegment(words)] and parsed.warnings == []


def test_say_as_that_does_not_fit_is_spoken_as_it_is_with_a_warning():
    parsed = parse_ssml(speak('On <say-as interpret-as="date" format="mdy">13/45/2020</say-as> at '
                              '<say-as interpret-as="vehicle">KITT</say-as>.'))
    assert parsed.segments == [SSMLSegment("On 13/45/2020 at KITT.")]
    assert parsed.warnings == ["<say-as interpret-as='date'> cannot read '13/45/2020': it is spoken as it is",
                               "<say-as interpret-as='vehicle'> is not supported (use one of characters, spell-out, "
                               "cardinal, ordinal, digits, date, time, telephone): its text is spoken as it is"]


def test_sub_phoneme_and_unknown_tags(caplog):
    assert segments('The <sub alias="World Health Organization">WHO</sub> said '
                    '<phoneme alphabet="x-arpabet" ph="hh ah0 l ow1">hello</phoneme>.') == [
        ("The World Health Organization said {HH AH0 L OW1}.", 1.0, 0.0)]
    with caplog.at_level(logging.WARNING, logger="tacoglow.ssml"):
        parsed = parse_ssml(speak('<emphasis level="strong">Very</emphasis> <phoneme alphabet="ipa" ph="wɜːld">'
                                  'world</phoneme> <emphasis>again</emphasis>'))
    assert parsed.segments == [SSMLSegment("Very world again")]
    assert parsed.warnings == ["<emphasis> is not supported: its text is spoken as it is",
                               "<phoneme alphabet='ipa'> is not supported (only alphabet='x-arpabet' with ph): "
                               "its text is spoken"]
    assert [r.getMessage() for r in caplog.records] == [f"SSML: {w}" for w in parsed.warnings]
    with pytest.raises(SSMLError, match=r"<phoneme ph='HH QQ1'>: QQ1 is not an ARPAbet phone"):
        parse_ssml(speak('<phoneme alphabet="x-arpabet" ph="HH QQ1">x</phoneme>'))


def test_braces_in_ssml_text_are_not_read_as_phones():
    assert segments("a {HH} b") == [("a HH b", 1.0, 0.0)]


def test_is_ssml():
    assert is_ssml("<speak>Hi</speak>") and is_ssml('  \n<speak version="1.1">') and is_ssml("<speak/>")
    assert is_ssml('\ufeff<?xml version="1.0"?>\n<speak>Hi</speak>') and is_ssml(BILLION_LAUGHS.split("\n", 1)[1])
    assert not is_ssml("Hello <speak>") and not is_ssml("<speaker> said hi") and not is_ssml("speak")


@pytest.mark.parametrize("document, message", [
    ("<speak>Hello", "malformed SSML: no element found: line 1, column 12"),
    ("<speak><s>Hi</p></speak>", "malformed SSML: mismatched tag: line 1, column 14"),
    ("<p>Hi</p>", "the root element of an SSML document must be <speak>, got <p>"),
    (BILLION_LAUGHS, "SSML documents may not have a DTD or declare entities (DTDForbidden)"),
    (EXTERNAL, "SSML documents may not have a DTD or declare entities (DTDForbidden)"),
    ("<speak>&lol;</speak>", "malformed SSML: undefined entity: line 1, column 7"),
    (speak('<break time="soon"/>'), "<break time='soon'>: give a time such as '500ms' or '1.2s'"),
    (speak('<break strength="huge"/>'), "<break strength='huge'>: use one of none, x-weak"),
    (speak('<phoneme alphabet="x-arpabet" ph=" ">x</phoneme>'),
     "<phoneme ph=' '>: give its phones, CMUdict's ARPAbet (e.g. 'HH AH0 L OW1')"),
    (speak('a<break time="10s"/>' * 61), "the SSML document's breaks add up to more than 600 s"),
    (speak("<s>" * 101 + "deep" + "</s>" * 101), "the SSML document nests elements more than 100 deep"),
])
def test_bad_documents_are_refused_with_a_clear_message(document, message):
    with pytest.raises(SSMLError) as error:
        parse_ssml(document)
    assert str(error.value).startswith(message)
    assert isinstance(error.value, ValueError)


def test_a_large_document_is_refused_before_it_is_parsed(monkeypatch):
    import defusedxml.ElementTree

    def parse(*args, **kwargs):
        raise AssertionError("an oversized document reached the XML parser")

    monkeypatch.setattr(defusedxml.ElementTree, "fromstring", parse)
    big = speak("word " * (2 << 20))  # 10 MB
    with pytest.raises(SSMLError, match=f"has {len(big)} bytes, more than the {MAX_SSML_BYTES} read at once"):
        parse_ssml(big)
    multibyte = speak("é" * (MAX_SSML_BYTES // 2))  # under the limit in characters, over it in bytes
    with pytest.raises(SSMLError, match=f"has {len(multibyte.encode())} bytes"):
        parse_ssml(multibyte)
    with pytest.raises(AssertionError, match="reached the XML parser"):
        parse_ssml(speak("small"))


def test_long_breaks_are_cut_with_a_warning():
    parsed = parse_ssml(speak('a<break time="60s"/>b'))
    assert parsed.segments == [SSMLSegment("a", 1.0, 10.0), SSMLSegment("b")]
    assert parsed.warnings == ["<break time='60s'> is longer than 10 s: cut to 10 s"]


# --------------------------------------------------------------------------------- the mel stretch
def test_stretch_mel_interpolates_linearly_in_time():
    mel = torch.arange(4.0).repeat(2, 1)  # (n_mel 2, frames 4)
    assert stretch_mel(mel, 1.0) is mel and stretch_mel(torch.zeros(2, 0), 0.5).shape == (2, 0)
    slow = stretch_mel(mel, 0.5)
    assert torch.equal(slow[0], torch.tensor([0.0, 0.25, 0.75, 1.25, 1.75, 2.25, 2.75, 3.0])) and torch.equal(*slow)
    assert torch.equal(stretch_mel(mel, 2.0)[0], torch.tensor([0.5, 2.5]))
    assert stretch_mel(torch.zeros(80, 97), 0.8).shape == (80, 121) and stretch_mel(mel, 100.0).shape == (2, 1)
    with pytest.raises(ValueError, match="rate must be a positive number, got 0"):
        stretch_mel(mel, 0.0)


# --------------------------------------------------------------------------------- the synthesizer
def gaps(speech) -> list[int]:
    """Samples between the end of each sentence and the start of the next (or the end of the audio)."""
    ends = [start + s.audio.numel() for start, s in zip(speech.starts, speech.sentences)]
    return [b - a for a, b in zip(ends, speech.starts[1:] + [speech.audio.numel()])]


def test_a_500ms_break_adds_exactly_half_a_second_of_silence(synth):
    speech = synth.synthesize_ssml(speak('Hello <break time="500ms"/> world.'), seed=1)
    assert [s.text for s in speech.sentences] == ["Hello", "world."]
    assert gaps(speech) == [round(0.5 * RATE), 0]
    for start, s in zip(speech.starts, speech.sentences):
        assert torch.equal(speech.audio[start:start + s.audio.numel()], s.audio)
    silence = speech.audio[speech.sentences[0].audio.numel():speech.starts[1]]
    assert silence.numel() == 11025 and not silence.any()
    assert torch.equal(speech.sentences[0].audio, synth.synthesize("Hello", seed=1).audio)  # the same first job


def test_sentence_and_paragraph_pauses_in_the_audio(synth):
    document = speak('<p><s>First one.</s><s>Second.</s></p><p>Third. Fourth.</p><break time="750ms"/>')
    jobs = synth.sentence_jobs(document, 3, ssml=True)
    pause = synth.synthesis.sentence_pause
    assert [(j.text, j.pause) for j in jobs] == [("First one.", pause), ("Second.", pause * PARAGRAPH_PAUSE_FACTOR),
                                                 ("Third.", pause), ("Fourth.", 0.75)]
    speech = synth.synthesize_ssml(document, seed=3)
    assert gaps(speech) == [round(pause * RATE), round(pause * PARAGRAPH_PAUSE_FACTOR * RATE), round(pause * RATE),
                            round(0.75 * RATE)]


def test_plain_text_pauses_follow_the_sentence_pause_setting(synth):
    jobs = synth.sentence_jobs("One. Two. Three.", 1)
    assert [(j.rate, j.pause) for j in jobs] == [(1.0, 0.2), (1.0, 0.2), (1.0, 0.0)]
    wide = Synthesizer(synth.tacotron2, synth.vocoder, sentence_pause=0.5)
    a, b = synth.synthesize("One. Two. Three.", seed=1), wide.synthesize("One. Two. Three.", seed=1)
    assert gaps(a) == [4410, 4410, 0] and gaps(b) == [11025, 11025, 0]
    for x, y in zip(a.sentences, b.sentences):
        assert torch.equal(x.audio, y.audio)


def test_plain_text_pieces_without_words_are_no_sentences(synth):
    # "Wait... ?" splits into "Wait..." and "?": the "?" alone is no sentence (it used to refuse the whole text).
    assert [(j.index, j.text, j.pause) for j in synth.sentence_jobs("Wait... ?", 1)] == [(0, "Wait...", 0.0)]
    assert [(j.text, j.pause) for j in synth.sentence_jobs("Hello. !!! World.", 1)] == [
        ("Hello.", 0.2), ("World.", 0.0)]
    with pytest.raises(TextError, match=r"text '\?!' has no characters the model can speak"):
        synth.sentence_jobs("?!", 1)


def test_a_phoneme_longer_than_a_sentence_is_read_as_phones_in_every_piece(synth):
    phones = " ".join(["HH AH0 L OW1"] * 12)  # 48 phones, over the fixture's 40 characters per piece
    jobs = synth.sentence_jobs(speak(f'<phoneme alphabet="x-arpabet" ph="{phones}">hellos</phoneme>'), 1, ssml=True)
    assert len(jobs) > 1 and all(j.text.startswith("{") and j.text.endswith("}") for j in jobs)
    assert [i for j in jobs for i in j.ids] == synth.text_to_ids("{" + phones + "}")  # phones, not letters
    assert split_sentences("Say {HH AH0 L OW1 HH AH0 L OW1} now", max_chars=14) == [
        "Say {HH AH0 L}", "{OW1 HH AH0 L}", "{OW1} now"]
    assert split_sentences("{HH AH0 }", max_chars=7) == ["{HH AH0}"]  # a piece of no phone ("}") is dropped


def test_say_as_characters_sub_and_phoneme_give_their_ids(synth):
    (spelled,) = synth.sentence_jobs(speak('<say-as interpret-as="characters">TTS</say-as>'), 1, ssml=True)
    assert spelled.text == "T T S" and spelled.ids == synth.text_to_ids("T T S")
    assert spelled.ids == [SYMBOL_TO_ID[c] for c in "t t s"]
    (phones,) = synth.sentence_jobs(speak('<phoneme alphabet="x-arpabet" ph="HH AH0 L OW1">hi</phoneme>'), 1,
                                    ssml=True)
    assert phones.ids == [SYMBOL_TO_ID["@" + p] for p in ("HH", "AH0", "L", "OW1")]
    (alias,) = synth.sentence_jobs(speak('<sub alias="Doctor">Dr.</sub> Who'), 1, ssml=True)
    assert alias.text == "Doctor Who" and alias.ids == synth.text_to_ids("Doctor Who")


def test_unknown_tag_speaks_its_text(synth, caplog):
    with caplog.at_level(logging.WARNING, logger="tacoglow.ssml"):
        (job,) = synth.sentence_jobs(speak("<emphasis>Hello</emphasis> there."), 1, ssml=True)
    assert job.ids == synth.text_to_ids("Hello there.")
    assert "SSML: <emphasis> is not supported: its text is spoken as it is" in caplog.text


def test_prosody_rate_changes_the_duration_by_its_factor(synth):
    plain = synth.synthesize("Hello there.", seed=2)
    frames = plain.sentences[0].mel_length
    for rate, body in [(0.5, '<prosody rate="50%">Hello there.</prosody>'),
                       (2.0, '<prosody rate="x-slow"><prosody rate="+300%">Hello there.</prosody></prosody>'),
                       (0.75, '<prosody rate="slow">Hello there.</prosody>')]:
        speech = synth.synthesize_ssml(speak(body), seed=2)
        (sentence,) = speech.sentences
        assert sentence.rate == rate and sentence.mel_length == frames  # the mel is decoded as before
        assert speech.audio.numel() == round(frames / rate) * 256
        assert abs(speech.audio.numel() / 256 - plain.audio.numel() / 256 / rate) <= 0.5  # the factor, to a frame
    stretched = synth.vocode(stretch_mel(plain.sentences[0].mel, 0.5), generator=synth.sentence_jobs(
        "Hello there.", 2)[0].generator(1))
    assert torch.equal(synth.synthesize_ssml(speak('<prosody rate="0.5">Hello there.</prosody>'), seed=2).audio,
                       stretched)


def test_streams_carry_each_sentences_pause(synth):
    document = speak('One <break time="300ms"/> two. <prosody rate="slow">Three.</prosody><break time="1s"/>')
    whole = synth.synthesize_ssml(document, seed=4)
    streamed = list(synth.stream(document, seed=4, ssml=True))
    assert [(s.text, s.rate, s.pause) for s in streamed] == [("One", 1.0, 0.3), ("two.", 1.0, 0.0),
                                                             ("Three.", 0.75, 1.0)]
    joined = torch.cat([torch.cat([s.audio, torch.zeros(round(s.pause * RATE))]) for s in streamed])
    assert torch.equal(joined, whole.audio)
    results = [c.result for c in synth.stream_audio(document, seed=4, ssml=True) if c.result is not None]
    assert [(r.pause, r.audio.numel()) for r in results] == [(s.pause, s.audio.numel()) for s in streamed]


def test_pieces_without_words_are_skipped_and_keep_their_pause(synth):
    jobs = synth.sentence_jobs(speak('Hi <break time="200ms"/> , <break time="300ms"/> there'), 1, ssml=True)
    assert [(j.index, j.text, j.pause) for j in jobs] == [(0, "Hi", 0.5), (1, "there", 0.0)]
    with pytest.raises(TextError, match="the SSML document has no text to speak"):
        synth.synthesize_ssml(speak('<break time="1s"/> ... !'))
    with pytest.raises(SSMLError, match="malformed SSML"):
        synth.synthesize_ssml("<speak>Hi")


# --------------------------------------------------------------------------------- odd documents
@pytest.mark.parametrize("text, fmt", [
    ("\u00b2/\u00b3/2020", "mdy"),   # superscripts: digits to str.isdigit(), not to int()
    ("9" * 5000, "y"), ("1/1/" + "9" * 5000, "mdy"), ("9" * 5000, "m"),  # int() refuses over 4,300 digits
    ("2021-02-29", None), ("31.04.2020", "dmy"), ("2/30", "md"), ("00", "d"),  # no such day
])
def test_say_as_date_that_is_no_date_is_spoken_as_it_is(text, fmt):
    attribute = f' format="{fmt}"' if fmt else ""
    parsed = parse_ssml(speak(f'<say-as interpret-as="date"{attribute}>{text}</say-as>'))
    assert parsed.segments == [SSMLSegment(text)]
    assert parsed.warnings == [f"<say-as interpret-as='date'> cannot read {text[:40]!r}: it is spoken as it is"]


def test_say_as_date_of_a_leap_day():
    assert segments('<say-as interpret-as="date">2020-02-29</say-as> <say-as interpret-as="date" format="md">'
                    '2/29</say-as>') == [("February twenty-ninth, twenty twenty February twenty-ninth", 1.0, 0.0)]


def test_a_lone_surrogate_is_refused_in_one_line():
    # What a command-line argument that is not UTF-8 becomes in Python, or a JSON string's "\ud800".
    with pytest.raises(SSMLError, match=r"^the SSML document is not valid Unicode text: '\\udcff' at character "
                                        r"68 is half of a surrogate pair; give UTF-8 text$"):
        parse_ssml(speak("Caf\udcff"))


def test_marks_descriptions_and_metadata_are_not_spoken():
    parsed = parse_ssml(speak('<metadata><title>Notes</title></metadata><meta name="seeAlso" content="x"/>'
                              'Go <mark name="here"/>now<audio src="bell.wav"><desc>a bell</desc>ding</audio>.'))
    assert parsed.segments == [SSMLSegment("Go nowding.")]
    assert parsed.warnings == ["<audio> is not supported: its text is spoken as it is"]
    parsed = parse_ssml(speak('<lexicon uri="words.pls" xml:id="w"/>Hello.'))
    assert parsed.segments == [SSMLSegment("Hello.")]
    assert parsed.warnings == ["<lexicon> is not supported: ignored (use <phoneme> or <sub> for a word's "
                               "pronunciation)"]


def test_punctuation_between_tags_adds_no_silence():
    # A paragraph of only "." has no words: 100,000 of them are no 17 hours of silence.
    parsed = parse_ssml(speak("<p>One.</p>" + "<p>.</p>" * 100_000 + "<p>Two.</p>"), sentence_pause=0.2)
    assert [(s.text, round(s.pause, 6)) for s in parsed.segments] == [("One.", 0.6), ("Two.", 0.0)]
    # Punctuation after a word at another rate stays with the word; after a pause it is dropped.
    assert segments('Hello<prosody rate="slow">!</prosody> <s>Bye</s><s>?</s>') == [
        ("Hello!", 1.0, 0.2), ("Bye", 1.0, 0.0)]
    assert segments('Hi <break time="200ms"/> , <break time="300ms"/> there') == [("Hi", 1.0, 0.5), ("there", 1.0, 0.0)]


# --------------------------------------------------------------------------------- the server
@pytest.fixture(scope="module")
def server():
    def load() -> Synthesizer:
        return Synthesizer.from_checkpoints(fixture_path("tacotron2_small_ngc.pt"),
                                            fixture_path("waveglow_small_ngc.pt"))

    app = create_app(load, limits=ServerLimits(batch_wait=0.0), allowed_hosts={"127.0.0.1", "localhost"})
    with running_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


SERVED = speak('Hello <break time="500ms"/> there. <prosody rate="50%">Slowly.</prosody>')


def test_server_speaks_ssml_with_its_silences(server, synth):
    expected = synth.synthesize_ssml(SERVED, seed=9)
    for body in ({"text": SERVED, "seed": 9, "format": "pcm"}, {"text": SERVED, "seed": 9, "stream": False}):
        r = server.post("/v1/synthesize", json=body)
        assert r.status_code == 200, r.text
        got = np.frombuffer(r.content, "<i2") if body.get("format") == "pcm" else samples(r.content)
        assert r.headers["x-sentences"] == "3" and same_audio(got, pcm16(expected.audio))
        start, end = expected.sentences[0].audio.numel(), expected.starts[1]
        assert end - start == 11025 and not got[start:end].any()


def test_server_jsonl_lines_carry_their_pause(server, synth):
    import json

    r = server.post("/v1/synthesize", json={"text": SERVED, "seed": 9, "format": "jsonl"})
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert [(row["text"], row["pause"]) for row in rows] == [("Hello", 11025), ("there.", 0), ("Slowly.", 0)]


def test_openai_endpoint_takes_ssml_at_its_own_rate(server, synth):
    from scipy.signal import resample_poly

    r = server.post("/v1/audio/speech", json={"model": "tts-1", "input": SERVED, "voice": "alloy",
                                               "response_format": "pcm"})
    assert r.status_code == 200, r.text
    expected = synth.synthesize_ssml(SERVED, seed=int(r.headers["x-seed"]))
    pieces = [pcm16(resample_poly(s.audio.numpy(), 160, 147)) for s in expected.sentences]
    silence = np.zeros(round(0.5 * 24000), np.int16)
    assert same_audio(np.frombuffer(r.content, "<i2"), np.concatenate([pieces[0], silence, pieces[1], pieces[2]]))


@pytest.mark.parametrize("text, message", [
    ("<speak>Hello <break time='1s'>", "text: malformed SSML: no element found"),
    (BILLION_LAUGHS, "text: SSML documents may not have a DTD or declare entities"),
    (BILLION_LAUGHS.split("\n", 1)[1], "text: SSML documents may not have a DTD or declare entities"),
    (speak('<break time="later"/>'), "text: <break time='later'>"),
])
def test_bad_ssml_gets_400_naming_the_problem(server, text, message):
    error = error_of(server.post("/v1/synthesize", json={"text": text}), 400)
    assert error["message"].startswith(message) and error["param"] == "text"
    error = error_of(server.post("/v1/audio/speech", json={"model": "tts-1", "input": text, "voice": "alloy"}), 400)
    assert error["message"].startswith(message.replace("text:", "input:")) and error["param"] == "input"
