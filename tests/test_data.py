"""Dataset preparation on a small synthetic corpus: every input quirk, every skip reason, the output layout."""
import json
import math

import numpy as np
import pytest
import soundfile
import soxr
import torch

from tacoglow.audio import AudioConfig, load_wav, mel_spectrogram
from tacoglow.cli import build_parser, main
from tacoglow.data import prepare_dataset
from tacoglow.text import NORMALIZER_VERSION, TEXT_FRONTEND_VERSION, normalize_text, text_to_sequence

CONFIG = AudioConfig()


def tone(seconds: float, rate: int, amplitude: float = 0.5, frequency: float = 220.0) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def noise(seconds: float, rate: int, amplitude: float = 0.2, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-amplitude, amplitude, round(seconds * rate)).astype(np.float32)


# id -> (metadata row after the id, expected skip reason or None)
KEPT = {
    "LJ001-0001": "Printing, in the only sense with which we are concerned, 45% ~ of times.",  # 16 kHz, normalizer
    "LJ001-0002": "Dr. Smith|doctor Smith reads it aloud.",  # 44.1 kHz stereo float, normalized column
    "LJ001-0003": "An eight-bit recording.",
    "LJ001-0004": "Recorded at ninety-six kilohertz.",
    "LJ001-0005": "A FLAC file named wav.",
    "LJ001-0006": "A clipped recording, kept.",
}
SKIPPED = {
    "LJ002-0001": "empty audio",
    "LJ002-0002": "unreadable audio",  # random bytes
    "LJ002-0003": "unreadable audio",  # zero bytes
    "LJ002-0004": "non-finite samples",
    "LJ002-0005": "silent audio",
    "LJ002-0006": "no speakable text",
    "LJ002-0007": "too long",
    "LJ002-0008": "missing file",
    "LJ002-0009": "empty text",
    "LJ001-0001": "duplicate id",
    "metadata.csv:18": "malformed line",
}


@pytest.fixture(scope="module")
def ljspeech(tmp_path_factory):
    """An LJSpeech-layout folder whose rows exercise each input case once."""
    root = tmp_path_factory.mktemp("ljspeech")
    wavs = root / "wavs"
    wavs.mkdir()

    def write(name, audio, rate, **kwargs):
        soundfile.write(str(wavs / f"{name}.wav"), audio, rate, **kwargs)

    write("LJ001-0001", tone(0.6, 16000), 16000, subtype="PCM_16")
    write("LJ001-0002", np.stack([tone(0.5, 44100, frequency=330.0), np.zeros(22050, np.float32)], axis=1), 44100,
          subtype="FLOAT")
    write("LJ001-0003", tone(0.4, 22050), 22050, subtype="PCM_U8")
    write("LJ001-0004", tone(0.3, 96000, frequency=440.0), 96000, subtype="PCM_24")
    write("LJ001-0005", tone(0.5, 16000), 16000, format="FLAC", subtype="PCM_16")
    write("LJ001-0006", np.clip(tone(0.5, 22050, amplitude=2.0), -1, 1), 22050, subtype="PCM_16")
    write("LJ002-0001", np.zeros(0, np.float32), 22050, subtype="PCM_16")
    (wavs / "LJ002-0002.wav").write_bytes(np.random.default_rng(1).bytes(5000))
    (wavs / "LJ002-0003.wav").write_bytes(b"")
    nan = tone(0.3, 22050)
    nan[100] = np.nan
    write("LJ002-0004", nan, 22050, subtype="FLOAT")
    write("LJ002-0005", np.zeros(8000, np.float32), 16000, subtype="PCM_16")
    write("LJ002-0006", tone(0.3, 16000), 16000, subtype="PCM_16")
    write("LJ002-0007", noise(4.0, 8000), 8000, subtype="PCM_16")
    write("LJ002-0009", tone(0.3, 16000), 16000, subtype="PCM_16")

    rows = [f"{clip_id}|{text}" for clip_id, text in KEPT.items()]
    rows += ["LJ002-0001|Empty.", "LJ002-0002|Corrupt.", "LJ002-0003|Zero bytes.", "LJ002-0004|Not a number.",
             "LJ002-0005|Silence.", "LJ002-0006|~~ ## ... ~~", "LJ002-0007|Far too long for the limit.",
             "LJ002-0008|Nowhere to be found.", "LJ002-0009|", "LJ001-0001|Twice.", "", "just one field"]
    (root / "metadata.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def prepared(ljspeech, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared") / "slt"
    summary = prepare_dataset(ljspeech, out, val_count=2, max_seconds=3.0, progress=False)
    return out, summary


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_skipped_clips_have_their_reasons(prepared):
    out, summary = prepared
    rows = [line.split("\t") for line in (out / "skipped.tsv").read_text(encoding="utf-8").splitlines()]
    assert all(len(row) == 3 for row in rows)
    assert {key: reason for key, reason, _ in rows} == SKIPPED
    assert summary["skipped"] == len(SKIPPED)
    assert summary["skipped_by_reason"]["unreadable audio"] == 2
    assert sum(summary["skipped_by_reason"].values()) == len(SKIPPED)
    assert not any((out / "wavs" / f"{clip_id}.wav").exists() for clip_id in SKIPPED if clip_id.startswith("LJ002"))


def test_index_and_split(prepared):
    out, summary = prepared
    train, val = read_jsonl(out / "train.jsonl"), read_jsonl(out / "val.jsonl")
    assert len(val) == 2 and len(train) == len(KEPT) - 2
    assert sorted(item["id"] for item in train + val) == sorted(KEPT)
    assert [item["id"] for item in train] == [i for i in KEPT if i not in {v["id"] for v in val}]  # input order
    for item in train + val:
        assert set(item) == {"id", "text", "ids", "wav", "mel", "frames", "samples"}
        assert item["wav"] == f"wavs/{item['id']}.wav" and item["mel"] == f"mels/{item['id']}.pt"
        assert item["ids"] == text_to_sequence(item["text"], ["english_cleaners"])
        assert item["frames"] == 1 + item["samples"] // CONFIG.hop_length
    assert (summary["clips"], summary["train"], summary["val"]) == (len(KEPT), len(KEPT) - 2, 2)


def test_text_sources(prepared):
    out, summary = prepared
    items = {item["id"]: item for item in read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl")}
    raw = KEPT["LJ001-0001"]
    assert items["LJ001-0001"]["text"] == normalize_text(raw)
    assert "forty-five percent" in items["LJ001-0001"]["text"]
    assert items["LJ001-0002"]["text"] == "doctor Smith reads it aloud."  # third column, verbatim
    assert summary["text_sources"] == {"normalizer": len(KEPT) - 1, "normalized-column": 1}
    assert summary["dropped_characters"] == {"~": 1}
    assert summary["characters"] == sum(len(item["text"]) for item in items.values())


def test_wavs_and_mels_match_the_audio_front_end(ljspeech, prepared):
    out, summary = prepared
    items = {item["id"]: item for item in read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl")}
    for clip_id, item in items.items():
        info = soundfile.info(str(out / item["wav"]))
        assert (info.samplerate, info.channels, info.subtype) == (22050, 1, "PCM_16")
        assert info.frames == item["samples"]
        mel = torch.load(out / item["mel"])
        assert mel.dtype == torch.float32 and tuple(mel.shape) == (80, item["frames"])
        # Exactly the mel the trainer would compute from the stored wav.
        torch.testing.assert_close(mel, mel_spectrogram(load_wav(out / item["wav"]), CONFIG), rtol=0, atol=0)

        # And the stored wav is the source resampled to 22050 Hz (mono, average of channels).
        source, rate = soundfile.read(str(ljspeech / "wavs" / f"{clip_id}.wav"), dtype="float32", always_2d=True)
        expected = source.mean(axis=1)
        if rate != 22050:
            expected = soxr.resample(expected, rate, 22050).astype(np.float32)
        assert item["samples"] == len(expected)
        assert mel.shape == mel_spectrogram(torch.from_numpy(np.clip(expected, -1, 1)), CONFIG).shape
        stored = load_wav(out / item["wav"]).numpy()
        np.testing.assert_allclose(stored, np.clip(expected, -1, 1), atol=1e-4)
    # The stereo file had a tone of peak 0.5 in one channel and silence in the other: the average halves it.
    assert abs(np.abs(load_wav(out / "wavs/LJ001-0002.wav").numpy()).max() - 0.25) < 0.01


def test_dataset_json_and_summary(ljspeech, prepared):
    out, summary = prepared
    dataset = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    assert dataset["format"] == "tacoglow-dataset" and dataset["version"] == 1
    assert AudioConfig.from_dict(dataset["audio"]) == CONFIG
    assert dataset["text"] == {"source": "mixed", "normalizer_version": NORMALIZER_VERSION,
                               "cleaners": ["english_cleaners"], "frontend": TEXT_FRONTEND_VERSION}
    assert dataset["trim_silence"] is False
    assert dataset["source_dir"] == str(ljspeech.resolve())
    assert dataset["summary"] == summary
    assert summary["clipped"] == 1
    seconds = sum(item["samples"] for item in read_jsonl(out / "train.jsonl") + read_jsonl(out / "val.jsonl"))
    assert math.isclose(summary["seconds"], seconds / 22050, abs_tol=1e-3)
    assert [item["id"] for item in summary["longest"]][:2] == ["LJ001-0001", "LJ001-0002"]
    text = (out / "summary.txt").read_text(encoding="utf-8")
    assert f"{len(KEPT)} ({len(KEPT) - 2} train, 2 validation)" in text
    assert "too long: 1" in text and "unreadable audio: 2" in text and "LJ001-0001" in text


def test_split_is_seeded_and_rerun_needs_force(ljspeech, prepared, tmp_path):
    out, _ = prepared
    again = tmp_path / "again"
    prepare_dataset(ljspeech, again, val_count=2, max_seconds=3.0, progress=False)
    assert read_jsonl(again / "val.jsonl") == read_jsonl(out / "val.jsonl")
    with pytest.raises(ValueError, match="--force"):
        prepare_dataset(ljspeech, again, val_count=2, max_seconds=3.0, progress=False)
    prepare_dataset(ljspeech, again, val_ids=["LJ001-0003"], max_seconds=3.0, force=True, progress=False)
    assert [item["id"] for item in read_jsonl(again / "val.jsonl")] == ["LJ001-0003"]
    (again / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="notes.txt"):
        prepare_dataset(ljspeech, again, max_seconds=3.0, force=True, progress=False)
    with pytest.raises(ValueError, match="source folder"):
        prepare_dataset(ljspeech, ljspeech, force=True, progress=False)


def test_filelist_layout_and_trimming(tmp_path):
    audio_dir = tmp_path / "corpus" / "audio"
    audio_dir.mkdir(parents=True)
    padded = np.concatenate([np.zeros(8000), tone(0.5, 16000), np.zeros(8000)]).astype(np.float32)
    soundfile.write(str(audio_dir / "a.wav"), padded, 16000, subtype="PCM_16")
    soundfile.write(str(audio_dir / "b.flac"), noise(0.4, 22050), 22050)
    filelist = tmp_path / "corpus" / "list.txt"
    filelist.write_text("audio/a.wav|It costs $5.\naudio/b.flac|Second clip.\naudio/c.wav|Missing.\n",
                        encoding="utf-8")

    summary = prepare_dataset(filelist, tmp_path / "out", val_fraction=0.0, trim_silence=True, progress=False)
    items = {item["id"]: item for item in read_jsonl(tmp_path / "out" / "train.jsonl")}
    assert set(items) == {"a", "b"} and summary["val"] == 0
    assert items["a"]["text"] == normalize_text("It costs $5.") == "It costs five dollars."
    # 0.5 s of tone plus a 0.05 s margin each side; trimming works in frames, so up to a frame more per side.
    assert 0.59 < items["a"]["samples"] / 22050 < 0.6 + 2 * CONFIG.win_length / 22050
    assert (tmp_path / "out" / "skipped.tsv").read_text().startswith("audio/c.wav\tmissing file\t")
    dataset = json.loads((tmp_path / "out" / "dataset.json").read_text())
    assert dataset["trim_silence"] is True and dataset["text"]["source"] == "normalizer"

    # A folder holding exactly one *.txt filelist is the same dataset.
    prepare_dataset(tmp_path / "corpus", tmp_path / "out2", val_fraction=0.0, trim_silence=True, progress=False)
    assert read_jsonl(tmp_path / "out2" / "train.jsonl") == read_jsonl(tmp_path / "out" / "train.jsonl")
    (tmp_path / "corpus" / "other.txt").write_text("")
    with pytest.raises(ValueError, match="2 \\*.txt filelists"):
        prepare_dataset(tmp_path / "corpus", tmp_path / "out3", progress=False)
    with pytest.raises(FileNotFoundError):
        prepare_dataset(tmp_path / "nowhere", tmp_path / "out4", progress=False)


def test_command_line(ljspeech, tmp_path, capsys):
    (tmp_path / "val.txt").write_text("LJ001-0004\nLJ001-0005\n")
    assert main(["prepare", str(ljspeech), str(tmp_path / "out"), "--val-ids", str(tmp_path / "val.txt"),
                 "--max-seconds", "3", "--quiet"]) == 0
    assert sorted(item["id"] for item in read_jsonl(tmp_path / "out" / "val.jsonl")) == ["LJ001-0004",
                                                                                       "LJ001-0005"]
    out = capsys.readouterr().out
    assert "validation" in out
    # The first five skipped clips are named with their reasons (skipped.tsv lists all eleven).
    assert "first 5 skipped (all in skipped.tsv):" in out
    assert "  metadata.csv:18: malformed line (expected id|text or id|text|normalized text, got 1 fields)" in out
    assert "  LJ002-0001: empty audio" in out and "  LJ002-0003: unreadable audio" in out
    assert "LJ002-0005" not in out and "LJ002-0009" not in out
    with pytest.raises(SystemExit):  # the split options exclude each other
        build_parser().parse_args(["prepare", str(ljspeech), "out", "--val-count", "2", "--val-fraction", "0.1"])
