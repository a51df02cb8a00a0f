"""The Synthesizer: seeds, batches in input order, sentence streaming, stop reasons, a voice's settings."""
import dataclasses

import pytest
import torch

from tacoglow import GriffinLimVocoder, SynthesisConfig, Synthesizer, load_tacotron2
from tacoglow.synthesizer import SynthesisError, WaveGlowVocoder

from conftest import fixture_path

TEXTS = ["Hello there. How are you today?", "A short one.", "The third request has three sentences. Yes! Really."]


@pytest.fixture(scope="module")
def synth():
    return Synthesizer.from_checkpoints(fixture_path("tacotron2_small_ngc.pt"), fixture_path("waveglow_small_ngc.pt"))


def test_same_seed_same_audio_and_global_rng_untouched(synth):
    state = torch.get_rng_state()
    a = synth.synthesize("Testing one two three.", seed=11)
    b = synth.synthesize("Testing one two three.", seed=11)
    c = synth.synthesize("Testing one two three.", seed=12)
    assert torch.equal(a.audio, b.audio)
    assert not torch.equal(a.audio, c.audio) or a.audio.numel() == 0
    assert torch.equal(state, torch.get_rng_state())


def test_batch_keeps_input_order_and_equals_single_requests(synth):
    batch = synth.synthesize_batch(TEXTS, seeds=[1, 2, 3])
    for text, seed, speech in zip(TEXTS, [1, 2, 3], batch):
        alone = synth.synthesize(text, seed=seed)
        assert [s.text for s in speech.sentences] == [s.text for s in alone.sentences]
        assert speech.audio.shape == alone.audio.shape
        assert torch.allclose(speech.audio, alone.audio, atol=1e-4)


def test_stream_yields_sentences_with_audio_and_stop_reason(synth):
    pieces = list(synth.stream(TEXTS[2], seed=5))
    assert [p.text for p in pieces] == ["The third request has three sentences.", "Yes!", "Really."]
    whole = synth.synthesize(TEXTS[2], seed=5)
    for p, s in zip(pieces, whole.sentences):
        assert p.stopped_by in ("gate", "cap")
        assert p.audio.numel() == p.mel_length * 256
        assert torch.equal(p.audio, s.audio)
        assert p.alignment.shape[1] == len(p.ids)


def test_gate_that_never_fires_stops_at_relative_cap(caplog):
    model = load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))
    with torch.no_grad():
        model.decoder.gate_layer.linear_layer.bias.fill_(-1e4)
    model.config.max_decoder_steps = 2000
    synth = Synthesizer(model, GriffinLimVocoder(n_iters=2), frames_per_symbol=3.0, min_frames=10)
    speech = synth.synthesize("abcdefghij", seed=0, )
    (sentence,) = speech.sentences
    assert sentence.stopped_by == "cap"
    assert sentence.mel_length == synth.step_cap(len(sentence.ids)) == 10 + 3 * len(sentence.ids)
    assert "step cap" in caplog.text


def test_reference_behaviour_runs_to_max_decoder_steps_when_asked():
    model = load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))
    with torch.no_grad():
        model.decoder.gate_layer.linear_layer.bias.fill_(-1e4)
    synth = Synthesizer(model, GriffinLimVocoder(n_iters=1), frames_per_symbol=None)
    (sentence,) = synth.synthesize("abcdefghij", seed=0).sentences
    assert sentence.stopped_by == "cap" and sentence.mel_length == model.config.max_decoder_steps == 80


def test_nan_mel_never_reaches_the_vocoder():
    model = load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))
    with torch.no_grad():
        model.decoder.gate_layer.linear_layer.bias.fill_(-1e4)  # decode until the cap
        model.postnet.convolutions[-1][0].conv.bias.fill_(float("nan"))

    class Untouchable(GriffinLimVocoder):
        def __call__(self, mel, generator=None, **options):
            raise AssertionError("the vocoder was called with a broken mel")

    synth = Synthesizer(model, Untouchable())
    with pytest.raises(SynthesisError, match="NaN"):
        synth.synthesize("A perfectly normal sentence that should decode for a while.", seed=1)


def test_empty_and_unspeakable_text(synth):
    with pytest.raises(ValueError, match="empty"):
        synth.synthesize("  \n ")
    with pytest.raises(ValueError, match="no characters"):
        synth.synthesize("\U0001F600")


def test_griffin_lim_fallback_when_no_waveglow():
    synth = Synthesizer.from_checkpoints(fixture_path("tacotron2_small_ngc.pt"))
    assert isinstance(synth.vocoder, GriffinLimVocoder)
    speech = synth.synthesize("Griffin and Lim.", seed=3)
    assert speech.sample_rate == 22050
    assert speech.audio.numel() == speech.sentences[0].mel_length * 256


def test_voice_records_its_griffin_lim_power(tmp_path):
    from tacoglow.checkpoint import CheckpointError, save_model

    model = load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))
    voice = tmp_path / "voice.pt"
    save_model(model, voice, synthesis={"griffin_lim_power": 1.4})
    synth = Synthesizer.from_checkpoints(voice)
    assert synth.vocoder.power == 1.4 and synth.synthesis.griffin_lim_power == 1.4
    assert Synthesizer.from_checkpoints(voice, griffin_lim_power=1.0).vocoder.power == 1.0  # the caller wins
    a = synth.synthesize("Sharper.", seed=2).audio
    b = Synthesizer.from_checkpoints(voice, griffin_lim_power=1.0).synthesize("Sharper.", seed=2).audio
    assert a.shape == b.shape and not torch.equal(a, b)
    save_model(model, voice, synthesis={"griffin_lim_power": "loud"})
    with pytest.raises(CheckpointError, match="voice.pt: synthesis.griffin_lim_power must be a number"):
        Synthesizer.from_checkpoints(voice)


def test_voice_records_its_mel_inversion(tmp_path):
    from tacoglow.checkpoint import CheckpointError, save_model

    model = load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))
    voice = tmp_path / "voice.pt"
    save_model(model, voice)
    assert Synthesizer.from_checkpoints(voice).vocoder.inversion_iters == 100  # the library's default
    save_model(model, voice, synthesis={"griffin_lim_inversion_iters": 0})
    synth = Synthesizer.from_checkpoints(voice)
    assert synth.vocoder.inversion_iters == 0 and synth.synthesis.griffin_lim_inversion_iters == 0
    assert Synthesizer.from_checkpoints(voice, griffin_lim_inversion_iters=7).vocoder.inversion_iters == 7
    a = synth.synthesize("Plain.", seed=2).audio
    b = Synthesizer.from_checkpoints(voice, griffin_lim_inversion_iters=100).synthesize("Plain.", seed=2).audio
    assert a.shape == b.shape and not torch.equal(a, b)
    # Griffin-Lim standing in beside a WaveGlow (the server's griffin-lim option) keeps the voice's setting.
    paired = Synthesizer.from_checkpoints(voice, fixture_path("waveglow_small_ngc.pt"))
    assert paired.griffin_lim_vocoder().inversion_iters == 0 and paired.griffin_lim_vocoder().power == 1.0
    with pytest.raises(ValueError, match="power must be in"):  # refused at once, before any decoding
        Synthesizer.from_checkpoints(voice, griffin_lim_power=9.0)
    with pytest.raises(ValueError, match="griffin_lim_inversion_iters must be a whole number >= 0"):
        Synthesizer.from_checkpoints(voice, griffin_lim_inversion_iters=-1)
    for bad in (-1, 2.5, float("inf"), float("nan"), "many"):
        save_model(model, voice, synthesis={"griffin_lim_inversion_iters": bad})
        with pytest.raises(CheckpointError, match="voice.pt: synthesis.griffin_lim_inversion_iters must be"):
            Synthesizer.from_checkpoints(voice)


def test_synthesis_config_is_the_checkpoints_synthesis_section(tmp_path):
    from tacoglow.checkpoint import CheckpointError, save_model

    model = load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))
    voice = tmp_path / "voice.pt"
    settings = SynthesisConfig(sigma=0.7, griffin_lim_iters=3, normalize=False, frames_per_symbol=None,
                               sentence_pause=0.5)
    assert SynthesisConfig.from_dict(settings.to_dict()) == settings
    save_model(model, voice, synthesis=settings.to_dict())
    synth = Synthesizer.from_checkpoints(voice, fixture_path("waveglow_small_ngc.pt"))
    assert synth.synthesis == settings and synth.vocoder.sigma == 0.7 and synth.griffin_lim_vocoder().n_iters == 3
    assert synth.step_cap(5) == model.config.max_decoder_steps  # frames_per_symbol None: the reference's cap
    override = Synthesizer.from_checkpoints(voice, sigma=0.2, normalize=True)  # the caller's settings win
    assert override.synthesis == dataclasses.replace(settings, sigma=0.2, normalize=True)
    save_model(model, voice, synthesis={"griffin_lim_powr": 1.2})
    with pytest.raises(CheckpointError, match=r"voice.pt: synthesis: unknown SynthesisConfig keys \['griffin_lim_po"):
        Synthesizer.from_checkpoints(voice)
    save_model(model, voice, synthesis=[1.2])
    with pytest.raises(CheckpointError, match="voice.pt: 'synthesis' must be a dict of settings"):
        Synthesizer.from_checkpoints(voice)
    with pytest.raises(ValueError, match="sigma must be a finite number >= 0, got nan"):
        SynthesisConfig(sigma=float("nan"))


def test_a_vocoder_given_keeps_its_settings_and_synthesis_records_them():
    model = load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))
    synth = Synthesizer(model, GriffinLimVocoder(n_iters=2, power=1.5), sentence_pause=0.0)
    assert (synth.synthesis.griffin_lim_iters, synth.synthesis.griffin_lim_power) == (2, 1.5)
    assert synth.synthesis.sentence_pause == 0.0 and synth.griffin_lim_vocoder().power == 1.5


def test_vocoder_options_change_waveglow_output(synth):
    assert isinstance(synth.vocoder, WaveGlowVocoder)
    a = synth.synthesize("Sigma test.", seed=4, sigma=0.0, denoiser_strength=0.0)
    b = synth.synthesize("Sigma test.", seed=4, sigma=0.0, denoiser_strength=0.0)
    c = synth.synthesize("Sigma test.", seed=4, sigma=0.9, denoiser_strength=0.0)
    assert torch.equal(a.audio, b.audio)
    assert a.audio.numel() == 0 or not torch.equal(a.audio, c.audio)
