"""Audio while Tacotron 2 still decodes: the postnet over windows (tacoglow.streaming), HiFi-GAN over a mel that
arrives in pieces, and the Synthesizer's first sentence streamed from its first decoder steps."""
import pytest
import torch

from tacoglow import Synthesizer
from tacoglow.hifigan import HiFiGAN, HiFiGANConfig
from tacoglow.streaming import postnet_context, stream_mel
from tacoglow.tacotron2 import Tacotron2, Tacotron2Config

from conftest import fixture_path
from helpers import rel_err, tacotron2_for_hifigan

IDS = [12, 40, 27, 33, 11, 45, 38, 20, 52, 30, 14, 41]


def small_tacotron2(r: int, stop: bool) -> tuple[Tacotron2, int | None]:
    """A random small Tacotron 2 and the decoder step where its gate first fires: with ``stop``, the first step
    after the 30th whose gate is above all before it, the threshold set between the two; else never. The gate
    does not feed back into decoding, so the threshold moves only where decoding stops."""
    torch.manual_seed(r)
    config = Tacotron2Config(n_symbols=64, symbols_embedding_dim=32, encoder_embedding_dim=32, attention_rnn_dim=48,
                             decoder_rnn_dim=48, prenet_dim=16, attention_dim=16, attention_location_n_filters=4,
                             postnet_embedding_dim=24, n_frames_per_step=r)
    model = Tacotron2(config).eval()
    model.decoder.gate_threshold = 1.0  # sigmoid(logit) > 1 never holds
    if not stop:
        return model, None
    with torch.no_grad():
        for p in model.decoder.gate_layer.parameters():  # this model's gate falls as it decodes: make it rise
            p.neg_()
        steps = model.generate(torch.tensor([IDS]), torch.tensor([len(IDS)]), [torch.Generator().manual_seed(7)], 60)
        gates = [float(torch.sigmoid(out[0, -1])) for out in steps]
    k = next(k for k in range(30, 60) if gates[k] > max(gates[:k]))
    model.decoder.gate_threshold = (max(gates[:k]) + gates[k]) / 2
    return model, k + 1


@pytest.mark.parametrize("r", [1, 3])
@pytest.mark.parametrize("stop", [False, True], ids=["cap", "gate"])
@pytest.mark.parametrize("piece_frames", [1, 16])
def test_stream_mel_pieces_join_into_the_postnet_mel_of_infer_detailed(r, stop, piece_frames):
    model, stop_step = small_tacotron2(r, stop)
    cap = 60
    with torch.no_grad():
        whole = model.infer_detailed(torch.tensor([IDS]), torch.tensor([len(IDS)]),
                                     [torch.Generator().manual_seed(7)], max_decoder_steps=cap)
    generate, decoded = model.generate, [0]

    def counting(*args, **kwargs):
        steps = generate(*args, **kwargs)
        while True:
            try:
                out = next(steps)
            except StopIteration as done:
                return done.value
            decoded[0] += 1
            yield out

    model.generate = counting
    stream = stream_mel(model, IDS, torch.Generator().manual_seed(7), cap, piece_frames=piece_frames)
    pieces, steps_at = [], []
    while True:
        try:
            pieces.append(next(stream))
            steps_at.append(decoded[0])
        except StopIteration as done:
            result = done.value
            break
    length = int(whole.mel_lengths[0])
    assert bool(result.gate_stopped[0]) == stop and decoded[0] == (stop_step or cap)
    assert torch.equal(result.mel_postnet, whole.mel_postnet) and torch.equal(result.mel_lengths, whole.mel_lengths)
    assert rel_err(torch.cat(pieces, -1), whole.mel_postnet[:, :, :length]) < 1e-6
    assert all(p.shape[:2] == (1, 80) and p.shape[-1] >= piece_frames for p in pieces[:-1])
    # The first piece is out once its postnet context is decoded, long before the last step.
    lag = max(postnet_context(model.config), r)
    assert steps_at[0] == -(-(piece_frames + lag) // r) < decoded[0]


def test_hifigan_infer_stream_takes_a_mel_in_pieces_of_any_size():
    torch.manual_seed(0)
    model = HiFiGAN(HiFiGANConfig(upsample_initial_channel=32)).eval().remove_weight_norm()
    mel = torch.randn(1, 80, 90, generator=torch.Generator().manual_seed(1))
    sizes = [3, 0, 17, 1, 40, 29]
    cuts = torch.tensor([0, *sizes]).cumsum(0).tolist()
    given = []

    def pieces():
        for a, b in zip(cuts, cuts[1:]):
            given.append(b)
            yield mel[:, :, a:b]

    with torch.inference_mode():
        whole = model.infer(mel)
        audio, received_at_first = [], None
        for chunk in model.infer_stream(pieces(), 32, first_frames=4):
            received_at_first = given[-1] if received_at_first is None else received_at_first
            audio.append(chunk)
    assert rel_err(torch.cat(audio, -1), whole) < 1e-5
    # Sizes double from the first up to chunk_frames, so that played as they come none waits for the next.
    assert [a.shape[-1] // model.config.hop_length for a in audio] == [4, 8, 16, 32, 30]
    assert received_at_first == 20 >= 4 + model.receptive_field  # the third piece completes the first chunk's mel
    assert list(model.infer_stream([mel[:, :, :0]], 32)) == []  # a Tacotron 2 that stopped at once: no audio
    with pytest.raises(ValueError, match="expected a mel of shape"):
        list(model.infer_stream([mel[:, :40]], 32))


def test_stream_audio_starts_while_the_first_sentence_is_decoded(tmp_path):
    hifigan = fixture_path("hifigan_dle_v1small.pt")
    synth = Synthesizer.from_checkpoints(tacotron2_for_hifigan(hifigan, tmp_path), hifigan=hifigan)
    decoded = []
    generate = synth.tacotron2.generate

    def counting(*args, **kwargs):
        result = yield from generate(*args, **kwargs)
        decoded.append(len(decoded))
        return result

    synth.tacotron2.generate = counting
    text = "Fine. Hello there, how are you today?"  # this untrained model: 80 frames to the cap, then none
    steps_at_first, chunks = None, []
    for chunk in synth.stream_audio(text, seed=3, first_frames=8, chunk_frames=32):
        chunks.append(chunk)
        steps_at_first = steps_at_first if steps_at_first is not None else len(decoded)
    del synth.tacotron2.generate
    expected = synth.synthesize(text, seed=3)
    results = [c.result for c in chunks if c.result is not None]
    assert [r.text for r in results] == [s.text for s in expected.sentences]
    assert steps_at_first == 0  # the first audio came before the first sentence's decoding ended
    assert chunks[0].audio.numel() == 8 * synth.audio.hop_length
    for k, (result, alone) in enumerate(zip(results, expected.sentences)):
        assert torch.equal(result.mel, alone.mel) and result.stopped_by == alone.stopped_by
        assert rel_err(torch.cat([c.audio for c in chunks if c.sentence == k]), alone.audio) < 1e-5
        assert result.audio is not None and rel_err(result.audio, alone.audio) < 1e-5
