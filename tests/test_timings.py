"""Word timings and subtitles: word spans of the model input, the estimator on alignments with a known answer,
timings of real synthesis (monotonic, inside the audio, one per spoken word, sentence joins), SRT/WebVTT/JSON
files read back by other parsers, the command line's files and the server's JSON lines."""
import json
import re
from datetime import timedelta

import numpy as np
import pytest
import srt as srt_parser
import torch
import webvtt as webvtt_parser

from tacoglow import Synthesizer
from tacoglow.cli import main
from tacoglow.hub import default_checkpoints
from tacoglow.subtitles import Cue, cues, srt, timings_document, webvtt, write_sidecar, written_words
from tacoglow.text import TextError, prepare_text
from tacoglow.text.symbols import FIRST_LETTER_ID, SYMBOL_TO_ID
from tacoglow.text.words import WordSpan, spans_from_ids, word_spans
from tacoglow.timings import WordTiming, attended_positions, shift_words, silent_runs, word_timings

from conftest import DATA

TEXT = "Dr. Smith paid $42 today. Then, after a pause, he left!"
JOINERS = {SYMBOL_TO_ID["'"], SYMBOL_TO_ID["-"]}


# --------------------------------------------------------------------------------- word spans
def test_word_spans_of_numbers_abbreviations_and_phones():
    spans = word_spans("Dr. Smith paid $42, at 10:30am.")
    assert [w.text for w in spans] == ["doctor", "smith", "paid", "forty-two", "dollars", "at", "ten", "thirty",
                                       "a", "m"]
    assert [w.text for w in word_spans("123 don't")] == ["one", "hundred", "twenty-three", "don't"]
    ids = prepare_text("Hello, world!", arpabet=True)
    spans = word_spans("Hello, world!", arpabet=True)
    assert spans == [WordSpan("hello", 0, 4), WordSpan("world", 6, 10)]  # HH AH0 L OW1 , space W ER1 L D !
    assert all(i >= SYMBOL_TO_ID["@AA"] for i in ids[0:4] + ids[6:10])
    assert [w.text for w in word_spans("{HH AH0 L OW1} world")] == ["{HH AH0 L OW1}", "world"]  # written as phones
    paused = prepare_text("Hello, world!", arpabet=True, leading_pause=True)  # ", " first: every index + 2
    assert paused == [SYMBOL_TO_ID[","], SYMBOL_TO_ID[" "], *ids]
    assert word_spans("Hello, world!", arpabet=True, leading_pause=True) == [WordSpan("hello", 2, 6),
                                                                             WordSpan("world", 8, 12)]
    assert [(w.start, w.end) for w in word_spans("'tis -- well-known--ish")] == [(1, 4), (8, 18), (20, 23)]
    with pytest.raises(TextError, match="empty"):
        word_spans("  ")
    with pytest.raises(ValueError, match="2 display texts for 1 words"):
        spans_from_ids(prepare_text("one"), ["a", "b"])


@pytest.mark.parametrize("arpabet", [False, True])
@pytest.mark.parametrize("normalize", [False, True])
def test_word_spans_address_exactly_the_ids_prepare_text_gives(normalize, arpabet):
    lines = [line.split("|")[1] for line in (DATA / "ljspeech_val.txt").read_text(encoding="utf-8").splitlines()]
    lines += ["He paid £5 at 10:30am on 1/2/2020 -- 45% of 1,000,000!", "It's 5 km, A4 and MP3s; rock'n'roll."]
    for text in lines:
        ids = prepare_text(text, normalize=normalize, arpabet=arpabet)
        spans = word_spans(text, normalize=normalize, arpabet=arpabet)
        covered = set()
        for previous, word in zip([None, *spans], spans):
            assert previous is None or previous.end < word.start  # ordered, separated
            inside = ids[word.start:word.end]
            assert inside[0] >= FIRST_LETTER_ID and inside[-1] >= FIRST_LETTER_ID
            assert all(i >= FIRST_LETTER_ID or i in JOINERS for i in inside)
            covered.update(range(word.start, word.end))
        assert all(k in covered for k, i in enumerate(ids) if i >= FIRST_LETTER_ID), text  # every sound in a word
        assert all(ids[k] not in JOINERS or ids[k - 1] < FIRST_LETTER_ID or ids[k + 1] < FIRST_LETTER_ID
                   for k in range(1, len(ids) - 1) if k not in covered)
        if arpabet:  # the same words, displayed as spelled
            assert [w.text for w in spans] == [w.text for w in word_spans(text, normalize=normalize)]


# --------------------------------------------------------------------------------- the estimator
def flat(words):
    return [t for w in words for t in (w.start, w.end)]


def one_hot(positions, n_ids):
    alignment = torch.zeros(len(positions), n_ids)
    alignment[torch.arange(len(positions)), torch.tensor(positions)] = 1.0
    return alignment


def test_one_hot_alignment_gives_exact_boundaries():
    # "ab cd": words [0, 2) and [3, 5); 2 frames per step of 10 ms, so step t's centre is at 20 t + 5 ms.
    alignment = one_hot([0, 0, 1, 1, 2, 3, 3, 4, 4], 5)
    spans = [WordSpan("ab", 0, 2), WordSpan("cd", 3, 5)]
    words = word_timings(alignment, spans, frames_per_step=2, seconds_per_frame=0.01)
    # "ab" from the start; the space is shared: both words meet where the position reaches it (step 4, 85 ms);
    # "cd" is never left, so it ends with the audio (9 steps x 2 frames x 10 ms).
    assert words == [WordTiming("ab", 0.0, pytest.approx(0.085)), WordTiming("cd", pytest.approx(0.085), 0.18)]
    # Twice the seconds per frame (audio stretched twice as long): every time doubles.
    slow = word_timings(alignment, spans, frames_per_step=2, seconds_per_frame=0.02)
    assert flat(slow) == pytest.approx([2 * t for t in flat(words)])


def test_punctuation_pauses_and_skipped_words():
    # "a, bc d." ids: a , _ b c _ d . ; words [0,1) [3,5) [6,7); 1 frame per step of 10 ms (centres at 0, 10, ...).
    # The attention dwells on ", " (pause), jumps over "d" (skipped) to "." and rests there.
    alignment = one_hot([0, 0, 1, 2, 2, 3, 4, 7, 7], 8)
    spans = [WordSpan("a", 0, 1), WordSpan("bc", 3, 5), WordSpan("d", 6, 7)]
    words = word_timings(alignment, spans, frames_per_step=1, seconds_per_frame=0.01, duration=0.085)
    # "a" ends where the position reaches 0.5 (half way from step 1 to 2: 15 ms); "bc" starts at 2.5 (45 ms);
    # "bc" and "d" share the space at 5: in the jump from 4 (60 ms) to 7 (70 ms), at 63.3 ms; "d" ends at 6.5
    # (68.3 ms): the skipped word gets its share of the jump. Nothing lies past the audio (85 ms).
    assert flat(words) == pytest.approx([0.0, 0.015, 0.045, 0.06 + 0.01 / 3, 0.06 + 0.01 / 3, 0.06 + 0.025 / 3])


def test_mean_position_is_monotonic_and_argmax_is_the_most_attended():
    alignment = torch.tensor([[0.5, 0.5, 0.0], [0.9, 0.1, 0.0], [0.0, 0.25, 0.75], [0.0, 0.0, 0.0]])
    assert attended_positions(alignment).tolist() == pytest.approx([0.5, 0.5, 1.75, 1.75])  # never back
    assert attended_positions(alignment, "argmax").tolist() == [0.0, 0.0, 2.0, 2.0]
    with pytest.raises(ValueError, match="method must be one of"):
        attended_positions(alignment, "median")


def test_silences_of_the_mel_move_the_boundaries():
    # 20 frames of 10 ms, 1 frame per step: silence in frames 0-2, 9-17 (a pause) and 19; speech elsewhere.
    mel = torch.full((4, 20), 0.0)
    mel[:, [0, 1, 2, *range(9, 18), 19]] = -11.5  # log(1e-5): 50 dB below the rest
    assert silent_runs(np.where(mel[0].numpy() < -5, -50.0, 0.0), 40) == [(0, 2), (9, 17), (19, 19)]
    # The attention reads "ab" from the first step and reaches "cd" (ids 3-4) in the middle of the pause.
    alignment = one_hot([0] * 4 + [1] * 7 + [3] * 6 + [4] * 3, 5)
    spans = [WordSpan("ab", 0, 2), WordSpan("cd", 3, 5)]
    plain = word_timings(alignment, spans, frames_per_step=1, seconds_per_frame=0.01)
    assert flat(plain) == pytest.approx([0.0, 0.105, 0.105, 0.2])
    words = word_timings(alignment, spans, frames_per_step=1, seconds_per_frame=0.01, mel=mel)
    # "ab" starts at the last leading-silence frame and ends at the pause's first frame; "cd" starts at the pause's
    # last frame and ends at the trailing silence's first frame (frame centres).
    assert flat(words) == pytest.approx([0.02, 0.09, 0.17, 0.19])
    # A pause shorter than min_pause_frames is left alone; leading and trailing silence still count.
    short = word_timings(alignment, spans, frames_per_step=1, seconds_per_frame=0.01, mel=mel, min_pause_frames=10)
    assert flat(short) == pytest.approx([0.02, 0.105, 0.105, 0.19])


def test_no_steps_and_bad_arguments():
    spans = [WordSpan("a", 0, 1)]
    assert word_timings(torch.zeros(0, 1), spans, frames_per_step=1, seconds_per_frame=0.01) == [
        WordTiming("a", 0.0, 0.0)]
    with pytest.raises(ValueError, match="past the alignment's 1 ids"):
        word_timings(torch.ones(3, 1), [WordSpan("ab", 0, 2)], frames_per_step=1, seconds_per_frame=0.01)
    assert shift_words([WordTiming("a", 0.5, 1.0)], 2.0) == [WordTiming("a", 2.5, 3.0)]


# --------------------------------------------------------------------------------- real synthesis
@pytest.fixture(scope="module")
def voice():
    return Synthesizer.from_checkpoints(default_checkpoints()[0], griffin_lim_iters=2)


@pytest.fixture(scope="module")
def speech(voice):
    return voice.synthesize(TEXT, seed=3)


def test_speech_words_are_ordered_inside_the_audio_one_per_spoken_word(voice, speech):
    words = speech.words
    spoken = [w.text for s in voice.split(TEXT) for w in voice.word_spans(s, voice.text_to_ids(s))]
    assert [w.text for w in words] == spoken == ["doctor", "smith", "paid", "forty-two", "dollars", "today", "then",
                                                 "after", "a", "pause", "he", "left"]
    times = [t for w in words for t in (w.start, w.end)]
    assert times == sorted(times) and 0 <= times[0] and times[-1] <= speech.duration
    rate = speech.sample_rate
    per_sentence = speech.sentence_words()
    assert [len(ws) for ws in per_sentence] == [6, 6]
    for sentence, start, ws in zip(speech.sentences, speech.starts, per_sentence):
        begin, end = start / rate, (start + sentence.audio.numel()) / rate
        assert all(begin <= w.start <= w.end <= end for w in ws)  # inside its own sentence's audio
        assert ws == shift_words(sentence.word_timings(sentence.audio.numel() / rate), begin)
    # The pause between the sentences (synthesis.sentence_pause) belongs to no word.
    gap_start = (speech.starts[0] + speech.sentences[0].audio.numel()) / rate
    assert speech.starts[1] / rate - gap_start == pytest.approx(voice.synthesis.sentence_pause, abs=1 / rate)
    assert per_sentence[0][-1].end <= gap_start and per_sentence[1][0].start >= speech.starts[1] / rate


def test_sentence_timings_scale_with_its_audio(speech):
    sentence = speech.sentences[1]
    seconds = sentence.audio.numel() / speech.sample_rate
    words, stretched = sentence.word_timings(seconds), sentence.word_timings(1.5 * seconds)
    assert flat(stretched) == pytest.approx([1.5 * t for t in flat(words)])


# --------------------------------------------------------------------------------- subtitles
def test_written_words_take_the_times_of_what_they_became():
    spoken = [WordTiming(w.text, k, k + 0.5) for k, w in enumerate(word_spans("Dr. Smith paid $42.50 -- at 9."))]
    assert [w.text for w in spoken][:8] == ["doctor", "smith", "paid", "forty-two", "dollars", "and", "fifty",
                                            "cents"]
    assert written_words("Dr. Smith paid $42.50 -- at 9.", spoken) == [
        WordTiming("Dr.", 0, 0.5), WordTiming("Smith", 1, 1.5), WordTiming("paid", 2, 2.5),
        WordTiming("$42.50", 3, 7.5), WordTiming("--", 7.5, 7.5), WordTiming("at", 8, 8.5), WordTiming("9.", 9, 9.5)]


def test_long_sentences_become_cues_of_two_lines_of_42_characters(voice):
    text = ("The overwhelming majority of people in this country know how to sift the wheat from the chaff in what "
            "they hear and what they read.")
    speech = voice.synthesize(text, seed=1)
    items = cues(speech)
    assert len(items) == 2 and all(len(c.lines) <= 2 and max(map(len, c.lines)) <= 42 for c in items)
    assert " ".join(line for c in items for line in c.lines) == text
    words = speech.words
    assert (items[0].start, items[-1].end) == (words[0].start, words[-1].end)
    assert items[0].end <= items[1].start
    assert cues(speech, max_line=200, max_lines=1)[0].lines == (text,)


def parse_vtt_time(clock: str) -> float:
    h, m, s = clock.split(":")
    return int(h) * 3600 + int(m) * 60 + float(s)


def test_srt_and_webvtt_parse_and_their_cues_are_the_timings(speech, tmp_path):
    items = cues(speech)
    words = speech.sentence_words()
    assert [c.lines for c in items] == [("Dr. Smith paid $42 today.",), ("Then, after a pause, he left!",)]
    ms = lambda seconds: round(seconds * 1000)
    parsed = list(srt_parser.parse(srt(items)))
    assert [s.content for s in parsed] == ["Dr. Smith paid $42 today.", "Then, after a pause, he left!"]
    assert [(s.start, s.end) for s in parsed] == [(timedelta(milliseconds=ms(ws[0].start)),
                                                   timedelta(milliseconds=ms(ws[-1].end))) for ws in words]
    vtt = webvtt_parser.from_string(webvtt(items))
    assert [c.text for c in vtt] == [c.content for c in parsed]
    assert [(ms(parse_vtt_time(c.start)), ms(parse_vtt_time(c.end))) for c in vtt] == [
        (ms(ws[0].start), ms(ws[-1].end)) for ws in words]
    # Each word after the first carries its start as a cue timestamp (written words: "$42" is "forty-two dollars").
    stamps = [[ms(parse_vtt_time(t)) for t in re.findall(r"<([\d:.]+)>", c.raw_text)] for c in vtt]
    written = [written_words(s.text, ws) for s, ws in zip(speech.sentences, words)]
    assert stamps == [[ms(w.start) for w in ws[1:] if ms(ws[0].start) < ms(w.start) < ms(ws[-1].end)]
                      for ws in written]
    assert all(len(s) >= 4 for s in stamps)
    plain = webvtt_parser.from_string(webvtt(items, word_timestamps=False))
    assert [c.raw_text for c in plain] == [c.content for c in parsed]
    # Text that looks like markup is escaped, so that players show it as written.
    odd = Cue(0.0, 1.0, ("a <b> & c",), tuple(WordTiming(t, 0.0, 1.0) for t in ("a", "<b>", "&", "c")))
    assert "a &lt;b&gt; &amp; c" in webvtt([odd])


def test_timings_document_round_trips(speech, tmp_path):
    path = write_sidecar(tmp_path / "speech.json", speech)
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document == json.loads(json.dumps(timings_document(speech)))
    assert (document["format"], document["sample_rate"], document["seed"]) == ("tacoglow-timings", 22050, 3)
    assert [s["text"] for s in document["sentences"]] == ["Dr. Smith paid $42 today.", "Then, after a pause, he left!"]
    assert [[(w["text"], w["start"], w["end"]) for w in s["words"]] for s in document["sentences"]] == [
        [(w.text, round(w.start, 3), round(w.end, 3)) for w in ws] for ws in speech.sentence_words()]
    assert document["sentences"][1]["start"] == round(speech.starts[1] / 22050, 3)
    with pytest.raises(ValueError, match=r"speech\.txt: the file name must end in \.srt or \.vtt or \.json"):
        write_sidecar(tmp_path / "speech.txt", speech)


# --------------------------------------------------------------------------------- the command line
def test_cli_writes_subtitles_and_timings(tmp_path, capsys):
    voice_args = ["--vocoder", "griffin-lim", "--griffin-lim-iters", "2", "--seed", "3", "--quiet"]
    out = tmp_path / "out.wav"
    assert main(["synthesize", TEXT, "-o", str(out), "--subtitles", str(tmp_path / "out.vtt"),
                 "--timings", str(tmp_path / "out.json"), *voice_args]) == 0
    vtt = webvtt_parser.read(str(tmp_path / "out.vtt"))
    assert [c.text for c in vtt] == ["Dr. Smith paid $42 today.", "Then, after a pause, he left!"]
    document = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert sum(len(s["words"]) for s in document["sentences"]) == 12

    lines = tmp_path / "lines.txt"
    lines.write_text("First line.\nSecond line here.\n")
    assert main(["synthesize", "-i", str(lines), "-o", str(tmp_path / "dir"), "--subtitles", "srt",
                 "--timings", "json", *voice_args]) == 0
    assert sorted(p.name for p in (tmp_path / "dir").iterdir()) == [
        "0001.json", "0001.srt", "0001.wav", "0002.json", "0002.srt", "0002.wav"]
    assert [s.content for s in srt_parser.parse((tmp_path / "dir" / "0002.srt").read_text())] == ["Second line here."]

    capsys.readouterr()
    for args, message in [
            (["hi", "-o", str(out), "--subtitles", str(tmp_path / "x.txt")], "x.txt: the file name must end in .srt"),
            (["hi", "-o", str(out), "--timings", str(tmp_path / "x.srt")], "x.srt: the file name must end in .json"),
            (["-i", str(lines), "-o", str(tmp_path / "d"), "--subtitles", "subs.srt"],
             "with a file of lines, subtitles takes the format (srt or vtt), not 'subs.srt'")]:
        assert main(["synthesize", *args, *voice_args]) == 1
        err = capsys.readouterr().err
        assert err.startswith("tacoglow: error: ") and message in err and err.count("\n") == 1
