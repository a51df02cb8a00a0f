"""Training: tiny models overfit a tiny synthetic corpus; runs resume exactly, stop cleanly on SIGTERM,
skip non-finite steps, shard over processes, and leave checkpoints the synthesizer loads."""
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tacoglow import data as D
from tacoglow import train as T
from tacoglow.audio import AudioConfig, load_wav, mel_spectrogram, save_wav
from tacoglow.checkpoint import inspect_checkpoint, load_tacotron2, load_waveglow
from tacoglow.cli import main as cli_main
from tacoglow.config import ConfigError
from tacoglow.synthesizer import Synthesizer
from tacoglow.tacotron2 import Tacotron2, Tacotron2Config
from tacoglow.text import TEXT_FRONTEND_VERSION, sequence_to_text, text_to_sequence
from tacoglow.train import tacotron2 as t2loop

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["a cat", "the sun", "big dog", "red hat", "one two", "hi there", "go home", "blue sea"]

# A Tacotron 2 small enough to take ~20 ms per step here; r = 2 as the CPU preset uses r > 1.
TINY_TACOTRON2 = dict(symbols_embedding_dim=32, encoder_embedding_dim=32, encoder_n_convolutions=1,
                      attention_rnn_dim=64, attention_dim=16, attention_location_n_filters=4,
                      attention_location_kernel_size=5, decoder_rnn_dim=64, prenet_dim=32,
                      postnet_embedding_dim=16, postnet_n_convolutions=2, n_frames_per_step=2,
                      max_decoder_steps=40)
TINY_WAVEGLOW = dict(n_flows=4, n_group=8, n_early_every=2, n_early_size=2, n_layers=2, n_channels=16)


def tiny_config(model="tacotron2", **overrides) -> T.TrainConfig:
    base = dict(model=model, model_config=TINY_TACOTRON2 if model == "tacotron2" else TINY_WAVEGLOW,
                learning_rate=3e-3, anneal_at=[], batch_size=3, masked_loss=True, gate_pos_weight=3.0,
                guided_attention_weight=1.0, guided_attention_half_life=50, segment_length=4096,
                max_steps=6, epochs=None, log_every=1, val_every=1000, val_items=2, checkpoint_every=1000)
    if model == "waveglow":
        base.update(learning_rate=1e-3, grad_clip=None, weight_decay=0.0)
    return T.TrainConfig(**{**base, **overrides})


def _tone(index: int, seconds: float, rate: int) -> np.ndarray:
    """A distinct sound per clip: a chirp between two partials, with a soft attack and release."""
    t = np.arange(int(seconds * rate)) / rate
    f0, f1 = 200 + 90 * index, 260 + 70 * index
    phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * seconds))
    envelope = np.minimum(1.0, np.minimum(t, seconds - t) / 0.03)
    return (0.3 * envelope * (np.sin(phase) + 0.3 * np.sin(2.7 * phase))).astype(np.float32)


def make_corpus(root: Path) -> Path:
    """A prepared-dataset folder (the layout `tacoglow prepare` writes): 6 training and 2 validation clips."""
    audio = AudioConfig()
    (root / "wavs").mkdir()
    (root / "mels").mkdir()
    items = []
    for i, text in enumerate(TEXTS):
        clip_id = f"clip{i:02d}"
        wav_path, mel_path = root / "wavs" / f"{clip_id}.wav", root / "mels" / f"{clip_id}.pt"
        save_wav(wav_path, _tone(i, 0.12 + 0.04 * len(text), audio.sampling_rate), audio.sampling_rate)
        samples = load_wav(wav_path, audio.sampling_rate)
        mel = mel_spectrogram(samples, audio)
        torch.save(mel.contiguous(), mel_path)
        items.append({"id": clip_id, "text": text, "ids": text_to_sequence(text), "wav": f"wavs/{clip_id}.wav",
                      "mel": f"mels/{clip_id}.pt", "frames": mel.size(1), "samples": samples.numel()})
    for name, part in (("train.jsonl", items[:6]), ("val.jsonl", items[6:])):
        (root / name).write_text("".join(json.dumps(x) + "\n" for x in part))
    (root / "dataset.json").write_text(json.dumps({
        "format": "tacoglow-dataset", "version": 1, "audio": audio.to_dict(),
        "text": {"source": "text", "normalizer_version": None, "cleaners": ["english_cleaners"],
                 "frontend": TEXT_FRONTEND_VERSION}}))
    return root


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def read_log(run: Path, split="train") -> list[dict]:
    lines = [line for line in (run / "log.jsonl").read_text().split("\n")[:-1]]  # complete lines only
    return [r for r in map(json.loads, lines) if r["split"] == split]


# --- pure pieces ------------------------------------------------------------------------------------------


def test_bucket_batches_are_deterministic_similar_in_length_and_sharded():
    lengths = [int(x) for x in np.random.default_rng(0).integers(50, 800, size=200)]
    a = D.bucket_batches(lengths, 8, seed=1, epoch=3, bucket_batches=5)
    assert a == D.bucket_batches(lengths, 8, seed=1, epoch=3, bucket_batches=5)
    assert a != D.bucket_batches(lengths, 8, seed=1, epoch=4, bucket_batches=5)
    assert len(a) == 25 and all(len(b) == 8 for b in a) and len({i for b in a for i in b}) == 200
    spread = np.mean([max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in a])
    assert spread < 150  # random batches of 8 would spread ~550 frames
    shards = [D.bucket_batches(lengths, 8, seed=1, epoch=3, bucket_batches=5, rank=r, world_size=3) for r in range(3)]
    assert [len(s) for s in shards] == [8, 8, 8]  # 25 batches: the last one is dropped so all ranks take 8
    assert sorted(map(sorted, sum(shards, []))) == sorted(map(sorted, a[:24]))


def test_a_broken_prepared_dataset_is_refused_with_the_file_and_what_to_do(tmp_path):
    with pytest.raises(D.DatasetError, match=r"no dataset.json; prepare the data first"):
        D.PreparedData(tmp_path)
    meta = tmp_path / "dataset.json"
    meta.write_text("{not json")
    with pytest.raises(D.DatasetError, match=r"dataset.json: not JSON .*prepare the data again"):
        D.PreparedData(tmp_path)
    meta.write_text(json.dumps({"format": "something-else", "version": 1}))
    with pytest.raises(D.DatasetError, match=r"format is 'something-else', not 'tacoglow-dataset'"):
        D.PreparedData(tmp_path)
    meta.write_text(json.dumps({"format": D.DATASET_FORMAT, "version": 99}))
    with pytest.raises(D.DatasetError, match=r"dataset version 99 is not supported"):
        D.PreparedData(tmp_path)
    meta.write_text(json.dumps({"format": D.DATASET_FORMAT, "version": D.DATASET_VERSION,
                                "audio": AudioConfig().to_dict()}))
    with pytest.raises(D.DatasetError, match=r"train.jsonl: missing; the dataset folder is incomplete"):
        D.PreparedData(tmp_path)
    good = {"id": "a", "ids": [5, 6], "wav": "wavs/a.wav", "mel": "mels/a.pt", "frames": 9, "samples": 2304}
    (tmp_path / "train.jsonl").write_text(json.dumps(good) + "\n" + json.dumps({"id": "b"}) + "\n")
    (tmp_path / "val.jsonl").write_text("")
    with pytest.raises(D.DatasetError, match=r"train.jsonl:2: not a clip record"):
        D.PreparedData(tmp_path)
    (tmp_path / "train.jsonl").write_text(json.dumps(good) + "\n")
    data = D.PreparedData(tmp_path)
    assert [c.id for c in data.train] == ["a"] and data.val == [] and data.train[0].mel == tmp_path / "mels/a.pt"


def test_text_mel_batch_pads_to_r_and_has_one_gate_target_per_step():
    clips = [D.Clip("x", [5, 6, 7], Path("x"), Path("x"), 5, 0), D.Clip("y", [8, 9], Path("y"), Path("y"), 2, 0)]
    batch = D.collate_text_mel(clips, [torch.ones(80, 5), torch.ones(80, 2)], r=3)
    assert batch.mels.shape == (2, 80, 6) and batch.gate.shape == (2, 2)
    assert batch.gate.tolist() == [[0, 1], [1, 1]]  # the step holding the last real frame and after
    assert batch.step_lengths.tolist() == [2, 1] and batch.text.tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch.to("cpu").ids == ["x", "y"]


def test_guided_attention_and_scores_prefer_the_diagonal():
    steps, width = 12, 6
    diagonal = torch.zeros(1, steps, width)
    diagonal[0, torch.arange(steps), torch.arange(steps) * width // steps] = 1.0
    uniform = torch.full((1, steps, width), 1.0 / width)
    lengths, step_lengths = torch.tensor([width]), torch.tensor([steps])
    assert T.guided_attention_loss(diagonal, lengths, step_lengths) < 0.1
    assert T.guided_attention_loss(uniform, lengths, step_lengths) > 0.4
    focus, diag = T.attention_scores(diagonal, lengths, step_lengths)
    assert focus.item() == 1.0 and diag.item() > 0.9
    focus, diag = T.attention_scores(uniform, lengths, step_lengths)
    assert focus.item() == pytest.approx(1 / 6) and diag.item() < 0.6


def test_learning_rate_schedule_follows_the_reference():
    cfg = T.TrainConfig()  # NVIDIA: x0.1 at epochs 500, 1000, 1500
    assert [T.learning_rate_at(cfg, 0, e) for e in (0, 499, 500, 1000, 1500)] == pytest.approx(
        [1e-3, 1e-3, 1e-4, 1e-5, 1e-6])
    amp_recipe = dataclasses.replace(cfg, anneal_factor=0.3)  # the AMP platforms' alternating schedule
    assert [T.learning_rate_at(amp_recipe, 0, e) for e in (0, 500, 1000, 1500)] == pytest.approx(
        [1e-3, 3e-4, 1e-4, 3e-5])


def test_presets_and_config_files(tmp_path):
    nvidia = T.load_train_config("nvidia", "tacotron2")
    assert (nvidia.learning_rate, nvidia.weight_decay, nvidia.grad_clip, nvidia.batch_size) == (1e-3, 1e-6, 1.0, 48)
    assert nvidia.model_config == {} and nvidia.anneal_at == [500, 1000, 1500]
    small = T.load_train_config("small", "tacotron2")
    assert small.model_config["n_frames_per_step"] in (2, 3) and small.guided_attention_weight > 0
    assert T.load_train_config("nvidia", "waveglow").learning_rate == 1e-4
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"batch_size": 7, "model_config": {"n_frames_per_step": 2}}))
    assert T.load_train_config(str(path), "tacotron2").batch_size == 7
    path.write_text(json.dumps({"batch_sise": 7}))
    with pytest.raises(ValueError, match="batch_sise"):
        T.load_train_config(path, "tacotron2")


# --- training runs ----------------------------------------------------------------------------------------


def test_tacotron2_overfits_and_its_checkpoint_loads_everywhere(corpus, tmp_path):
    torch.set_num_threads(1)
    run = tmp_path / "t2"
    cfg = tiny_config(max_steps=60, val_every=60, checkpoint_every=30, keep_checkpoints=1, log_every=1)
    path = T.train_tacotron2(corpus, run, cfg)
    losses = [r["mel_loss"] + r["postnet_loss"] for r in read_log(run)]
    assert len(losses) == 60
    # Log mels of these tones start ~30 from a fresh model's outputs; 60 steps take them below a tenth.
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) / 10
    val = read_log(run, "val")[-1]
    assert val["step"] == 60 and math.isfinite(val["loss"]) and 0 < val["attention_focus"] <= 1
    assert 0 < val["diagonality"] <= 1 and val["infer_frames_ratio"] > 0
    for name in ("alignment", "mel", "gate", "inference"):
        assert (run / "plots" / f"step_0000060_{name}.png").stat().st_size > 1000
    audio = load_wav(run / "plots" / "step_0000060_inference.wav", sampling_rate=None)
    assert len(audio) > 0 and len(audio) % 256 == 0  # Griffin-Lim of the free-running mel, whole frames
    events = list((run / "tensorboard").glob("events.*"))
    assert events and sum(p.stat().st_size for p in events) > 20_000  # scalars plus images and audio
    assert json.loads((run / "config.json").read_text())["model_config"] == TINY_TACOTRON2

    assert path == run / "checkpoints" / "step_0000060.pt"
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_0000060.pt"]  # keep_checkpoints=1
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == "tacoglow" and raw["step"] == 60 and raw["training"]["state"]["step"] == 60
    assert raw["text"]["frontend"] == TEXT_FRONTEND_VERSION and raw["train_config"]["batch_size"] == 3
    assert isinstance(raw["training"]["rng"][0]["numpy"]["keys"], torch.Tensor)
    model = load_tacotron2(path)
    assert model.config.n_frames_per_step == 2 and model.config.symbols_embedding_dim == 32
    shipped = tmp_path / "voice.pt"
    T.export_checkpoint(path, shipped)
    assert "training" not in torch.load(shipped, weights_only=True)
    assert shipped.stat().st_size < path.stat().st_size / 2
    assert all(torch.equal(a, b) for a, b in zip(load_tacotron2(shipped).state_dict().values(),
                                                 model.state_dict().values()))
    synth = Synthesizer.from_checkpoints(path, griffin_lim_iters=2)  # the training checkpoint itself
    speech = synth.synthesize("a cat", seed=0)
    assert speech.audio.numel() > 0 and torch.isfinite(speech.audio).all()


def test_resumed_run_continues_the_same_loss_curve(corpus, tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_config(checkpoint_every=3, bucket_batches=1)
    T.train_tacotron2(corpus, tmp_path / "straight", cfg, max_steps=6)
    T.train_tacotron2(corpus, tmp_path / "resumed", cfg, max_steps=3)
    with (tmp_path / "resumed" / "log.jsonl").open("a") as f:  # as if killed after logging step 4, mid-line
        f.write(json.dumps({"split": "train", "step": 4, "loss": 1.0}) + '\n{"split": "tr')
    torch.manual_seed(999)  # whatever happens in between must not matter
    np.random.seed(999)
    T.train_tacotron2(corpus, tmp_path / "resumed", max_steps=6)  # the run's own config.json
    straight, resumed = read_log(tmp_path / "straight"), read_log(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    assert [r["loss"] for r in resumed] == [r["loss"] for r in straight]
    assert [r["epoch"] for r in resumed] == [r["epoch"] for r in straight]
    a = torch.load(tmp_path / "straight" / "checkpoints" / "step_0000006.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "step_0000006.pt", weights_only=True)
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    with pytest.raises(T.TrainingError, match="batch_size"):  # other settings on an existing run
        T.train_tacotron2(corpus, tmp_path / "resumed", dataclasses.replace(cfg, batch_size=2), max_steps=7)
    # The schedule may change on resume (a longer run moves its annealing points); the next step uses it.
    extended = dataclasses.replace(cfg, learning_rate=cfg.learning_rate * 2, anneal_at=[100])
    T.train_tacotron2(corpus, tmp_path / "resumed", extended, max_steps=7)
    last = read_log(tmp_path / "resumed")[-1]
    assert last["step"] == 7 and last["lr"] == pytest.approx(T.learning_rate_at(extended, 7, last["epoch"]))
    assert last["lr"] != pytest.approx(T.learning_rate_at(cfg, 7, last["epoch"]))
    saved = json.loads((tmp_path / "resumed" / "config.json").read_text())
    assert saved["anneal_at"] == [100] and saved["batch_size"] == cfg.batch_size


def test_arpabet_training_reads_words_as_phones_and_the_voice_says_so(corpus, tmp_path):
    torch.set_num_threads(1)
    from tacoglow.text.lexicon import LEXICON_VERSION

    data = D.PreparedData(corpus)
    clips = data.train[:4]
    mixed = t2loop._tacotron2_batch(data, clips, 2, 0.5, np.random.default_rng([1, 2]))
    again = t2loop._tacotron2_batch(data, clips, 2, 0.5, np.random.default_rng([1, 2]))
    chars = t2loop._tacotron2_batch(data, clips, 2)
    assert torch.equal(mixed.text, again.text) and torch.equal(mixed.mels, chars.mels)
    texts = [sequence_to_text(row[:n].tolist()) for row, n in zip(mixed.text, mixed.text_lengths)]
    assert any("{" in t for t in texts) and texts != [c.text for c in clips]
    full = t2loop._tacotron2_batch(data, clips[:1], 2, 1.0)
    assert sequence_to_text(full.text[0].tolist()) == "a {K AE1 T}"  # "a" is a homograph: spelled

    path = T.train_tacotron2(corpus, tmp_path / "phones", tiny_config(p_arpabet=0.5, max_steps=2))
    assert torch.load(path, weights_only=True)["text"]["arpabet"] == LEXICON_VERSION
    synth = Synthesizer.from_checkpoints(path, griffin_lim_iters=2)
    assert synth.synthesis.arpabet and sequence_to_text(synth.text_to_ids("A cat.")) == "a {K AE1 T}."
    shipped = tmp_path / "voice.pt"
    T.export_checkpoint(path, shipped)
    assert Synthesizer.from_checkpoints(shipped, griffin_lim_iters=2).synthesis.arpabet
    assert not Synthesizer.from_checkpoints(shipped, griffin_lim_iters=2, arpabet=False).synthesis.arpabet
    with pytest.raises(ValueError, match=r"p_arpabet must be in \[0, 1\]"):
        tiny_config(p_arpabet=2.0)


def test_leading_pause_training_puts_a_pause_first_and_the_voice_reads_with_it(corpus, tmp_path, caplog):
    torch.set_num_threads(1)
    from tacoglow.text.symbols import SYMBOL_TO_ID

    data = D.PreparedData(corpus)
    clips = data.train[:3]
    plain = t2loop._tacotron2_batch(data, clips, 2)
    paused = t2loop._tacotron2_batch(data, clips, 2, leading_pause=True)
    assert paused.text_lengths.tolist() == [n + 2 for n in plain.text_lengths.tolist()]
    by_id = {c.id: c for c in clips}
    for row, n, clip in zip(paused.text, paused.text_lengths, paused.ids):
        assert row[:n].tolist() == [SYMBOL_TO_ID[","], SYMBOL_TO_ID[" "], *by_id[clip].ids]
    phones = t2loop._tacotron2_batch(data, clips[:1], 2, 1.0, leading_pause=True)  # with ARPAbet: pause first
    assert sequence_to_text(phones.text[0].tolist()) == ", a {K AE1 T}"

    path = T.train_tacotron2(corpus, tmp_path / "paused", tiny_config(leading_pause=True, max_steps=2))
    assert torch.load(path, weights_only=True)["text"]["leading_pause"] is True
    shipped = tmp_path / "voice.pt"
    T.export_checkpoint(path, shipped)
    synth = Synthesizer.from_checkpoints(shipped, griffin_lim_iters=2)
    assert synth.synthesis.leading_pause and sequence_to_text(synth.text_to_ids("A cat.")) == ", a cat."
    assert [(w.text, w.start, w.end) for w in synth.word_spans("A cat.", synth.text_to_ids("A cat."))] == [
        ("a", 2, 3), ("cat", 4, 7)]  # the words' ids, after the pause
    spoken = synth.synthesize("A cat.", seed=1)
    assert [w.text for w in spoken.words] == ["a", "cat"]
    off = Synthesizer.from_checkpoints(shipped, griffin_lim_iters=2, leading_pause=False)
    assert sequence_to_text(off.text_to_ids("A cat.")) == "a cat."
    # A run without it, warm from a voice with it, says that the first words will be relearnt.
    with caplog.at_level("WARNING", logger="tacoglow.train.checkpoints"):
        T.train_tacotron2(corpus, tmp_path / "plain", tiny_config(max_steps=1), warm_start=shipped)
    assert "trained with leading_pause True, this run has leading_pause False" in caplog.text


def test_attention_timings_guide_each_step_to_its_phone_and_need_the_timings(corpus, tmp_path):
    import shutil

    timed = tmp_path / "timed"
    shutil.copytree(corpus, timed)
    data = D.PreparedData(timed)
    with pytest.raises(T.TrainingError, match="no phone_timings.jsonl; prepare a corpus that has one"):
        T.train_tacotron2(timed, tmp_path / "none", tiny_config(attention_timings=True, max_steps=1))
    # Each clip's words spread evenly over its length (one segment per word), all but the last clip.
    records = []
    for clip in data.train[:-1]:
        words = clip.text.split()
        seconds = clip.samples / data.audio.sampling_rate
        records.append({"id": clip.id, "segments": [[w, seconds * (k + 1) / len(words), f"_{k}"]
                                                    for k, w in enumerate(words)]})
    (timed / "phone_timings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    data = D.PreparedData(timed)
    batch = t2loop._tacotron2_batch(data, data.train, 2, timings=data.phone_timings())
    assert batch.attention_bands.shape == (len(data.train), batch.gate.size(1), 2)
    last = len(data.train) - 1
    assert batch.attention_bands[last].isnan().all()  # no timing: the diagonal prior
    first = batch.attention_bands[0, :int(batch.step_lengths[0])]
    assert not first.isnan().any() and first[0, 0] == 0  # from the first letter...
    assert first[-1, 1] > batch.text_lengths[0] - 2  # ...to the last (the last step's middle frame, near it)
    assert (first[1:, 0] >= first[:-1, 0]).all()  # the target moves forward through the text

    run = tmp_path / "timed_run"
    T.train_tacotron2(timed, run, tiny_config(attention_timings=True, max_steps=2))
    logged = read_log(run)
    assert len(logged) == 2 and all(math.isfinite(r["attention_loss"]) and r["attention_loss"] > 0 for r in logged)


def test_scheduled_sampling_feeds_whole_groups_of_the_models_own_predictions(corpus, tmp_path):
    torch.set_num_threads(1)
    data = D.PreparedData(corpus)
    batch = t2loop._tacotron2_batch(data, data.train[:4], 2)
    model = Tacotron2(Tacotron2Config(**TINY_TACOTRON2)).train()
    run, cfg = T.run.Run(tmp_path / "run", "cpu", None), tiny_config()
    torch.manual_seed(5)
    with torch.no_grad():
        predicted = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths)[0]
    rng = np.random.default_rng(0)
    torch.manual_seed(5)
    assert torch.equal(t2loop.own_predictions_mixed_in(model, batch, 2, 1.0, rng, run, cfg), predicted)
    assert torch.equal(t2loop.own_predictions_mixed_in(model, batch, 2, 0.0, rng, run, cfg), batch.mels)
    torch.manual_seed(5)
    mixed = t2loop.own_predictions_mixed_in(model, batch, 2, 0.5, np.random.default_rng(3), run, cfg)
    groups = (mixed == predicted).all(dim=1).reshape(4, -1, 2)  # (B, T / r, r): frame equals the prediction
    assert (groups.all(dim=2) | ~groups.any(dim=2)).all()  # a group is replaced whole or not at all
    assert 0.3 < groups.all(dim=2).float().mean() < 0.7
    assert torch.equal(mixed[~(mixed == predicted).all(dim=1, keepdim=True).expand_as(mixed)],
                       batch.mels[~(mixed == predicted).all(dim=1, keepdim=True).expand_as(mixed)])

    trained = tmp_path / "sampled"
    T.train_tacotron2(corpus, trained, tiny_config(scheduled_sampling=0.5, max_steps=2))
    assert len(read_log(trained)) == 2 and all(math.isfinite(r["loss"]) for r in read_log(trained))
    with pytest.raises(ConfigError, match="scheduled_sampling must be in"):
        tiny_config(scheduled_sampling=1.5)
    with pytest.raises(ConfigError, match="attention_timings .* set guided_attention_weight > 0"):
        tiny_config(attention_timings=True, guided_attention_weight=0.0)


def test_free_running_steps_read_the_decoders_own_output_not_the_recorded_frames(corpus, tmp_path):
    torch.set_num_threads(1)
    data = D.PreparedData(corpus)
    batch = t2loop._tacotron2_batch(data, data.train[:3], 2)
    model = Tacotron2(Tacotron2Config(**TINY_TACOTRON2)).train()
    steps = batch.gate.size(1)
    k = steps // 2  # perturb the recorded group k, which step k + 1 reads when teacher-forced
    changed = batch.mels.clone()
    changed[:, :, 2 * k:2 * k + 2] += 1.0

    def run(mels, feedback):
        torch.manual_seed(11)
        with torch.no_grad():
            return model(batch.text, batch.text_lengths, mels, batch.mel_lengths, feedback)[0]

    teacher = torch.zeros(3, steps, dtype=torch.bool)
    a, b = run(batch.mels, teacher), run(changed, teacher)
    assert torch.equal(a[:, :, :2 * (k + 1)], b[:, :, :2 * (k + 1)])  # steps 0..k never read group k
    assert not torch.allclose(a[:, :, 2 * (k + 1):], b[:, :, 2 * (k + 1):])  # step k + 1 and on do
    own = teacher.clone()
    own[:, k + 1] = True  # step k + 1 reads its own output of step k instead of the recorded group k
    assert torch.equal(run(batch.mels, own), run(changed, own))
    everything = torch.ones(3, steps, dtype=torch.bool)
    assert torch.equal(run(batch.mels, everything), run(torch.zeros_like(batch.mels), everything))

    draws = t2loop.free_running_steps(batch, 0.5, np.random.default_rng(1))
    assert draws.shape == (3, steps) and draws.dtype == torch.bool and 0.2 < draws.float().mean() < 0.8
    assert torch.equal(draws, t2loop.free_running_steps(batch, 0.5, np.random.default_rng(1)))
    trained = tmp_path / "free"
    T.train_tacotron2(corpus, trained, tiny_config(free_running=0.5, max_steps=2))
    logged = read_log(trained)  # the second pass's terms beside the teacher-forced ones, summed in "loss"
    assert len(logged) == 2 and all(math.isfinite(r["loss"]) and "forcing_loss" not in r for r in logged)
    assert all(r["loss"] > r["mel_loss"] + r["postnet_loss"] + r["own_mel_loss"] + r["own_postnet_loss"]
               for r in logged)
    with pytest.raises(ConfigError, match="free_running must be in"):
        tiny_config(free_running=-0.1)


def test_attention_forcing_makes_the_frames_read_the_given_alignment(corpus, tmp_path):
    torch.set_num_threads(1)
    data = D.PreparedData(corpus)
    batch = t2loop._tacotron2_batch(data, data.train[:3], 2)
    model = Tacotron2(Tacotron2Config(**TINY_TACOTRON2)).train()
    everything = torch.ones(3, batch.gate.size(1), dtype=torch.bool)

    def run(forced):
        torch.manual_seed(7)
        with torch.no_grad():
            return model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths, everything, forced)

    forced = run(None)[3]  # the attention's own alignment, (B, T / r, T_in)
    before, forcing = run(None), run(forced)
    assert torch.equal(forcing[3], before[3])  # the alignments returned are the attention's own
    with torch.no_grad():
        model.decoder.attention_layer.v.linear_layer.weight.mul_(-3.0)  # the attention now lands elsewhere
    after, forced_after = run(None), run(forced)
    assert not torch.allclose(after[0], before[0]) and not torch.allclose(after[3], before[3])
    # With the alignment forced, the frames do not depend on where the attention itself would look...
    assert torch.allclose(forced_after[0], forcing[0], atol=1e-6) and torch.equal(forced_after[2], forcing[2])
    assert not torch.allclose(forced_after[3], forcing[3])  # ...while its own weights are still returned

    one_hot = torch.zeros(1, 4, 5)
    one_hot[0, torch.arange(4), torch.tensor([0, 1, 1, 3])] = 1.0
    single = D.TextMelBatch(batch.text[:1], batch.text_lengths[:1], torch.zeros(1, 80, 8), torch.tensor([5]),
                            torch.zeros(1, 4), ["x"], None)
    assert float(t2loop.forcing_loss(one_hot, one_hot, single)) == pytest.approx(0.0, abs=1e-6)
    uniform = torch.full((1, 4, 5), 0.2)
    assert float(t2loop.forcing_loss(uniform, one_hot, single)) == pytest.approx(math.log(5), rel=1e-6)
    spoiled = uniform.clone()
    spoiled[0, 3] = 1e-3  # step 3 holds frames 6 and 7, past the 5 frames: it is not counted
    assert float(t2loop.forcing_loss(spoiled, one_hot, single)) == pytest.approx(math.log(5), rel=1e-6)

    trained = tmp_path / "forced"
    T.train_tacotron2(corpus, trained, tiny_config(free_running=1.0, attention_forcing=1.0, max_steps=2))
    logged = read_log(trained)
    assert len(logged) == 2 and all(math.isfinite(r["loss"]) and r["forcing_loss"] > 0 and r["own_mel_loss"] > 0
                                    for r in logged)
    with pytest.raises(ConfigError, match="attention_forcing must be >= 0"):
        tiny_config(attention_forcing=-1.0)
    with pytest.raises(ConfigError, match="free_running is 0: set free_running > 0"):
        tiny_config(attention_forcing=1.0)


def test_nonfinite_losses_are_skipped_then_stop_the_run(corpus, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    real_loss = T.tacotron2_loss
    poisoned = {2, 3}  # 0-based steps whose loss becomes NaN

    def loss_with_nan(outputs, batch, cfg, step):
        losses = real_loss(outputs, batch, cfg, step)
        if step in poisoned:
            losses["loss"] = losses["loss"] * float("nan")
        return losses

    monkeypatch.setattr(t2loop, "tacotron2_loss", loss_with_nan)
    run = tmp_path / "nan"
    T.train_tacotron2(corpus, run, tiny_config(max_steps=6, checkpoint_every=2, keep_checkpoints=10))
    records = read_log(run)
    assert [r["skipped"] for r in records] == [False, False, True, True, False, False]
    assert records[-1]["nonfinite_total"] == 2 and records[2]["loss"] is None
    # Steps 3 and 4 were skipped: the weights after step 4 are those after step 2.
    a = torch.load(run / "checkpoints" / "step_0000002.pt", weights_only=True)["state_dict"]
    b = torch.load(run / "checkpoints" / "step_0000004.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a if "running_" not in k and "num_batches" not in k)

    poisoned.clear()
    poisoned.update(range(4, 100))  # from the 5th step on, every loss is NaN
    with pytest.raises(T.TrainingError, match=r"stopped at step 7: .* 3 steps in a row \(steps 5-7\)"):
        T.train_tacotron2(corpus, tmp_path / "nan2", tiny_config(max_steps=50, max_nonfinite=3))
    assert T.latest_checkpoint(tmp_path / "nan2").name == "step_0000007.pt"  # the good weights are kept


def test_grad_scaler_skips_steps_with_infinite_gradients():
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 10, growth_interval=1000)
    x = torch.ones(2, 4)
    before = [p.detach().clone() for p in model.parameters()]
    # A finite loss whose scaled gradients overflow float32: the scaler skips the update and halves its scale.
    result = T.backward_and_step({"loss": model(x).sum() * 3e35}, model, optimizer, scaler, grad_clip=1.0)
    assert result.scaler_skipped and not result.skipped
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert scaler.get_scale() == 2.0 ** 9
    result = T.backward_and_step({"loss": model(x).sum()}, model, optimizer, scaler, grad_clip=1.0)
    assert not result.scaler_skipped and not result.skipped and scaler.get_scale() == 2.0 ** 9
    assert not all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    assert result.grad_norm == pytest.approx(math.sqrt(4 * 2 ** 2 + 2 ** 2))  # unscaled before clipping
    # A non-finite loss is skipped (and counted) whatever the scaler says.
    result = T.backward_and_step({"loss": model(x).sum() * float("inf")}, model, optimizer, scaler, grad_clip=1.0)
    assert result.skipped and not math.isfinite(result.stats["loss"])


def test_waveglow_overfits_and_loads(corpus, tmp_path):
    torch.set_num_threads(1)
    run = tmp_path / "wg"
    path = T.train_waveglow(corpus, run, tiny_config("waveglow", max_steps=40, val_every=40, batch_size=2))
    losses = [r["loss"] for r in read_log(run)]
    # The NLL per sample starts near 0 and goes well below it as the flow learns the tones.
    assert np.mean(losses[-5:]) < np.mean(losses[:3]) - 1.0
    assert math.isfinite(read_log(run, "val")[-1]["loss"])
    model = load_waveglow(path)
    assert model.config.n_flows == 4 and inspect_checkpoint(path).audio == AudioConfig()
    audio = model.infer(torch.zeros(1, 80, 4), sigma=0.5)
    assert audio.shape == (1, 1024) and torch.isfinite(audio).all()


def test_bf16_autocast_trains_on_cpu(corpus, tmp_path):
    torch.set_num_threads(1)
    run = tmp_path / "bf16"
    T.train_tacotron2(corpus, run, tiny_config(max_steps=2), amp="bf16")
    assert all(math.isfinite(r["loss"]) for r in read_log(run))
    with pytest.raises(T.TrainingError, match="fp16"):
        T.train_tacotron2(corpus, tmp_path / "fp16", tiny_config(max_steps=1), amp="fp16", device="cpu")


def _child_env() -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("WORLD_SIZE", None)
    return env


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(corpus, tmp_path):
    run = tmp_path / "term"
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config(max_steps=100_000, checkpoint_every=100_000).to_dict()))
    child = subprocess.Popen([sys.executable, "-m", "tacoglow", "train", "tacotron2", "--data", str(corpus),
                              "--run", str(run), "--config", str(config), "--threads", "1"],
                             env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not ((run / "log.jsonl").exists() and len(read_log(run)) >= 3):
            assert child.poll() is None and time.monotonic() < deadline, child.stdout.read().decode()
            time.sleep(0.1)
        child.send_signal(signal.SIGTERM)
        output = child.communicate(timeout=60)[0].decode()
    finally:
        child.kill()
    assert child.returncode == 0, output
    path = T.latest_checkpoint(run)
    steps = len(read_log(run))
    assert path is not None and path.name == f"step_{steps:07d}.pt", output
    assert load_tacotron2(path).config.n_frames_per_step == 2
    assert torch.load(path, weights_only=True)["training"]["state"]["step"] == steps
    # ... and the run goes on from there, in this process, with the run's own settings.
    T.train_tacotron2(corpus, run, max_steps=steps + 2, threads=1)
    assert [r["step"] for r in read_log(run)][-3:] == [steps, steps + 1, steps + 2]


def test_two_processes_with_gloo(corpus, tmp_path):
    run = tmp_path / "ddp"
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config(max_steps=3).to_dict()))
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    command = torchrun + ["-m", "tacoglow", "train", "tacotron2", "--data", str(corpus), "--run-dir", str(run),
                          "--config", str(config), "--device", "cpu"]
    done = subprocess.run(command, env=_child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "resuming" not in done.stderr
    records = read_log(run)
    assert [r["step"] for r in records] == [1, 2, 3]  # one writer: rank 0
    assert all(r["frames_per_second"] > 0 and math.isfinite(r["loss"]) for r in records)
    path = T.latest_checkpoint(run)
    raw = torch.load(path, weights_only=True)
    assert raw["training"]["world_size"] == 2 and len(raw["training"]["rng"]) == 2
    assert not torch.equal(raw["training"]["rng"][0]["torch"], raw["training"]["rng"][1]["torch"])
    assert load_tacotron2(path).config.n_frames_per_step == 2
    # Resumed by both processes; only rank 0 says so, once.
    done = subprocess.run(command + ["--max-steps", "4"], env=_child_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert done.stderr.count(f"resuming {run} from step 3 ({path})") == 1, done.stderr[-3000:]
    assert [r["step"] for r in read_log(run)] == [1, 2, 3, 4]

    # Two passes through the wrapped model before one backward (free-running steps, attention forcing).
    forced = tmp_path / "ddp_forced"
    config.write_text(json.dumps(tiny_config(max_steps=2, free_running=1.0, attention_forcing=1.0).to_dict()))
    command = command[:command.index("--run-dir") + 1] + [str(forced)] + command[command.index("--run-dir") + 2:]
    done = subprocess.run(command, env=_child_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert [r["step"] for r in read_log(forced)] == [1, 2] and all(r["forcing_loss"] > 0 for r in read_log(forced))


def test_warm_start_copies_matching_weights_and_can_drop_the_embedding(corpus, tmp_path):
    torch.set_num_threads(1)
    source = T.train_tacotron2(corpus, tmp_path / "source", tiny_config(max_steps=2))
    start = T.train_tacotron2(corpus, tmp_path / "warm", tiny_config(max_steps=0), warm_start=source,
                              drop_embedding=True)
    assert start.name == "step_0000000.pt"
    a = torch.load(source, weights_only=True)["state_dict"]
    b = torch.load(start, weights_only=True)["state_dict"]
    assert not torch.equal(a["embedding.weight"], b["embedding.weight"])
    assert all(torch.equal(a[k], b[k]) for k in a if k != "embedding.weight")
    with pytest.raises(T.TrainingError, match="already holds checkpoints"):
        T.train_tacotron2(corpus, tmp_path / "warm", tiny_config(max_steps=1), resume=False)
    with pytest.raises(T.TrainingError, match="tensors match"):  # a WaveGlow is no warm start for Tacotron 2
        wg = T.train_waveglow(corpus, tmp_path / "wg", tiny_config("waveglow", max_steps=0))
        T.train_tacotron2(corpus, tmp_path / "warm2", tiny_config(max_steps=1), warm_start=wg)


def test_command_line_glue(corpus, tmp_path, capsys):
    config = tmp_path / "tiny.json"
    config.write_text(json.dumps(tiny_config("waveglow").to_dict()))
    run = tmp_path / "cli"
    args = ["train", "waveglow", "--data", str(corpus), "--run", str(run), "--config", str(config),
            "--threads", "1", "--device", "cpu", "--amp", "none"]
    assert cli_main(args + ["--max-steps", "2"]) == 0
    err = capsys.readouterr().err
    assert "step_0000002.pt" in err and T.latest_checkpoint(run).name == "step_0000002.pt"
    assert "resuming" not in err  # a new run
    if (run / "tensorboard").exists():  # TensorBoard is optional; when installed it gets the same scalars
        assert any((run / "tensorboard").iterdir())
    assert cli_main(args + ["--max-steps", "3"]) == 0  # the same run, one step further
    err = capsys.readouterr().err
    resuming = [line for line in err.splitlines() if line.startswith("resuming")]
    assert resuming == [f"resuming {run} from step 2 ({run / 'checkpoints' / 'step_0000002.pt'})"], err
    assert T.latest_checkpoint(run).name == "step_0000003.pt"
    assert cli_main(["train", "tacotron2", "--data", str(tmp_path / "nowhere"), "--run", str(tmp_path / "x")]) == 1
    assert "no dataset.json" in capsys.readouterr().err


# --- HiFi-GAN -----------------------------------------------------------------------------------------------

# A HiFi-GAN generator of every block kind, a few channels wide, against discriminators at 1/32 width.
TINY_HIFIGAN = dict(upsample_rates=[8, 8, 4], upsample_kernel_sizes=[16, 16, 8], upsample_initial_channel=32,
                    resblock="2", resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]])


def tiny_hifigan_config(**overrides) -> T.TrainConfig:
    base = dict(T.PRESETS["hifigan"]["small"].to_dict(), model_config=TINY_HIFIGAN, learning_rate=2e-3,
                segment_length=2048, batch_size=2, discriminator_divisor=32, max_steps=4, log_every=1,
                val_every=1000, val_items=1, checkpoint_every=1000)
    return T.TrainConfig.from_dict({**base, **overrides})


def test_hifigan_discriminators_and_losses_are_the_papers():
    from tacoglow.hifigan import HiFiGANDiscriminator, HiFiGANMel, discriminator_loss, generator_loss

    with torch.device("meta"):  # shapes only
        full = HiFiGANDiscriminator()
    assert sum(p.numel() for p in full.parameters()) == 70_724_591  # MPD 41.1 M + MSD 29.6 M, as jik876's
    keys = full.state_dict().keys()  # jik876's names (and shapes): its do_N files load as they are
    assert {"mpd.discriminators.4.convs.0.weight_g", "msd.discriminators.0.convs.0.weight_orig",
            "msd.discriminators.1.conv_post.weight_v"} <= set(keys)
    scores, maps = HiFiGANDiscriminator(divisor=32)(torch.randn(2, 1, 2048) * 0.1)
    assert len(scores) == len(maps) == 8 and [len(m) for m in maps] == [6] * 5 + [8] * 3
    ones, zeros = [torch.ones(2, 5)] * 3, [torch.zeros(2, 5)] * 3
    assert float(discriminator_loss(ones, zeros)) == 0 and float(generator_loss(zeros)) == 3
    audio = torch.zeros(1, 8192, requires_grad=True)  # silence: sqrt(0 + 1e-9) keeps the gradient finite
    mel = HiFiGANMel()(audio)
    assert mel.shape == (1, 80, 32)  # (n_fft - hop) / 2 padding, center=False: T / hop frames
    mel.sum().backward()
    assert torch.isfinite(audio.grad).all()


def test_hifigan_training_lowers_the_mel_loss_and_leaves_a_loadable_generator(corpus, tmp_path, capsys):
    from tacoglow.checkpoint import load_hifigan

    torch.set_num_threads(1)
    run = tmp_path / "hg"
    path = T.train_hifigan(corpus, run, tiny_hifigan_config(max_steps=16, val_every=16))
    mel = [r["mel_l1"] for r in read_log(run)]
    assert np.mean(mel[-4:]) < np.mean(mel[:3]) - 0.3, mel
    assert all(math.isfinite(r["discriminator"]) for r in read_log(run))
    assert math.isfinite(read_log(run, "val")[-1]["mel_l1"]) and (run / "plots" / "step_0000016.wav").exists()
    shipped = tmp_path / "generator.pt"
    T.export_checkpoint(path, shipped)
    for file in (path, shipped):
        generator = load_hifigan(file)
        assert generator.config.upsample_initial_channel == 32 and inspect_checkpoint(file).kind == "hifigan"
        assert generator(torch.zeros(1, 80, 3)).shape == (1, 1, 768)
    assert "discriminator" not in json.dumps(list(torch.load(shipped, weights_only=True)))
    assert cli_main(["info", str(shipped)]) == 0 and "hifigan" in capsys.readouterr().out


def test_hifigan_resume_is_exact(corpus, tmp_path):
    torch.set_num_threads(1)
    cfg = tiny_hifigan_config(max_steps=4)  # 3 batches per epoch: the learning rate decays on the way
    T.train_hifigan(corpus, tmp_path / "straight", cfg)
    T.train_hifigan(corpus, tmp_path / "resumed", cfg, max_steps=2)
    T.train_hifigan(corpus, tmp_path / "resumed", cfg)
    straight, resumed = read_log(tmp_path / "straight"), read_log(tmp_path / "resumed")
    assert [r["step"] for r in resumed] == [1, 2, 3, 4] and resumed[-1]["lr"] < resumed[0]["lr"]
    for key in ("loss", "mel_l1", "discriminator", "lr"):
        assert [r[key] for r in resumed] == [r[key] for r in straight]
    a = torch.load(tmp_path / "straight" / "checkpoints" / "step_0000004.pt", weights_only=True)
    b = torch.load(tmp_path / "resumed" / "checkpoints" / "step_0000004.pt", weights_only=True)
    da, db = a["training"]["discriminator"], b["training"]["discriminator"]
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert all(torch.equal(da["state_dict"][k], db["state_dict"][k]) for k in da["state_dict"])
    assert all(torch.equal(x, y) for x, y in zip(da["optimizer"]["state"][0].values(),
                                                 db["optimizer"]["state"][0].values()))


def test_prepare_gta_writes_teacher_forced_mels_of_each_clip(corpus, tmp_path):
    from tacoglow.checkpoint import save_model
    from tacoglow.tacotron2 import Tacotron2, Tacotron2Config
    from tacoglow.text.lexicon import LEXICON_VERSION, to_arpabet

    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = Tacotron2(Tacotron2Config(**TINY_TACOTRON2, mask_padding=True)).eval()  # r = 2: padding cut off
    t2 = tmp_path / "t2.pt"
    save_model(model, t2, audio=AudioConfig())
    data = D.PreparedData(corpus)
    clips = sorted(data.train + data.val, key=lambda c: (-c.frames, c.id))

    def assert_teacher_forced(folder, ids_of):
        """Each clip's mel in ``folder`` equals a manual teacher-forced pass on ``ids_of(clip)``."""
        torch.manual_seed(7)  # the same clips in the same order, one by one: the same prenet draws
        with torch.no_grad():
            for clip in clips:
                batch = D.collate_text_mel([dataclasses.replace(clip, ids=ids_of(clip))], [data.load_mel(clip)], 2)
                expected = model(batch.text, batch.text_lengths, batch.mels, batch.mel_lengths)[1][0, :, :clip.frames]
                assert torch.equal(torch.load(folder / f"{clip.id}.pt", weights_only=True), expected)

    out = T.prepare_gta(t2, corpus, tmp_path / "gta1", batch_size=1, seed=7, progress=False)
    assert_teacher_forced(out, lambda clip: clip.ids)
    manifest = json.loads((out / "gta.json").read_text())
    assert manifest["clips"] == len(clips) and manifest["reading"] == {"arpabet": False, "leading_pause": False}
    # Batched, from the command line: each mel as long as its clip's (odd lengths included).
    assert cli_main(["prepare", str(corpus), str(tmp_path / "gta"), "--gta", str(t2), "--quiet"]) == 0
    assert any(c.frames % 2 for c in clips)
    for clip in clips:
        assert torch.load(tmp_path / "gta" / f"{clip.id}.pt", weights_only=True).shape == (80, clip.frames)
    # A voice that reads after a pause symbol (text.leading_pause) is teacher-forced with it.
    save_model(model, tmp_path / "paused.pt", audio=AudioConfig(), text={"leading_pause": True})
    paused = T.prepare_gta(tmp_path / "paused.pt", corpus, tmp_path / "gta2", batch_size=1, seed=7, progress=False)
    assert_teacher_forced(paused, lambda clip: [6, 11, *clip.ids])
    # A voice that learned phones (text.arpabet) is teacher-forced reading every lexicon word as ARPAbet, as
    # synthesis reads it, not with the dataset's character ids.
    save_model(model, tmp_path / "phones.pt", audio=AudioConfig(), text={"arpabet": LEXICON_VERSION})
    phones = T.prepare_gta(tmp_path / "phones.pt", corpus, tmp_path / "gta3", batch_size=1, seed=7, progress=False)
    read = {clip.id: text_to_sequence(to_arpabet(clip.text), ["english_cleaners"]) for clip in clips}
    assert_teacher_forced(phones, lambda clip: read[clip.id])
    assert sum(read[clip.id] != clip.ids for clip in clips) >= len(clips) // 2  # the reading did change
    assert json.loads((phones / "gta.json").read_text())["reading"] == {"arpabet": True, "leading_pause": False}


def test_hifigan_fine_tunes_a_jik876_generator_on_gta_mels(corpus, tmp_path):
    from tacoglow.checkpoint import load_hifigan
    from tacoglow.hifigan import HiFiGAN, HiFiGANConfig, HiFiGANDiscriminator

    torch.set_num_threads(1)
    gta = tmp_path / "gta"
    gta.mkdir()
    data = D.PreparedData(corpus)
    for clip in data.train + data.val:  # stand-ins for teacher-forced mels: the real ones, shifted
        torch.save(data.load_mel(clip) + 0.5, gta / f"{clip.id}.pt")
    # A generator and its discriminators as jik876's train.py leaves them: g_N, do_N and config.json.
    torch.manual_seed(3)
    source = tmp_path / "jik876"
    source.mkdir()
    config = HiFiGANConfig(**TINY_HIFIGAN)
    torch.save({"generator": HiFiGAN(config).state_dict()}, source / "g_00000010")
    discriminator = HiFiGANDiscriminator(divisor=32)
    torch.save({"mpd": discriminator.mpd.state_dict(), "msd": discriminator.msd.state_dict(), "steps": 10},
               source / "do_00000010")
    audio = AudioConfig()
    (source / "config.json").write_text(json.dumps({
        **config.to_reference(), "sampling_rate": audio.sampling_rate, "n_fft": audio.filter_length,
        "hop_size": audio.hop_length, "win_size": audio.win_length, "fmin": 0, "fmax": 8000}))

    run = tmp_path / "ft"
    args = ["train", "hifigan", "--data", str(corpus), "--run", str(run), "--input-mels", str(gta),
            "--warm-start", str(source / "g_00000010"), "--max-steps", "2", "--threads", "1"]
    config_file = tmp_path / "tiny.json"
    config_file.write_text(json.dumps(tiny_hifigan_config().to_dict()))
    assert cli_main(args + ["--config", str(config_file)]) == 0
    cfg = T.TrainConfig.from_dict(json.loads((run / "config.json").read_text()))
    assert cfg.input_mels == str(gta)
    # Step 0's validation is the loaded generator's own output on the teacher-forced mels.
    start = read_log(run, "val")[0]
    assert start["step"] == 0
    expected = T.validate_hifigan(load_hifigan(source / "g_00000010"), data, data.val[:1], cfg, torch.device("cpu"))
    assert start["mel_l1"] == pytest.approx(expected["mel_l1"], rel=1e-5)
    assert [r["step"] for r in read_log(run)] == [1, 2]
    # The discriminators came from do_N: after two updates they are near it, not a fresh draw.
    trained = torch.load(T.latest_checkpoint(run), weights_only=True)["training"]["discriminator"]["state_dict"]
    key = "mpd.discriminators.0.convs.1.weight_v"
    assert (trained[key] - discriminator.state_dict()[key]).abs().max() < 0.05
    # A generator saved for inference (weight norm folded) warm-starts too: the norm is split off again.
    from tacoglow.checkpoint import save_model

    folded = tmp_path / "folded.pt"
    save_model(load_hifigan(source / "g_00000010"), folded)
    start = T.train_hifigan(corpus, tmp_path / "ft2", cfg, max_steps=0, warm_start=folded)
    mel = data.load_mel(data.val[0])[None]
    assert torch.allclose(load_hifigan(start)(mel), load_hifigan(folded)(mel), atol=1e-5)
