"""The fast inference paths against the module paths they replace: same numbers (up to float rounding), same
random draws, caches that follow weight changes, and the opt-in reduced precisions."""
import pytest
import torch

import tacoglow.decoding as decoding
import tacoglow.ops as ops
from tacoglow.tacotron2 import PRECISIONS, Tacotron2
from tacoglow.waveglow import WaveGlow

from helpers import rel_err, tiny_tacotron2, tiny_waveglow


def _tacotron2(**overrides) -> Tacotron2:
    model = tiny_tacotron2(**{"max_decoder_steps": 45, **overrides})
    with torch.no_grad():
        model.decoder.gate_layer.linear_layer.bias.fill_(-1e4)  # never stops: runs to the caps
    return model


TEXT = torch.randint(1, 148, (3, 9), generator=torch.Generator().manual_seed(1))
LENGTHS = torch.tensor([9, 6, 7])


def _module_step_infer(model, text, lengths, generator):
    """Decoding through the modules (the training-mode path) with dropout off, for comparison."""
    model.train()
    for module in model.modules():  # keep only the prenet's dropout, which is always on
        if isinstance(module, torch.nn.BatchNorm1d):
            module.eval()
    cfg = model.config
    p_attention, p_decoder = cfg.p_attention_dropout, cfg.p_decoder_dropout
    cfg.p_attention_dropout = cfg.p_decoder_dropout = 0.0
    try:
        model.encoder.train(False), model.postnet.train(False)
        return model.infer_detailed(text, lengths, generator)
    finally:
        cfg.p_attention_dropout, cfg.p_decoder_dropout = p_attention, p_decoder
        model.eval()


@pytest.mark.parametrize("per_item", [False, True])
def test_fast_decoder_equals_module_decoder(per_item):
    model = _tacotron2()
    gens = lambda: ([torch.Generator().manual_seed(s) for s in (3, 4, 5)] if per_item
                    else torch.Generator().manual_seed(3))
    fast = model.infer_detailed(TEXT, LENGTHS, gens())
    slow = _module_step_infer(model, TEXT, LENGTHS, gens())
    assert torch.equal(fast.mel_lengths, slow.mel_lengths)
    assert rel_err(fast.mel_postnet, slow.mel_postnet) < 1e-5
    assert rel_err(fast.alignments, slow.alignments) < 1e-5


@pytest.mark.parametrize("per_item", [False, True])
@pytest.mark.skipif(not ops.onednn_conv_available(), reason="this torch build has no oneDNN convolutions")
def test_folded_encoder_and_postnet_equal_the_modules(per_item, monkeypatch):
    # Batch norm folded into the convolutions, activations fused (oneDNN) vs conv -> batch norm -> activation.
    model = _tacotron2(max_decoder_steps=12)
    with torch.no_grad():  # batch norms that are not the identity
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm1d):
                module.running_mean.uniform_(-0.5, 0.5), module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5), module.bias.uniform_(-0.2, 0.2)
    gens = lambda: ([torch.Generator().manual_seed(s) for s in (3, 4, 5)] if per_item
                    else torch.Generator().manual_seed(3))
    fast = model.infer_detailed(TEXT, LENGTHS, gens())
    assert "_folded" in model.encoder.__dict__ and "_folded" in model.postnet.__dict__
    with monkeypatch.context() as m:
        m.setattr(ops, "onednn_conv_available", lambda: False)
        plain = model.infer_detailed(TEXT, LENGTHS, gens())
    assert torch.equal(fast.mel_lengths, plain.mel_lengths)
    assert rel_err(fast.mel_postnet, plain.mel_postnet) < 1e-5
    # The folded weights follow the statistics and loaded weights, in the encoder and the postnet.
    saved = {k: v.clone() for k, v in model.state_dict().items()}
    for module in (model.postnet, model.encoder):
        with torch.no_grad():
            module.convolutions[0][1].running_mean.add_(1.0)
        moved = model.infer_detailed(TEXT, LENGTHS, gens())
        assert rel_err(moved.mel_postnet, fast.mel_postnet) > 1e-3
    model.load_state_dict(saved)
    assert rel_err(model.infer_detailed(TEXT, LENGTHS, gens()).mel_postnet, fast.mel_postnet) < 1e-6


def test_eval_mode_forward_with_gradients_trains_the_convolutions():
    # Frozen batch norm (eval mode) with gradients on takes the module path: every weight gets a gradient.
    model = _tacotron2()
    mels = torch.randn(3, 80, 6)
    _, mel_postnet, _, _ = model(TEXT, LENGTHS, mels, torch.tensor([6, 6, 6]))
    mel_postnet.square().mean().backward()
    assert model.encoder.convolutions[0][0].conv.weight.grad.abs().sum() > 0
    assert model.postnet.convolutions[0][0].conv.weight.grad.abs().sum() > 0


def test_masks_drawn_in_chunks_consume_the_stream_like_per_step_draws(monkeypatch):
    model = _tacotron2()
    caps = torch.tensor([7, 40, 33])  # items stop inside a chunk, at a chunk boundary, and past one
    p = model.config.prenet_dim

    def run(chunk):
        monkeypatch.setattr(decoding, "MASK_CHUNK", chunk)
        shared = torch.Generator().manual_seed(11)
        per_item = [torch.Generator().manual_seed(s) for s in (3, 4, 5)]
        out_shared = model.infer_detailed(TEXT, LENGTHS, shared, max_decoder_steps=caps)
        out_items = model.infer_detailed(TEXT, LENGTHS, per_item, max_decoder_steps=caps)
        return out_shared, out_items, shared, per_item

    chunked_shared, chunked_items, shared, per_item = run(32)
    stepwise_shared, stepwise_items, shared_1, per_item_1 = run(1)
    assert torch.equal(chunked_shared.mel_postnet, stepwise_shared.mel_postnet)
    assert torch.equal(chunked_items.mel_postnet, stepwise_items.mel_postnet)
    # Exactly two (B, P) float64 draws per step from the shared generator (40 steps: the longest cap),
    # and two (1, P) draws per step an item was decoding from its own generator.
    expected = torch.Generator().manual_seed(11)
    torch.rand(40 * 2 * 3 * p, dtype=torch.float64, generator=expected)
    assert torch.equal(shared.get_state(), expected.get_state())
    assert torch.equal(shared_1.get_state(), expected.get_state())
    for generator, seed, cap in zip(per_item, (3, 4, 5), caps.tolist()):
        expected = torch.Generator().manual_seed(seed)
        torch.rand(cap * 2 * p, dtype=torch.float64, generator=expected)
        assert torch.equal(generator.get_state(), expected.get_state())


def test_default_generator_advances_as_the_reference_does():
    model = _tacotron2(max_decoder_steps=37)
    torch.manual_seed(5)
    model.infer(TEXT, LENGTHS)
    after = torch.get_rng_state()
    torch.manual_seed(5)
    torch.rand(37 * 2 * 3 * model.config.prenet_dim, dtype=torch.float64)
    assert torch.equal(after, torch.get_rng_state())


def test_kernels_follow_weight_changes():
    model = _tacotron2()
    before = model.infer(TEXT, LENGTHS, torch.Generator().manual_seed(0))[0]
    kernels = model.decoder.kernels()
    assert model.decoder.kernels() is kernels  # cached
    with torch.no_grad():
        model.decoder.decoder_rnn.weight_hh.mul_(0.5)
    assert model.decoder.kernels() is not kernels
    after = model.infer(TEXT, LENGTHS, torch.Generator().manual_seed(0))[0]
    assert rel_err(after, before) > 1e-3
    fresh = _tacotron2()
    fresh.load_state_dict(model.state_dict())
    assert rel_err(after, fresh.infer(TEXT, LENGTHS, torch.Generator().manual_seed(0))[0]) < 1e-6
    assert not any("kernel" in key for key in model.state_dict())


def test_plain_products_when_onednn_is_missing(monkeypatch):
    model = _tacotron2(attention_rnn_dim=512, decoder_rnn_dim=512)  # LSTM weights large enough for oneDNN
    packed = model.infer(TEXT, LENGTHS, torch.Generator().manual_seed(0))[0]
    if ops.onednn_linear_available():
        assert model.decoder.kernels().attention_rnn.kind == "onednn"
    monkeypatch.setattr(ops, "onednn_linear_available", lambda: False)
    model.decoder.__dict__.pop("_kernels")
    plain = model.infer(TEXT, LENGTHS, torch.Generator().manual_seed(0))[0]
    assert model.decoder.kernels().attention_rnn.kind == "plain"
    assert rel_err(plain, packed) < 1e-5


@pytest.mark.parametrize("precision", [p for p in PRECISIONS if p != "fp32"])
def test_reduced_precisions_are_close_to_fp32(precision):
    model = _tacotron2()
    exact = model.infer(TEXT, LENGTHS, torch.Generator().manual_seed(0))[0]
    approx = model.infer(TEXT, LENGTHS, torch.Generator().manual_seed(0), precision=precision)[0]
    assert approx.shape == exact.shape
    assert rel_err(approx, exact) < (1e-3 if precision == "fp16" else 3e-2)
    assert model.decoder.kernels(precision).decoder_rnn.kind == precision


def test_unknown_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        _tacotron2().infer(TEXT, LENGTHS, precision="fp8")


def test_training_mode_inference_still_uses_the_modules():
    model = _tacotron2().train()
    out = model.infer_detailed(TEXT, LENGTHS, torch.Generator().manual_seed(0))
    assert torch.isfinite(out.mel_postnet).all()
    assert "_kernels" not in model.decoder.__dict__


# --- WaveGlow ------------------------------------------------------------------------------------------

def _waveglow() -> WaveGlow:
    return tiny_waveglow(end_std=0.1, n_layers=3, n_channels=16).eval()


@pytest.mark.parametrize("weight_norm", [True, False])
def test_wn_infer_equals_forward(weight_norm):
    model = _waveglow()
    if not weight_norm:
        model.remove_weightnorm()
    wn = model.WN[0]
    audio, mel = torch.randn(2, 4, 50), torch.randn(2, 640, 50)
    with torch.no_grad():
        expected = wn(audio, mel)
        cl = torch.channels_last
        got = wn.infer(audio.unsqueeze(2).contiguous(memory_format=cl),
                       mel.unsqueeze(2).contiguous(memory_format=cl)).squeeze(2)
    assert rel_err(got, expected) < 1e-5


def test_waveglow_infer_same_without_onednn(monkeypatch):
    model = _waveglow()
    mel = torch.randn(2, 80, 5)
    fast = model.infer(mel, sigma=0.7, generator=torch.Generator().manual_seed(0))
    monkeypatch.setattr(ops, "onednn_conv_available", lambda: False)
    plain = model.infer(mel, sigma=0.7, generator=torch.Generator().manual_seed(0))
    assert rel_err(plain, fast) < 1e-5


def test_wn_kernels_follow_weight_changes():
    model = _waveglow()
    mel = torch.randn(1, 80, 4)
    before = model.infer(mel, sigma=0.0)
    with torch.no_grad():
        model.WN[1].in_layers[0].weight_g.mul_(1.5)
    after = model.infer(mel, sigma=0.0)
    assert rel_err(after, before) > 1e-4
    model.remove_weightnorm()
    assert rel_err(model.infer(mel, sigma=0.0), after) < 1e-5
