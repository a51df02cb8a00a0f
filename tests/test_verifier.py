"""The phone verifier: its targets, its training, its file, and the synthesizer choosing among decodings by it."""
import dataclasses
import logging

import pytest
import torch

from tacoglow import train as T
from tacoglow.audio import AudioConfig
from tacoglow.checkpoint import CheckpointError, load_tacotron2, load_verifier, save_model
from tacoglow.cli import main as cli_main
from tacoglow.config import ConfigError
from tacoglow.synthesis import SynthesisConfig
from tacoglow.synthesizer import Synthesizer
from tacoglow.text import prepare_text
from tacoglow.text.symbols import SYMBOL_TO_ID
from tacoglow.verifier import CLASSES, PhoneVerifier, VerifierConfig, best_candidate, phone_classes

from helpers import tiny_tacotron2
from test_train import make_corpus, read_log

TINY = dict(channels=16, hidden=8, kernel_size=3)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


def names(classes):
    return [CLASSES[c] for c in classes]


def test_phone_classes_keep_the_sounds_without_stress_and_drop_punctuation():
    ids = prepare_text("Hi, Xq!", arpabet=True, leading_pause=True)  # "xq" is not in the lexicon: spelled
    assert names(phone_classes(ids)) == ["HH", "AY", "x", "q"]
    symbols = ("_", ",", " ", "-", "@ER1", "@ER0", "@ER")
    assert phone_classes([SYMBOL_TO_ID[s] for s in symbols]) == [CLASSES.index("ER")] * 3
    assert len(CLASSES) == 1 + 39 + 26 and CLASSES[0] == "<blank>"


def test_the_verifier_halves_the_frame_rate_and_scores_a_cut_short_mel_as_impossible():
    torch.manual_seed(0)
    verifier = PhoneVerifier(VerifierConfig(**TINY)).eval()
    log_probs, lengths = verifier(torch.randn(2, 80, 31), torch.tensor([31, 20]))
    assert log_probs.shape == (2, 16, len(CLASSES)) and lengths.tolist() == [16, 10]
    assert torch.allclose(log_probs.exp().sum(-1), torch.ones(2, 16), atol=1e-5)
    ids = prepare_text("hello there", arpabet=True)  # 7 phones: CTC needs at least 7 output frames
    scores = verifier.score([torch.randn(80, 40), torch.randn(80, 6)], ids)
    assert torch.isfinite(scores[0]) and scores[1] == float("inf")
    no_phones = [SYMBOL_TO_ID[","], SYMBOL_TO_ID[" "]]
    assert verifier.score([torch.randn(80, 40)] * 2, no_phones).tolist() == [0.0, 0.0]  # no preference


class FixedScores(PhoneVerifier):
    """A verifier whose scores are given, to test the choice alone."""

    def __init__(self, scores):
        super().__init__(VerifierConfig(**TINY))
        self.fixed = torch.tensor(scores, dtype=torch.float32)

    def score(self, mels, ids):
        return self.fixed[:len(mels)]


def test_best_candidate_prefers_decodings_that_stopped_by_the_gate():
    mels = [torch.zeros(80, 10)] * 4
    assert best_candidate(FixedScores([3.0, 1.0, 2.0, 0.5]), mels, [5], [True, True, True, True]) == 3
    assert best_candidate(FixedScores([3.0, 1.0, 2.0, 0.5]), mels, [5], [True, False, True, False]) == 2
    assert best_candidate(FixedScores([3.0, 1.0, 2.0, 0.5]), mels, [5], [False] * 4) == 3
    assert best_candidate(FixedScores([float("inf")] * 4), mels, [5], [True] * 4) == 0


def test_synthesis_config_refuses_a_candidate_count_out_of_range():
    assert SynthesisConfig(candidates=4).candidates == 4
    for bad in (0, 17, 2.5, "3"):
        with pytest.raises(ConfigError, match="candidates must be"):
            SynthesisConfig(candidates=bad)


def test_the_synthesizer_keeps_the_candidate_the_verifier_scores_best():
    t2 = tiny_tacotron2(seed=3, max_decoder_steps=30)
    with torch.no_grad():
        t2.decoder.gate_layer.linear_layer.bias.fill_(-1e4)  # decode to the cap: 30 frames each
    plain = Synthesizer(t2, frames_per_symbol=None)
    job = plain.sentence_jobs("a cat sat", seed=11)[0]
    # The candidates as the synthesizer makes them: the job's own generator first, then streams 3 and 4.
    decodings = plain.synthesize_ids([job.ids] * 3, [job.generator(0), job.generator(3), job.generator(4)])
    assert not torch.equal(decodings[0].mel, decodings[1].mel)  # prenet dropout: each decoding differs
    for scores, chosen in (([2.0, 1.0, 3.0], 1), ([2.0, 3.0, 1.0], 2), ([1.0, 2.0, 3.0], 0)):
        picker = Synthesizer(t2, frames_per_symbol=None, candidates=3, verifier=FixedScores(scores))
        assert picker.candidates == 3
        result = picker.decode_jobs([job])[0]
        assert torch.equal(result.mel, decodings[chosen].mel), (scores, chosen)
    # Candidate 0 is the single decoding (to float rounding: a batch of one sums in another order): candidates 1,
    # or no verifier, decode as before.
    single = plain.decode_jobs([job])[0].mel
    assert torch.allclose(single, decodings[0].mel, atol=1e-5) and not torch.allclose(single, decodings[1].mel)
    assert torch.equal(Synthesizer(t2, frames_per_symbol=None, candidates=3).decode_jobs([job])[0].mel, single)
    once = Synthesizer(t2, frames_per_symbol=None, candidates=1, verifier=FixedScores([2.0, 1.0, 3.0]))
    assert once.candidates == 1 and torch.equal(once.decode_jobs([job])[0].mel, single)
    # A request decoded with candidates gives the same audio each time with its seed, and in a batch.
    picker = Synthesizer(t2, frames_per_symbol=None, candidates=3, verifier=FixedScores([2.0, 1.0, 3.0]))
    alone = picker.synthesize("a cat sat. the sun.", seed=5).audio
    assert torch.equal(picker.synthesize_batch(["one two", "a cat sat. the sun."], seeds=[1, 5])[1].audio, alone)


def test_train_verifier_learns_the_corpus_phones_resumes_and_loads_into_a_voice(corpus, tmp_path):
    cfg = dataclasses.replace(T.PRESETS["verifier"]["small"], model_config=TINY, batch_size=3, max_steps=40,
                              learning_rate=1e-2, log_every=1, val_every=40, val_items=2, checkpoint_every=20)
    path = T.train_verifier(corpus, tmp_path / "run", cfg, threads=1)
    losses = [r["loss"] for r in read_log(tmp_path / "run")]
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    assert read_log(tmp_path / "run", "val")[-1]["per"] <= 1.0
    verifier = load_verifier(path)
    assert isinstance(verifier, PhoneVerifier) and not verifier.training
    assert verifier.mel_std.min() > 0 and verifier.mel_mean.abs().sum() > 0  # normalization from the corpus

    # Resumed from step 20, the run reaches the same weights as without the stop.
    again = tmp_path / "again"
    T.train_verifier(corpus, again, dataclasses.replace(cfg, max_steps=20), threads=1)
    resumed = load_verifier(T.train_verifier(corpus, again, cfg, threads=1))
    for key, value in verifier.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key

    # A voice folder: Tacotron 2 whose settings ask for candidates, with verifier.pt beside it.
    voice = tmp_path / "voice"
    voice.mkdir()
    save_model(tiny_tacotron2(seed=1), voice / "tacotron2.pt", synthesis={"candidates": 3})
    T.export_checkpoint(path, voice / "verifier.pt", dtype=torch.float16)
    synthesizer = Synthesizer.from_checkpoints(voice / "tacotron2.pt")
    assert synthesizer.candidates == 3 and synthesizer.synthesis.candidates == 3
    assert len(synthesizer.synthesize("A cat. The sun.", seed=1).sentences) == 2  # three decodings of each
    assert Synthesizer.from_checkpoints(voice / "tacotron2.pt", candidates=1).candidates == 1
    assert cli_main(["info", str(voice / "verifier.pt")]) == 0


def test_a_voice_without_its_verifier_decodes_once_and_a_mismatched_file_is_refused(tmp_path, caplog):
    voice = tmp_path / "voice"
    voice.mkdir()
    save_model(tiny_tacotron2(seed=1), voice / "tacotron2.pt", synthesis={"candidates": 4})
    with caplog.at_level(logging.INFO, logger="tacoglow.synthesizer"):
        assert Synthesizer.from_checkpoints(voice / "tacotron2.pt").candidates == 1
    assert "no verifier.pt beside it, so each sentence is decoded once" in caplog.text
    save_model(PhoneVerifier(VerifierConfig(**TINY)), tmp_path / "other.pt", audio=AudioConfig(hop_length=200))
    with pytest.raises(CheckpointError, match="different audio settings"):
        Synthesizer.from_checkpoints(voice / "tacotron2.pt", verifier=tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"holds a Tacotron 2 checkpoint, not a phone verifier one; pass it "
                                              r"through --tacotron2 / load_tacotron2"):
        load_verifier(voice / "tacotron2.pt")
    with pytest.raises(CheckpointError, match=r"holds a phone verifier checkpoint, not a Tacotron 2 one; pass it "
                                              r"through load_verifier \(or as verifier.pt beside a voice's"):
        load_tacotron2(tmp_path / "other.pt")
