"""Tacotron 2 against NVIDIA's reference outputs (golden fixtures), plus API, isolation and shape checks."""
import pytest
import torch

from tacoglow.tacotron2 import Tacotron2, Tacotron2Config, Tacotron2Output

from conftest import fixture_path
from helpers import rel_err, tiny_tacotron2_config


def _strip_module(state_dict):
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


@pytest.fixture(scope="module")
def ngc():
    return torch.load(fixture_path("tacotron2_small_ngc.pt"), weights_only=True)


@pytest.fixture(scope="module")
def cases():
    return torch.load(fixture_path("tacotron2_small_cases.pt"), weights_only=True)


@pytest.fixture
def model(ngc):
    m = Tacotron2(Tacotron2Config.from_dict(ngc["config"]))
    m.load_state_dict(_strip_module(ngc["state_dict"]), strict=True)
    return m.eval()


# --- configuration and checkpoint layout ---------------------------------------------------------


def test_config_defaults_and_dict_round_trip():
    cfg = Tacotron2Config()
    assert (cfg.n_symbols, cfg.symbols_embedding_dim, cfg.max_decoder_steps) == (148, 512, 1000)
    assert cfg.gate_threshold == 0.5
    assert cfg.mask_padding is False and cfg.decoder_no_early_stopping is False
    assert len(cfg.to_dict()) == 22
    assert Tacotron2Config.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        Tacotron2Config.from_dict({**cfg.to_dict(), "bogus": 1})


def test_default_model_matches_reference_layout():
    m = Tacotron2()
    sd = m.state_dict()
    assert len(sd) == 84
    assert sum(p.numel() for p in m.parameters()) == 28_193_153
    assert sd["decoder.attention_rnn.weight_ih"].shape == (4096, 768)
    assert sd["decoder.attention_layer.location_layer.location_conv.conv.weight"].shape == (32, 2, 31)
    assert sd["postnet.convolutions.4.0.conv.weight"].shape == (80, 512, 5)
    assert list(sd)[0] == "embedding.weight" and list(sd)[-1] == "postnet.convolutions.4.1.num_batches_tracked"


def test_reduced_config_parameter_counts_with_two_frames_per_step():
    # Counts measured on the reference code (reduced config; r = 2 with its reshape fix).
    reduced = dict(symbols_embedding_dim=256, encoder_embedding_dim=256, attention_rnn_dim=512,
                   decoder_rnn_dim=512, prenet_dim=128, postnet_embedding_dim=256)
    count = lambda cfg: sum(p.numel() for p in Tacotron2(cfg).parameters())
    assert count(Tacotron2Config(**reduced)) == 7_267_713
    assert count(Tacotron2Config(**reduced, n_frames_per_step=2)) == 7_339_473


def test_standalone_checkpoint_has_the_same_weights(ngc):
    standalone = torch.load(fixture_path("tacotron2_small_standalone.pt"), weights_only=True)
    m = Tacotron2(Tacotron2Config.from_dict(ngc["config"]))
    m.load_state_dict(standalone["state_dict"], strict=True)
    ref = _strip_module(ngc["state_dict"])
    for key, value in m.state_dict().items():
        assert torch.equal(value, ref[key]), key


# --- golden outputs ------------------------------------------------------------------------------


def test_infer_matches_reference(model, cases):
    for case in cases["cases"]:
        torch.manual_seed(case["seed"])
        mel, mel_lengths, alignments = model.infer(case["text_padded"], case["input_lengths"])
        assert mel_lengths.dtype == torch.int32
        assert torch.equal(mel_lengths, case["mel_lengths"]), case["seed"]
        assert mel.shape == case["mel"].shape and alignments.shape == case["alignments"].shape
        assert rel_err(mel, case["mel"]) < 1e-4, case["seed"]
        assert rel_err(alignments, case["alignments"]) < 1e-4, case["seed"]


def test_capped_case_reports_gate_not_stopped(model, cases):
    # Seed 0's last item runs into max_decoder_steps (80) in the reference.
    case = cases["cases"][0]
    torch.manual_seed(case["seed"])
    out = model.infer_detailed(case["text_padded"], case["input_lengths"])
    assert isinstance(out, Tacotron2Output)
    assert out.mel_lengths.tolist() == [0, 0, 80]
    assert out.gate_stopped.tolist() == [True, True, False]


def test_teacher_forcing_matches_reference(model, cases):
    checked = 0
    for case in cases["cases"]:
        if "tf_mel" not in case:
            continue
        torch.manual_seed(case["seed"])
        mel, mel_postnet, gate, alignments = model(case["text_padded"], case["input_lengths"],
                                                   case["tf_targets"], case["tf_output_lengths"])
        assert rel_err(mel, case["tf_mel"]) < 1e-4
        assert rel_err(mel_postnet, case["tf_mel_postnet"]) < 1e-4
        assert rel_err(gate, case["tf_gate"]) < 1e-4
        assert rel_err(alignments, case["tf_alignments"]) < 1e-4
        checked += 1
    assert checked == 3


def test_unsorted_batch_returns_input_order(model, cases):
    case = cases["cases"][2]
    torch.manual_seed(case["seed"])
    ref = model.infer_detailed(case["text_padded"], case["input_lengths"])
    perm = torch.tensor([2, 0, 1])
    torch.manual_seed(case["seed"])
    # Lengths on another dtype, as a caller might pass them.
    out = model.infer_detailed(case["text_padded"][perm], case["input_lengths"][perm].to(torch.int32))
    assert torch.equal(out.mel_lengths, ref.mel_lengths[perm])
    assert torch.equal(out.gate_stopped, ref.gate_stopped[perm])
    assert rel_err(out.mel_postnet, ref.mel_postnet[perm]) < 1e-6
    assert rel_err(out.alignments, ref.alignments[perm]) < 1e-6
    assert torch.equal(out.mel_lengths, case["mel_lengths"][perm])


# --- per-item generators: batch results equal single-item results ----------------------------------


def _assert_isolated(model, text, lengths, seeds, caps=None):
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    out = model.infer_detailed(text, lengths, gens, max_decoder_steps=caps)
    for i, seed in enumerate(seeds):
        n = int(lengths[i])
        cap = None if caps is None else caps[i:i + 1]
        alone = model.infer_detailed(text[i:i + 1, :n], lengths[i:i + 1], [torch.Generator().manual_seed(seed)],
                                     max_decoder_steps=cap)
        t, steps = alone.mel_postnet.size(2), alone.alignments.size(1)  # frames, decoder steps
        assert out.mel_lengths[i] == alone.mel_lengths[0]
        assert out.gate_stopped[i] == alone.gate_stopped[0]
        assert rel_err(out.mel_postnet[i:i + 1, :, :t], alone.mel_postnet) < 1e-5
        assert rel_err(out.alignments[i:i + 1, :steps, :n], alone.alignments) < 1e-5
        assert not out.mel_postnet[i, :, t:].any() and not out.alignments[i, steps:].any()
        assert not out.alignments[i, :, n:].any()
    return out


def test_per_item_generators_isolate_items(model, cases):
    case = cases["cases"][0]
    perm = torch.tensor([1, 2, 0])  # unsorted on purpose
    out = _assert_isolated(model, case["text_padded"][perm], case["input_lengths"][perm], seeds=[3, 4, 5])
    assert out.gate_stopped.all() and out.mel_lengths.max() > 0


def test_per_item_caps_when_the_gate_never_fires(model, cases):
    case = cases["cases"][0]
    with torch.no_grad():
        model.decoder.gate_layer.linear_layer.bias.fill_(-1e4)
    caps = torch.tensor([7, 19, 12])
    out = _assert_isolated(model, case["text_padded"], case["input_lengths"], seeds=[0, 1, 2], caps=caps)
    assert out.mel_lengths.tolist() == caps.tolist()
    assert not out.gate_stopped.any()
    assert out.mel_postnet.shape == (3, 80, 19) and out.alignments.shape == (3, 19, 68)
    # Shared-generator mode honours per-item caps too, and an int cap applies to all items.
    torch.manual_seed(0)
    shared = model.infer_detailed(case["text_padded"], case["input_lengths"], max_decoder_steps=caps)
    assert shared.mel_lengths.tolist() == caps.tolist() and shared.mel_postnet.size(2) == 19
    torch.manual_seed(0)
    _, mel_lengths, _ = model.infer(case["text_padded"], case["input_lengths"])
    assert mel_lengths.tolist() == [80, 80, 80]
    with pytest.raises(ValueError):
        model.infer_detailed(case["text_padded"], case["input_lengths"], max_decoder_steps=0)


def test_single_generator_equals_seeded_global(model, cases):
    case = cases["cases"][2]
    out = model.infer_detailed(case["text_padded"], case["input_lengths"], torch.Generator().manual_seed(case["seed"]))
    assert torch.equal(out.mel_lengths, case["mel_lengths"])
    assert rel_err(out.mel_postnet, case["mel"]) < 1e-4


# --- training path and r > 1 -----------------------------------------------------------------------


def test_backward_on_tiny_config():
    torch.manual_seed(0)
    m = Tacotron2(tiny_tacotron2_config(max_decoder_steps=12, mask_padding=True)).train()
    text = torch.randint(1, 148, (3, 9))
    text_lengths = torch.tensor([9, 6, 7])  # unsorted: allowed in training
    mels = torch.randn(3, 80, 11)
    mel_lengths = torch.tensor([11, 8, 5])
    mel, mel_postnet, gate, alignments = m(text, text_lengths, mels, mel_lengths)
    assert mel.shape == mel_postnet.shape == (3, 80, 11) and gate.shape == (3, 11)
    assert alignments.shape == (3, 11, 9)
    assert (mel_postnet[2, :, 5:] == 0).all() and (gate[2, 5:] == 1e3).all()
    loss = (mel - mels).pow(2).mean() + (mel_postnet - mels).pow(2).mean() + gate[:, :4].sigmoid().mean()
    loss.backward()
    grads = [p.grad for p in m.parameters()]
    assert all(g is not None for g in grads) and all(torch.isfinite(g).all() for g in grads)


def test_two_frames_per_step_shapes():
    torch.manual_seed(0)
    m = Tacotron2(tiny_tacotron2_config(max_decoder_steps=12, n_frames_per_step=2)).eval()
    assert m.decoder.linear_projection.linear_layer.weight.shape == (160, 24 + 16)
    assert m.decoder.prenet.layers[0].linear_layer.weight.shape == (8, 160)
    text = torch.randint(1, 148, (2, 7))
    mel, mel_postnet, gate, alignments = m(text, torch.tensor([7, 5]), torch.randn(2, 80, 9), torch.tensor([9, 6]))
    assert mel.shape == mel_postnet.shape == (2, 80, 10)  # padded to a multiple of r
    assert gate.shape == (2, 5) and alignments.shape == (2, 5, 7)

    with torch.no_grad():
        m.decoder.gate_layer.linear_layer.bias.fill_(-1e4)
    out = m.infer_detailed(text, torch.tensor([7, 5]), max_decoder_steps=torch.tensor([4, 6]))
    assert out.mel_postnet.shape == (2, 80, 12) and out.alignments.shape == (2, 6, 7)
    assert out.mel_lengths.tolist() == [8, 12]  # frames, not steps
    gens = [torch.Generator().manual_seed(i) for i in range(2)]
    _assert_isolated(m, text, torch.tensor([7, 5]), seeds=[0, 1], caps=torch.tensor([4, 6]))
    out = m.infer_detailed(text, torch.tensor([7, 5]), gens)
    assert out.mel_postnet.shape == (2, 80, 24) and out.mel_lengths.tolist() == [24, 24]


def test_no_early_stopping_runs_to_the_cap():
    torch.manual_seed(0)
    m = Tacotron2(tiny_tacotron2_config(max_decoder_steps=12, decoder_no_early_stopping=True)).eval()
    with torch.no_grad():
        m.decoder.gate_layer.linear_layer.bias.fill_(1e4)  # every item stops at step 0
    out = m.infer_detailed(torch.randint(1, 148, (2, 5)), torch.tensor([5, 3]))
    assert out.mel_lengths.tolist() == [0, 0] and out.gate_stopped.all()
    assert out.mel_postnet.size(2) == 12
