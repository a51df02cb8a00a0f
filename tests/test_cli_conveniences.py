"""``tacoglow synthesize``'s bulk and streaming forms: --output-raw, --json-input, --sentence-silence, --ssml."""
import io
import json

import numpy as np
import pytest
import soundfile as sf

from tacoglow import GriffinLimVocoder, Synthesizer, load_tacotron2
from tacoglow.audio import to_pcm16
from tacoglow.batch import synthesize_json_lines, write_raw
from tacoglow.cli import main

from conftest import fixture_path
from test_cli import T2, run

VOICE = ["--tacotron2", T2, "--vocoder", "griffin-lim", "--griffin-lim-iters", "2", "--quiet"]
TEXT = '<speak>Hello <break time="300ms"/> there. How are you?</speak>'


@pytest.fixture(scope="module")
def synth() -> Synthesizer:
    """The voice VOICE names, loaded in this process."""
    return Synthesizer(load_tacotron2(fixture_path("tacotron2_small_ngc.pt")), GriffinLimVocoder(n_iters=2))


def wav_samples(path) -> np.ndarray:
    data, rate = sf.read(path, dtype="int16")
    assert rate == 22050
    return data


def test_output_raw_piped_gives_exactly_the_samples_of_the_wav(tmp_path):
    wav = tmp_path / "out.wav"
    r = run("synthesize", TEXT, "-o", str(wav), "--seed", "7", *VOICE)
    assert r.returncode == 0, r.stderr.decode()
    raw = run("synthesize", "-", "--output-raw", "--seed", "7", *VOICE, stdin=TEXT.encode())
    assert raw.returncode == 0, raw.stderr.decode()
    expected = wav_samples(wav)
    assert len(raw.stdout) == 2 * expected.size and expected.size > round(0.3 * 22050)
    assert np.array_equal(np.frombuffer(raw.stdout, "<i2"), expected)


def test_write_raw_writes_and_flushes_each_sentence_with_its_pause(synth):
    class Recorder(io.BytesIO):
        def __init__(self):
            super().__init__()
            self.flushed: list[int] = []  # bytes written at each flush

        def flush(self):
            self.flushed.append(len(self.getvalue()))

    out = Recorder()
    seed, written = write_raw(synth, TEXT, out, seed=3)
    speech = synth.synthesize_ssml(TEXT, seed=3)
    ends = [start + s.audio.numel() for start, s in zip(speech.starts, speech.sentences)]
    assert (seed, written) == (3, speech.audio.numel())
    assert out.flushed == [2 * end for end in speech.starts[1:] + [speech.audio.numel()]]
    assert ends[0] + round(0.3 * 22050) == speech.starts[1]  # the break, written with its sentence
    assert np.array_equal(np.frombuffer(out.getvalue(), "<i2"), to_pcm16(speech.audio))


def test_json_input_of_five_lines_writes_five_files_and_five_results(tmp_path, synth):
    requests = [{"text": "First line."}, {"text": "Second, seeded.", "seed": 42},
                {"text": "Third, named.", "output_file": str(tmp_path / "named" / "third.wav")},
                {"text": '<speak>Fourth <break time="200ms"/> line.</speak>', "voice": "default"},
                {"text": "<speak>Fifth, not markup.</speak>", "ssml": False}]
    stdin = "\n".join(json.dumps(r) for r in requests).encode()
    r = run("synthesize", "--json-input", "-o", str(tmp_path / "out"), "--seed", "100", *VOICE, stdin=stdin)
    assert r.returncode == 0, r.stderr.decode()
    results = [json.loads(line) for line in r.stdout.decode().splitlines()]
    out = tmp_path / "out"
    paths = [str(out / "0001.wav"), str(out / "0002.wav"), str(tmp_path / "named" / "third.wav"),
             str(out / "0004.wav"), str(out / "0005.wav")]
    seeds = [100, 42, 102, 103, 104]
    assert [(x["line"], x["output_file"], x["seed"]) for x in results] == list(zip(range(1, 6), paths, seeds))
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["0001.wav", "0002.wav", "0004.wav", "0005.wav"]
    for request, result, path, seed in zip(requests, results, paths, seeds):
        speech = synth.synthesize(request["text"], seed=seed, ssml=request["text"].startswith("<speak>")
                                  and request.get("ssml") is not False)
        assert np.array_equal(wav_samples(path), to_pcm16(speech.audio))
        assert result["duration"] == round(speech.duration, 6) and result["sentences"] == len(speech.sentences)
    assert results[3]["sentences"] == 2 and results[4]["sentences"] == 1


def test_json_input_bad_lines_get_an_error_result_and_the_run_goes_on(tmp_path, synth):
    lines = ['{"text": "Good one."}', "", "not json", '["text"]', '{"txt": "typo"}', '{"text": "  "}',
             '{"text": "Hi.", "seed": "7"}', '{"text": "Hi.", "seed": true}', '{"text": "Hi.", "voice": "alloy"}',
             '{"text": "<speak>Hi", "ssml": true}', b'{"text": "caf\xe9"}', '{"text": "Good two.", "seed": 5}']
    results = io.StringIO()
    failed = synthesize_json_lines(synth, lines, results, out_dir=tmp_path, seed=1)
    rows = [json.loads(line) for line in results.getvalue().splitlines()]
    assert failed == 9 and [row["line"] for row in rows] == [1, *range(3, 13)]
    assert [row.get("error") for row in rows] == [
        None,
        "line 3: not JSON (Expecting value: line 1 column 1 (char 0))",
        'line 4: expected a JSON object such as {"text": "Hello."}, got list',
        "line 5: unknown keys ['txt']; a line may have text, output_file, seed, voice, ssml",
        "line 6: 'text' is required: the text to speak",
        "line 7: 'seed' must be int, got \"7\"",
        "line 8: 'seed' must be int, got true",
        "line 9: unknown voice 'alloy'; the voices are 'default'",
        "line 10: malformed SSML: no element found: line 1, column 9",
        "line 11: not UTF-8 text (invalid continuation byte at byte 13)",
        None]
    assert rows[-1]["output_file"] == str(tmp_path / "0012.wav") and rows[-1]["seed"] == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0001.wav", "0012.wav"]


def test_json_input_output_files_are_wav_files_and_odd_lines_fail_alone(tmp_path, synth, monkeypatch):
    monkeypatch.chdir(tmp_path)  # output_file is taken as given: relative to the current directory, as -o is
    (tmp_path / "folder.wav").mkdir()
    requests = [{"text": "Hi.", "output_file": "a\x00.wav"}, {"text": "Hi.", "output_file": "notes.txt"},
                {"text": "Hi.", "output_file": ".bashrc"}, {"text": "Hi.", "output_file": "folder.wav"},
                {"text": "Hi.", "output_file": "\ud800.wav"}, {"text": "<speak>Caf\udcff</speak>"},
                {"text": '<speak><say-as interpret-as="date">\u00b2/\u00b3/2020</say-as></speak>',
                 "output_file": "sub/../date.wav"},
                {"text": "Good.", "output_file": str(tmp_path / "abs" / "good.WAV"), "seed": 4}]
    lines = [json.dumps(r) for r in requests] + ["[" * 100_000]
    results = io.StringIO()
    failed = synthesize_json_lines(synth, lines, results, out_dir=tmp_path / "out", seed=1)
    rows = [json.loads(line) for line in results.getvalue().splitlines()]
    assert failed == 7 and [row.get("error") for row in rows] == [
        "line 1: 'output_file' 'a\\x00.wav' holds a NUL character: no file can have that name",
        "line 2: 'output_file' 'notes.txt' must name a .wav file (audio is written only to .wav)",
        "line 3: 'output_file' '.bashrc' must name a .wav file (audio is written only to .wav)",
        "line 4: 'output_file' 'folder.wav' is a folder: name a .wav file in it",
        "line 5: 'output_file' '\\ud800.wav' is no file name: surrogates not allowed",
        "line 6: the SSML document is not valid Unicode text: '\\udcff' at character 10 is half of a surrogate "
        "pair; give UTF-8 text",
        None, None,
        "line 9: not JSON that can be read: it nests too deeply"]
    assert [(row.get("output_file"), row.get("seed")) for row in rows[6:8]] == [
        ("sub/../date.wav", 7), (str(tmp_path / "abs" / "good.WAV"), 4)]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["abs", "date.wav", "folder.wav", "sub"]
    assert np.array_equal(wav_samples(tmp_path / "abs" / "good.WAV"), to_pcm16(synth.synthesize("Good.", seed=4).audio))


def test_json_input_from_a_file_fails_the_run_when_a_line_failed(tmp_path, capsys):
    lines = tmp_path / "lines.jsonl"
    lines.write_text('{"text": "One."}\n{"text": 5}\n')
    assert main(["synthesize", "--json-input", "-i", str(lines), *VOICE]) == 1
    out, err = capsys.readouterr()
    rows = [json.loads(line) for line in out.splitlines()]
    assert rows == [{"line": 1, "error": "line 1: no 'output_file', and no -o folder for the lines without one"},
                    {"line": 2, "error": "line 2: 'text' must be str, got 5"}]
    assert err.splitlines()[-1] == "tacoglow: error: 2 input line(s) failed; their result lines say why"


def test_sentence_silence_changes_the_gap_exactly(tmp_path, synth):
    text = "One sentence. Another one. And a third."
    for seconds in ("0", "0.5"):
        assert main(["synthesize", text, "-o", str(tmp_path / f"{seconds}.wav"), "--seed", "2",
                     "--sentence-silence", seconds, *VOICE]) == 0
    tight, wide = wav_samples(tmp_path / "0.wav"), wav_samples(tmp_path / "0.5.wav")
    speech = synth.synthesize(text, seed=2)
    pieces = [to_pcm16(s.audio) for s in speech.sentences]
    assert np.array_equal(tight, np.concatenate(pieces))
    gap = np.zeros(round(0.5 * 22050), np.int16)
    assert np.array_equal(wide, np.concatenate([pieces[0], gap, pieces[1], gap, pieces[2]]))


def test_ssml_flag_and_input_that_starts_with_speak(tmp_path, capsys, synth):
    out = tmp_path / "a.wav"
    assert main(["synthesize", "<speak>Hi.<break time='1s'/></speak>", "-o", str(out), "--seed", "4", *VOICE]) == 0
    expected = synth.synthesize_ssml("<speak>Hi.<break time='1s'/></speak>", seed=4)
    assert np.array_equal(wav_samples(out), to_pcm16(expected.audio))
    assert expected.audio.numel() == expected.sentences[0].audio.numel() + 22050
    lines = tmp_path / "lines.txt"
    lines.write_text("<speak>One <break time='100ms'/> two</speak>\nPlain <b>text</b>.\n")
    assert main(["synthesize", "-i", str(lines), "-o", str(tmp_path / "dir"), "--seed", "1", *VOICE]) == 0
    assert len(wav_samples(tmp_path / "dir" / "0001.wav")) == synth.synthesize_ssml(
        "<speak>One <break time='100ms'/> two</speak>", seed=1).audio.numel()
    capsys.readouterr()
    assert main(["synthesize", "Plain text.", "--ssml", "-o", str(out), *VOICE]) == 1
    assert capsys.readouterr().err == "tacoglow: error: malformed SSML: syntax error: line 1, column 0\n"


@pytest.mark.parametrize("args, message", [
    (["Hi.", "--output-raw", "-o", "a.wav"], "--output-raw writes standard output: give TEXT or '-', without"),
    (["--output-raw"], "give TEXT to speak, or '-' to read standard input"),
    (["Hi."], "give -o FILE ('-' for standard output; a folder with --input), or use --output-raw"),
    (["Hi.", "--json-input"], "--json-input reads JSON lines from standard input or -i FILE, not TEXT"),
    (["--json-input", "-o", "-"], "--json-input prints its results on standard output: write the audio to files"),
    (["Hi.", "-o", "a.wav", "--sentence-silence", "-1"], "sentence_pause must be a finite number >= 0, got -1.0"),
    # A pause of 1e9 s asked for 88 TB of silence, and failed with an internal error.
    (["One. Two.", "-o", "a.wav", "--sentence-silence", "1e9"],
     "sentence_pause must be at most 10 seconds (as SSML's longest <break>), got 1000000000.0"),
])
def test_conflicting_options_are_one_line_errors(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["synthesize", *args, *VOICE]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"tacoglow: error: {message}") and len(err.splitlines()) == 1


def test_json_lines_and_voice_choose_among_the_voices_of_voice_dir(tmp_path, capsys):
    from tacoglow.catalog import VoiceOptions, find_voices

    from test_voices import make_voice_dir

    (tmp_path / "voices").mkdir()
    voice_dir = make_voice_dir(tmp_path / "voices")
    alone = {files.name: VoiceOptions().load(files) for files in find_voices(voice_dir)}
    lines = tmp_path / "lines.jsonl"
    lines.write_text("\n".join(json.dumps(line) for line in [
        {"text": "Hello there.", "voice": "bright", "seed": 3}, {"text": "Hello there.", "voice": "quick", "seed": 3},
        {"text": "Hello there.", "seed": 3}, {"text": "Hi.", "voice": "loud"}]) + "\n")
    out = tmp_path / "out"
    args = ["--tacotron2", T2, "--vocoder", "auto", "--quiet", "--voice-dir", str(voice_dir)]
    assert main(["synthesize", "--json-input", "-i", str(lines), "-o", str(out), *args]) == 1  # line 4 failed
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row.get("voice") for row in rows] == ["bright", "quick", "default", None]
    assert rows[3]["error"] == "line 4: unknown voice 'loud'; the voices are 'default', 'bright', 'quick'"
    for row in rows[:2]:  # each folder voice speaks as it does alone
        expected = to_pcm16(alone[row["voice"]].synthesize("Hello there.", seed=3).audio)
        assert np.array_equal(wav_samples(row["output_file"]), expected)
    assert not np.array_equal(wav_samples(rows[0]["output_file"]), wav_samples(rows[2]["output_file"]))
    # One text, --voice: the same audio as that voice's JSON line; an unknown name is one line naming the voices.
    assert main(["synthesize", "Hello there.", "-o", str(tmp_path / "q.wav"), "--seed", "3", "--voice", "quick",
                 *args]) == 0
    assert np.array_equal(wav_samples(tmp_path / "q.wav"), wav_samples(rows[1]["output_file"]))
    assert main(["synthesize", "Hi.", "-o", str(tmp_path / "x.wav"), "--voice", "loud", *args]) == 1
    assert capsys.readouterr().err.strip() == (
        "tacoglow: error: unknown voice 'loud'; the voices are 'default', 'bright', 'quick'")
