"""Attention targets from phone timings: segments to bands of input positions, the loss they give, and the
phone timings a corpus carries through `prepare` into training."""
import json

import numpy as np
import pytest
import soundfile
import torch

from tacoglow import data as D
from tacoglow.text import sequence_to_text, text_to_sequence
from tacoglow.train.alignment import attention_bands, band_prior, festival_words
from tacoglow.train.losses import guided_attention_loss

# ", {HH AY1} cat {G OW1}." -> 0 ',' 1 ' ' 2 HH 3 AY1 4 ' ' 5 c 6 a 7 t 8 ' ' 9 G 10 OW1 11 '.'
IDS = text_to_sequence(", {HH AY1} cat {G OW1}.")
SEGMENTS = [("pau", 0.1, "0"), ("hh", 0.2, "_1"), ("ay", 0.3, "_1"), ("k", 0.4, "_2"), ("ae", 0.5, "_2"),
            ("t", 0.6, "_2"), ("g", 0.7, "_3"), ("ow", 0.8, "_3"), ("pau", 0.9, "0")]


def band_at(bands: np.ndarray, seconds: float, r: int = 2, hop: float = 0.01) -> tuple[float, float]:
    step = int(seconds / hop) // r
    return tuple(float(x) for x in bands[step])


def test_festival_words_are_spoken_words_split_at_hyphens():
    ids = text_to_sequence("don't, forty-two {HH AY1}!")
    assert [sequence_to_text(ids[a:b]) for a, b in festival_words(ids)] == ["don't", "forty", "two", "{HH AY1}"]


def test_each_step_gets_the_symbols_of_the_phone_it_predicts():
    assert sequence_to_text(IDS) == ", {HH AY1} cat {G OW1}."
    bands = attention_bands(IDS, SEGMENTS, frames=90, frames_per_step=2, seconds_per_frame=0.01)
    assert bands.shape == (45, 2) and bands.dtype == np.float32
    assert band_at(bands, 0.00) == (0.0, 1.0)  # the leading pause: ", " before the first word
    assert band_at(bands, 0.10) == (2.0, 2.0)  # hh: its own phone
    assert band_at(bands, 0.20) == (3.0, 3.0)  # ay
    assert band_at(bands, 0.60) == (9.0, 9.0)  # g: no pause between words, straight to the next phone
    assert band_at(bands, 0.70) == (10.0, 10.0)
    assert band_at(bands, 0.80) == (11.0, 11.0)  # the final pause: the period
    # "cat" is spelled: its 3 letters spread over its 0.3 s, with one letter of slack each side.
    assert band_at(bands, 0.30) == pytest.approx((5.0, 6.05))
    assert band_at(bands, 0.40) == pytest.approx((5.05, 7.0))
    assert band_at(bands, 0.56) == pytest.approx((6.65, 7.0))  # the step's middle frame: 0.565 s
    # A clip longer than its segments (the last mel frame) keeps the last band.
    assert tuple(attention_bands(IDS, SEGMENTS, 95, 2, 0.01)[-1]) == (11.0, 11.0)


def test_a_clip_whose_words_do_not_match_gets_no_target():
    assert attention_bands(IDS, SEGMENTS[:6] + SEGMENTS[8:], 90, 2, 0.01) is None  # Festival lost "go"
    assert attention_bands(IDS, [], 90, 2, 0.01) is None
    # Another phone count inside a lexicon word spreads that word like a spelled one.
    fewer = [s for s in SEGMENTS if s[0] != "ay"]
    bands = attention_bands(IDS, fewer, 90, 2, 0.01)
    assert band_at(bands, 0.10) == pytest.approx((2.05, 3.0))


def test_the_band_loss_is_the_share_of_attention_off_the_target_and_nan_keeps_the_diagonal():
    steps, width = 6, 8
    bands = torch.tensor([[[2.0, 3.0]] * steps])
    assert band_prior(bands, width, 1.0)[0, 0].tolist() == pytest.approx(
        [np.exp(-2), np.exp(-0.5), 1, 1, np.exp(-0.5), np.exp(-2), np.exp(-4.5), np.exp(-8)])
    lengths, step_lengths = torch.tensor([width]), torch.tensor([steps])
    on = torch.zeros(1, steps, width)
    on[0, :, 3] = 1.0
    off = torch.zeros(1, steps, width)
    off[0, :, 6] = 1.0  # three symbols past the band
    prior = band_prior(bands, width, 1.0)
    assert guided_attention_loss(on, lengths, step_lengths, prior=prior).item() == 0.0
    assert guided_attention_loss(off, lengths, step_lengths, prior=prior).item() == pytest.approx(1 - np.exp(-4.5))
    wide = band_prior(bands, width, 3.0)
    assert guided_attention_loss(off, lengths, step_lengths, prior=wide).item() == pytest.approx(1 - np.exp(-0.5))
    unknown = band_prior(torch.full_like(bands, float("nan")), width, 1.0)  # no timing: the diagonal
    assert unknown.isnan().all()
    assert guided_attention_loss(off, lengths, step_lengths, prior=unknown).item() == pytest.approx(
        guided_attention_loss(off, lengths, step_lengths).item())


def _ljspeech_with_timings(root, timings):
    (root / "wavs").mkdir(parents=True)
    rows = []
    for k, text in enumerate(["hi cat go.", "go cat."]):
        t = np.arange(int(0.5 * 22050)) / 22050
        soundfile.write(str(root / "wavs" / f"c{k}.wav"), (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32),
                        22050, subtype="PCM_16")
        rows.append(f"c{k}|{text}|{text}")
    (root / "metadata.csv").write_text("\n".join(rows) + "\n")
    (root / "phone_timings.jsonl").write_text(timings)


def test_prepare_carries_the_phone_timings_and_training_data_reads_them(tmp_path):
    record = {"id": "c0", "segments": [["pau", 0.1, "0"], ["hh", 0.2, "_1"], ["ay", 0.3, "_1"]]}
    _ljspeech_with_timings(tmp_path / "src", json.dumps(record) + "\n")
    D.prepare_dataset(tmp_path / "src", tmp_path / "out", val_count=0, progress=False)
    assert json.loads((tmp_path / "out" / "dataset.json").read_text())["phone_timings"] == "phone_timings.jsonl"
    assert D.PreparedData(tmp_path / "out").phone_timings() == {
        "c0": [("pau", 0.1, "0"), ("hh", 0.2, "_1"), ("ay", 0.3, "_1")]}
    # Trimmed recordings no longer start where they were timed: the timings stay behind.
    D.prepare_dataset(tmp_path / "src", tmp_path / "trimmed", val_count=0, trim_silence=True, progress=False)
    assert not (tmp_path / "trimmed" / "phone_timings.jsonl").exists()
    assert D.PreparedData(tmp_path / "trimmed").phone_timings() == {}

    (tmp_path / "out" / "phone_timings.jsonl").write_text(json.dumps(record) + '\n{"id": "c1", "segments": 3}\n')
    expected = r"phone_timings.jsonl:2: not a phone timing record .*segments.* \(.*not iterable"
    with pytest.raises(D.DatasetError, match=expected):
        D.PreparedData(tmp_path / "out").phone_timings()
