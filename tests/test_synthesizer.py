"""The Synthesizer: seeds, batches in input order, sentence streaming, stop reasons, a voice's settings."""
import dataclasses

import pytest
import torch

from tacoglow import GriffinLimVocoder, SynthesisConfig, Synthesizer, load_hifigan, load_tacotron2
from tacoglow.checkpoint import CheckpointError
from tacoglow.hifigan import HiFiGAN, HiFiGANConfig
from tacoglow.synthesizer import HiFiGANVocoder, SynthesisError, WaveGlowVocoder

from conftest import fixture_path
from helpers import rel_err, tacotron2_for_hifigan

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
    pause = round(synth.synthesis.sentence_pause * whole.sample_rate)
    ends = [start + s.audio.numel() for start, s in zip(whole.starts, whole.sentences)]
    assert whole.starts[0] == 0 and whole.starts[1:] == [end + pause for end in ends[:-1]]
    for start, s in zip(whole.starts, whole.sentences):  # each sentence's audio where ``starts`` says
        assert torch.equal(whole.audio[start:start + s.audio.numel()], s.audio)
    assert ends[-1] == whole.audio.numel()


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


# ---- HiFi-GAN

HIFIGANS = ["hifigan_dle_v1small.pt", "hifigan_jik876_type1/g_00000700", "hifigan_jik876_type2/g_00000700"]


@pytest.fixture(scope="module", params=HIFIGANS[:2], ids=["ngc", "jik876"])
def hifigan_synth(request, tmp_path_factory):
    hifigan = fixture_path(request.param)
    t2 = tacotron2_for_hifigan(hifigan, tmp_path_factory.mktemp("voice"))
    return Synthesizer.from_checkpoints(t2, hifigan=hifigan)


def v1_shaped(seed: int = 0) -> HiFiGAN:
    """V1's stages, kernels and dilations, 32 channels wide, weight norms perturbed as after training."""
    torch.manual_seed(seed)
    model = HiFiGAN(HiFiGANConfig(upsample_initial_channel=32)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight_g"):
                p.mul_(torch.empty_like(p).uniform_(0.8, 2.5))
    return model.remove_weight_norm()


@pytest.mark.parametrize("name", [*HIFIGANS, "v1-shaped"])
@pytest.mark.parametrize("first,chunk", [(1, 7), (16, 128), (5, 40)])
def test_hifigan_chunks_join_into_the_one_shot_audio(name, first, chunk):
    model = v1_shaped() if name == "v1-shaped" else load_hifigan(fixture_path(name))
    mel = torch.randn(2, 80, 97, generator=torch.Generator().manual_seed(3))
    whole = model.infer(mel)
    pieces = list(model.infer_chunks(mel, chunk, first_frames=first))
    assert pieces[0].shape[-1] == min(first, 97) * model.config.hop_length
    assert rel_err(torch.cat(pieces, -1), whole) < 1e-4
    assert model.receptive_field >= 3


def test_hifigan_receptive_field_of_the_presets():
    # Chunks with less context than this change the audio: the field is not overestimated by much either.
    assert (HiFiGAN(HiFiGANConfig.v1()).receptive_field, HiFiGAN(HiFiGANConfig.v3()).receptive_field) == (15, 12)
    model = load_hifigan(fixture_path(HIFIGANS[2]))
    mel = torch.randn(1, 80, 60, generator=torch.Generator().manual_seed(0))
    short = torch.cat(list(model.infer_chunks(mel, 10, context=model.receptive_field // 3)), -1)
    assert rel_err(short, model.infer(mel)) > 1e-6


def test_hifigan_synthesizer_is_deterministic_and_batch_independent(hifigan_synth):
    synth = hifigan_synth
    assert isinstance(synth.vocoder, HiFiGANVocoder) and synth.synthesis.hifigan_denoiser_strength == 0
    together = synth.synthesize_batch(TEXTS, seeds=[1, 2, 3])
    for text, seed, speech in zip(TEXTS, [1, 2, 3], together):
        alone = synth.synthesize(text, seed=seed)
        assert alone.audio.shape == speech.audio.shape and rel_err(speech.audio, alone.audio) < 1e-4
        for s in alone.sentences:
            assert s.audio is not None and s.audio.numel() == s.mel_length * synth.audio.hop_length
            if s.mel_length:  # the untrained fixture may stop at once
                assert torch.allclose(s.audio, synth.vocoder.hifigan.infer(s.mel[None])[0, 0])


def test_hifigan_stream_audio_sends_the_first_frames_early(hifigan_synth):
    synth = hifigan_synth
    chunks = list(synth.stream_audio(TEXTS[2], seed=5, first_frames=4, chunk_frames=32))
    results = [c.result for c in chunks if c.result is not None]
    streamed = list(synth.stream(TEXTS[2], seed=5))
    assert len(results) == len(streamed) == 3
    assert chunks[0].audio.numel() == 4 * synth.audio.hop_length and chunks[0].result is None
    for k, (result, expected) in enumerate(zip(results, streamed)):
        pieces = [c.audio for c in chunks if c.sentence == k]
        assert rel_err(torch.cat(pieces), expected.audio) < 1e-4
        assert result.audio is not None and rel_err(result.audio, expected.audio) < 1e-4


def test_hifigan_denoiser_strength_is_off_by_default_and_can_be_set(tmp_path):
    hifigan = fixture_path(HIFIGANS[0])
    t2 = tacotron2_for_hifigan(hifigan, tmp_path)
    plain = Synthesizer.from_checkpoints(t2, hifigan=hifigan)
    denoised = Synthesizer.from_checkpoints(t2, hifigan=hifigan, hifigan_denoiser_strength=0.2)
    assert denoised.synthesis.hifigan_denoiser_strength == 0.2
    a, b = plain.synthesize("Hello there.", seed=1).audio, denoised.synthesize("Hello there.", seed=1).audio
    assert a.shape == b.shape and not torch.allclose(a, b)
    per_call = plain.synthesize("Hello there.", seed=1, denoiser_strength=0.2).audio
    assert torch.allclose(per_call, b)


def test_hifigan_and_waveglow_together_or_mismatched_are_refused(tmp_path):
    from tacoglow.config import ConfigError

    hifigan = fixture_path(HIFIGANS[0])
    with pytest.raises(ConfigError, match="not both"):
        Synthesizer.from_checkpoints(tacotron2_for_hifigan(hifigan, tmp_path), fixture_path("waveglow_small_ngc.pt"),
                                     hifigan=hifigan)
    with pytest.raises(CheckpointError, match="different audio settings"):
        Synthesizer.from_checkpoints(fixture_path("tacotron2_small_ngc.pt"), hifigan=hifigan)


def test_hifigan_precision_is_a_voice_setting_close_to_fp32_and_refused_where_it_cannot_run(tmp_path):
    from tacoglow.config import ConfigError

    hifigan = fixture_path(HIFIGANS[0])
    t2 = tacotron2_for_hifigan(hifigan, tmp_path)
    exact = Synthesizer.from_checkpoints(t2, hifigan=hifigan)
    fast = Synthesizer.from_checkpoints(t2, hifigan=hifigan, hifigan_precision="int8")
    assert (exact.synthesis.hifigan_precision, fast.synthesis.hifigan_precision) == ("fp32", "int8")
    assert fast.vocoder.precision == "int8"
    a, b = exact.synthesize("Hello there.", seed=1), fast.synthesize("Hello there.", seed=1)
    assert a.audio.shape == b.audio.shape and 1e-4 < rel_err(b.audio, a.audio) < 0.06  # int8 ran, and is close
    streamed = torch.cat([c.audio for c in fast.stream_audio("Hello there.", seed=1, first_frames=4, chunk_frames=8)
                          if c.result is None])
    assert rel_err(streamed, fast.synthesize("Hello there.", seed=1).audio[:streamed.numel()]) < 0.06
    with pytest.raises(ConfigError, match="hifigan_precision must be one of fp32, bf16, int8, got 'int4'"):
        SynthesisConfig(hifigan_precision="int4")
    with pytest.raises(ConfigError, match="ONNX Runtime runs the exported fp32 graph"):
        Synthesizer.from_checkpoints(t2, hifigan=hifigan, hifigan_precision="int8", backend="onnx")


def test_a_voice_that_records_int8_runs_in_fp32_where_int8_cannot_run(tmp_path):
    hifigan = fixture_path(HIFIGANS[0])
    checkpoint = torch.load(tacotron2_for_hifigan(hifigan, tmp_path), weights_only=True)
    checkpoint["synthesis"] = {"hifigan_precision": "int8"}
    voice = tmp_path / "int8_voice.pt"
    torch.save(checkpoint, voice)
    assert Synthesizer.from_checkpoints(voice, hifigan=hifigan).vocoder.precision == "int8"
    onnx = Synthesizer.from_checkpoints(voice, hifigan=hifigan, backend="onnx")  # the voice's setting gives way
    assert onnx.synthesis.hifigan_precision == "fp32" and onnx.vocoder.precision == "fp32"


def test_tacotron2_precision_is_a_voice_setting_close_to_fp32_and_gives_way_where_it_cannot_run(tmp_path):
    from tacoglow.config import ConfigError

    t2 = fixture_path("tacotron2_small_ngc.pt")
    exact, fast = Synthesizer.from_checkpoints(t2), Synthesizer.from_checkpoints(t2, tacotron2_precision="fp16")
    assert (exact.synthesis.tacotron2_precision, fast.synthesis.tacotron2_precision) == ("fp32", "fp16")
    a, b = (s.decode_jobs(s.sentence_jobs("Fine.", 1))[0] for s in (exact, fast))  # 80 frames, to the cap
    assert a.mel.shape == b.mel.shape and 1e-7 < rel_err(b.mel, a.mel) < 1e-2  # fp16 ran, and is close
    streamed = [c.result for c in fast.stream_audio("Fine.", seed=1) if c.result is not None][0]
    assert torch.equal(streamed.mel, b.mel)  # the stream decodes in the voice's precision too
    with pytest.raises(ConfigError, match="tacotron2_precision must be one of fp32, fp16, bf16, int8, got 'fp8'"):
        SynthesisConfig(tacotron2_precision="fp8")
    with pytest.raises(ConfigError, match="tacotron2_precision 'fp16' is for torch on an x86 CPU"):
        Synthesizer.from_checkpoints(t2, tacotron2_precision="fp16", backend="onnx")
    checkpoint = torch.load(tacotron2_for_hifigan(fixture_path(HIFIGANS[0]), tmp_path), weights_only=True)
    checkpoint["synthesis"] = {"tacotron2_precision": "fp16"}
    voice = tmp_path / "fp16_voice.pt"
    torch.save(checkpoint, voice)
    assert Synthesizer.from_checkpoints(voice).synthesis.tacotron2_precision == "fp16"
    onnx = Synthesizer.from_checkpoints(voice, backend="onnx")  # the voice's setting gives way
    assert onnx.synthesis.tacotron2_precision == "fp32"
    assert torch.allclose(onnx.decode_jobs(onnx.sentence_jobs("Fine.", 1))[0].mel, a.mel, atol=1e-4)
