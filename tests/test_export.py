"""ONNX and TorchScript graphs against the eager models, and the ONNX Runtime backend end to end."""
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tacoglow import Synthesizer, load_tacotron2, load_waveglow
from tacoglow.cli import main
from tacoglow.decoding import padding_mask
from tacoglow.export import (
    STATE_NAMES,
    OnnxTacotron2,
    OnnxWaveGlow,
    export_torchscript,
    onnx_bytes,
    tacotron2_graphs,
    waveglow_graphs,
)

from conftest import fixture_path
from helpers import rel_err, tiny_tacotron2


@pytest.fixture(scope="module")
def tacotron2():
    return load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))


@pytest.fixture(scope="module")
def waveglow():
    return load_waveglow(fixture_path("waveglow_small_ngc.pt"))


def _step_inputs(model, b: int, t_in: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """decoder_step inputs of a shape other than the export example's (2, 7), with padding."""
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    kernels = model.decoder.kernels()
    memory = torch.randn(b, t_in, cfg.encoder_embedding_dim, generator=g)
    lengths = torch.tensor([t_in] + [t_in - 1 - i for i in range(b - 1)])
    memory = memory * (~padding_mask(lengths, t_in)).unsqueeze(2)
    state = tuple(torch.rand(s.shape, generator=g) for s in model.decoder.initial_state(memory))
    frame = torch.randn(b, cfg.n_mel_channels * cfg.n_frames_per_step, generator=g)
    keep = (torch.rand(2, b, cfg.prenet_dim, generator=g) < 0.5).float() * 2.0
    return (frame, keep) + state + (memory, kernels.process_memory(memory), padding_mask(lengths, t_in))


def _inputs(model, name: str) -> tuple[torch.Tensor, ...]:
    cfg = model.config
    g = torch.Generator().manual_seed(1)
    if name == "encoder":
        return (torch.randint(1, cfg.n_symbols, (3, 13), generator=g),)
    if name == "memory_projection":
        return (torch.randn(3, 13, cfg.encoder_embedding_dim, generator=g),)
    if name == "decoder_step":
        return _step_inputs(model, 3, 13)
    if name == "postnet":
        keep = torch.ones(3, 1, 21)
        keep[1, :, 15:] = 0
        return torch.randn(3, cfg.n_mel_channels, 21, generator=g), keep
    mel = torch.randn(2, cfg.n_mel_channels, 6, generator=g)  # waveglow
    return mel, torch.randn(2, cfg.n_group, 6 * 256 // cfg.n_group, generator=g)


def _check_outputs(ours, expected, tol: float) -> None:
    assert len(ours) == len(expected)
    for a, b in zip(ours, expected):
        a = torch.as_tensor(a)
        assert a.shape == b.shape
        if b.dtype == torch.bool:
            assert torch.equal(a, b)
        else:
            assert rel_err(a, b) < tol


@pytest.mark.parametrize("which", ["tacotron2", "waveglow"])
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_onnx_and_torchscript_graphs_match_eager_on_new_shapes(which, tacotron2, waveglow, tmp_path):
    model = tacotron2 if which == "tacotron2" else waveglow
    graphs = tacotron2_graphs(model) if which == "tacotron2" else waveglow_graphs(model)
    assert set(graphs) == ({"encoder", "memory_projection", "decoder_step", "postnet"} if which == "tacotron2"
                           else {"waveglow"})
    scripted = export_torchscript(model, tmp_path)
    for name, graph in graphs.items():
        inputs = _inputs(model, name)
        with torch.no_grad():
            expected = graph.module(*inputs)
        expected = expected if isinstance(expected, tuple) else (expected,)
        session = ort.InferenceSession(onnx_bytes(graph), providers=["CPUExecutionProvider"])
        assert [i.name for i in session.get_inputs()] == graph.input_names
        ours = session.run(None, {n: x.numpy() for n, x in zip(graph.input_names, inputs)})
        _check_outputs(ours, expected, 1e-5)
        loaded = torch.jit.load(str(scripted[name]))
        with torch.no_grad():
            traced = loaded(*inputs)
        _check_outputs(traced if isinstance(traced, tuple) else (traced,), expected, 1e-6)


def test_decoder_step_graph_equals_the_eager_generation_step(tacotron2):
    # The graph is the eager model's step (fp32 oneDNN products there, plain products here).
    from tacoglow.decoding import DecoderState, decoder_step

    inputs = _step_inputs(tacotron2, 2, 9, seed=3)
    frame, keep, *rest = inputs
    state, (memory, processed, mask) = DecoderState(*rest[:7]), rest[7:]
    expected_out, expected_state = decoder_step(tacotron2.decoder.kernels(), frame, keep, state, memory,
                                                processed, mask)
    session = ort.InferenceSession(onnx_bytes(tacotron2_graphs(tacotron2)["decoder_step"]))
    names = ["frame", "keep", *STATE_NAMES, "memory", "processed_memory", "mask"]
    out, *new = session.run(None, {n: x.numpy() for n, x in zip(names, inputs)})
    assert rel_err(torch.from_numpy(out), expected_out) < 1e-5
    for got, want in zip(new, expected_state):
        assert rel_err(torch.from_numpy(got), want) < 1e-5


def test_onnx_tacotron2_generation_matches_eager(tacotron2):
    onnx_model = OnnxTacotron2(tacotron2)
    text = torch.tensor([[12, 40, 38, 45, 11, 57, 52, 58, 60, 0, 0],
                         [30, 41, 51, 11, 44, 45, 11, 56, 55, 43, 38],
                         [25, 42, 53, 11, 42, 0, 0, 0, 0, 0, 0]])
    lengths = torch.tensor([9, 11, 5])
    seeds = [7, 8, 9]
    ours = onnx_model.infer_detailed(text, lengths, [torch.Generator().manual_seed(s) for s in seeds])
    eager = tacotron2.infer_detailed(text, lengths, [torch.Generator().manual_seed(s) for s in seeds])
    assert torch.equal(ours.mel_lengths, eager.mel_lengths)
    assert torch.equal(ours.gate_stopped, eager.gate_stopped)
    assert ours.mel_postnet.shape == eager.mel_postnet.shape
    assert rel_err(ours.mel_postnet, eager.mel_postnet) < 1e-5
    assert rel_err(ours.alignments, eager.alignments) < 1e-5
    # Reference mode (one generator, the global RNG) for items of one length.
    torch.manual_seed(3)
    mel, mel_lengths, _ = onnx_model.infer(text[1:2], lengths[1:2])
    torch.manual_seed(3)
    mel_eager, lengths_eager, _ = tacotron2.infer(text[1:2], lengths[1:2])
    assert torch.equal(mel_lengths, lengths_eager) and rel_err(mel, mel_eager) < 1e-5
    with pytest.raises(ValueError, match="one generator per item"):
        onnx_model.infer(text, lengths)
    with pytest.raises(ValueError, match="fp32"):
        onnx_model.infer(text[:1], lengths[:1], precision="int8")


def test_onnx_waveglow_reproduces_the_reference_audio(waveglow):
    cases = torch.load(fixture_path("waveglow_small_cases.pt"))
    onnx_waveglow = OnnxWaveGlow(waveglow)
    for case in cases["cases"]:
        torch.manual_seed(case["seed"])  # the global RNG, as the reference's golden run
        audio = onnx_waveglow.infer(cases["mel"], sigma=case["sigma"])
        assert audio.shape == case["audio"].shape
        assert rel_err(audio, case["audio"]) < 1e-4
    # sample_latent draws exactly what infer draws.
    z = waveglow.sample_latent(2, cases["mel"].size(2), torch.Generator().manual_seed(4))
    a = waveglow.infer(cases["mel"], sigma=0.7, generator=torch.Generator().manual_seed(4))
    b = waveglow.infer(cases["mel"], sigma=0.7, z=z)
    assert rel_err(b, a) < 1e-6


def test_export_cli_writes_graphs_and_manifest(tmp_path, capsys):
    out = tmp_path / "graphs"
    assert main(["export", str(fixture_path("tacotron2_small_ngc.pt")), "-o", str(out), "--format", "both"]) == 0
    manifest = json.loads((out / "tacotron2.json").read_text())
    assert manifest["model"] == "tacotron2" and manifest["config"]["n_frames_per_step"] == 1
    assert manifest["graphs"]["decoder_step"]["inputs"][:3] == ["frame", "keep", "attention_hidden"]
    for name in ("encoder", "memory_projection", "decoder_step", "postnet"):
        session = ort.InferenceSession(str(out / f"{name}.onnx"))
        assert [i.name for i in session.get_inputs()] == manifest["graphs"][name]["inputs"]
        assert (out / f"{name}.ts.pt").stat().st_size > 10_000
    # The exported encoder runs on its own.
    memory = ort.InferenceSession(str(out / "encoder.onnx")).run(None, {"ids": np.array([[5, 6, 7]])})[0]
    assert memory.shape == (1, 3, manifest["config"]["encoder_embedding_dim"])
    assert main(["export", str(fixture_path("waveglow_small_ngc.pt")), "-o", str(out)]) == 0
    assert json.loads((out / "waveglow.json").read_text())["graphs"]["waveglow"]["inputs"] == ["mel", "z"]
    assert main(["export", str(tmp_path / "missing.pt"), "-o", str(out)]) == 1
    assert "missing.pt" in capsys.readouterr().err


def test_synthesizer_onnx_backend_speaks_like_torch():
    paths = fixture_path("tacotron2_small_ngc.pt"), fixture_path("waveglow_small_ngc.pt")
    torch_synth = Synthesizer.from_checkpoints(*paths)
    onnx_synth = Synthesizer.from_checkpoints(*paths, backend="onnx")
    text = "Hello there. How are you today?"
    a, b = torch_synth.synthesize(text, seed=11), onnx_synth.synthesize(text, seed=11)
    assert [s.mel_length for s in a.sentences] == [s.mel_length for s in b.sentences]
    assert b.audio.shape == a.audio.shape and rel_err(b.audio, a.audio) < 1e-4
    with pytest.raises(ValueError, match="backend must be one of"):
        Synthesizer.from_checkpoints(*paths, backend="tensorrt")


def test_missing_onnx_packages_are_named(monkeypatch, tmp_path, capsys):
    import sys

    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
    assert main(["export", str(fixture_path("waveglow_small_ngc.pt")), "-o", str(tmp_path)]) == 1
    assert "pip install 'tacoglow[export]'" in capsys.readouterr().err
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    paths = fixture_path("tacotron2_small_ngc.pt"), fixture_path("waveglow_small_ngc.pt")
    with pytest.raises(RuntimeError, match="onnxruntime"):
        Synthesizer.from_checkpoints(*paths, backend="onnx")


@pytest.mark.parametrize("overrides", [dict(n_frames_per_step=3), dict(decoder_no_early_stopping=True)])
def test_onnx_generation_matches_eager_with_r_and_no_early_stopping(overrides):
    model = tiny_tacotron2(max_decoder_steps=20, **overrides)
    state = torch.get_rng_state()
    onnx_model = OnnxTacotron2(model)
    assert torch.equal(torch.get_rng_state(), state)  # building the graphs leaves the global stream alone
    text = torch.randint(1, 148, (3, 9), generator=torch.Generator().manual_seed(2))
    # Reference mode (one shared generator) with items of one length, and per-item generators with padding.
    shared = lambda: torch.Generator().manual_seed(5)
    for lengths, generators in ((torch.tensor([9, 9, 9]), lambda: shared()),
                                (torch.tensor([9, 4, 6]),
                                 lambda: [torch.Generator().manual_seed(s) for s in (1, 2, 3)])):
        ours = onnx_model.infer_detailed(text, lengths, generators())
        eager = model.infer_detailed(text, lengths, generators())
        assert torch.equal(ours.mel_lengths, eager.mel_lengths)
        assert torch.equal(ours.gate_stopped, eager.gate_stopped)
        assert ours.mel_postnet.shape == eager.mel_postnet.shape
        assert rel_err(ours.mel_postnet, eager.mel_postnet) < 1e-5
        assert rel_err(ours.alignments, eager.alignments) < 1e-5
    with pytest.raises(ValueError, match="without padding"):  # shared generator, padded columns
        onnx_model.infer_detailed(text, torch.tensor([8, 8, 8]), shared())


def test_onnx_backend_follows_nvidias_decoder_settings():
    model = load_tacotron2(fixture_path("tacotron2_small_ngc.pt"))
    onnx_model = OnnxTacotron2(model)
    case = torch.load(fixture_path("tacotron2_small_cases.pt"))["cases"][2]
    gens = lambda: [torch.Generator().manual_seed(s) for s in (1, 2, 3)]
    onnx_model.decoder.max_decoder_steps = 5
    onnx_model.decoder.gate_threshold = 0.7  # above every gate output here: all items run to the cap
    late = onnx_model.infer_detailed(case["text_padded"], case["input_lengths"], gens())
    assert late.mel_postnet.size(2) == 5 and late.mel_lengths.tolist() == [5, 5, 5] and not late.gate_stopped.any()
    eager = model.infer_detailed(case["text_padded"], case["input_lengths"], gens())
    assert torch.equal(eager.mel_lengths, late.mel_lengths) and rel_err(late.mel_postnet, eager.mel_postnet) < 1e-5
    onnx_model.decoder.gate_threshold = 0.3  # below them: all items stop at the first step
    early = onnx_model.infer_detailed(case["text_padded"], case["input_lengths"], gens())
    assert early.mel_postnet.size(2) == 1 and early.gate_stopped.all()


# ---- HiFi-GAN

@pytest.mark.parametrize("name", ["hifigan_dle_v1small.pt", "hifigan_jik876_type2/g_00000700"])
def test_onnx_hifigan_equals_torch_at_any_batch_and_length(name):
    from tacoglow import load_hifigan
    from tacoglow.export import OnnxHiFiGAN

    model = load_hifigan(fixture_path(name))
    engine = OnnxHiFiGAN(model)
    g = torch.Generator().manual_seed(0)
    for batch, frames in ((1, 5), (3, 41)):
        mel = torch.randn(batch, 80, frames, generator=g)
        assert rel_err(engine.infer(mel), model.infer(mel)) < 1e-4


def test_export_cli_writes_the_hifigan_graph_and_manifest(tmp_path):
    out = tmp_path / "graphs"
    path = fixture_path("hifigan_jik876_type1/g_00000700")  # jik876's layout: config.json beside it
    assert main(["export", str(path), "-o", str(out), "--format", "both"]) == 0
    manifest = json.loads((out / "hifigan.json").read_text())
    assert manifest["model"] == "hifigan" and manifest["config"]["upsample_rates"] == [8, 4]
    assert manifest["graphs"]["hifigan"] == {"file": "hifigan.onnx", "inputs": ["mel"], "outputs": ["audio"]}
    mel = np.random.default_rng(0).standard_normal((2, 80, 9)).astype(np.float32)
    audio = ort.InferenceSession(str(out / "hifigan.onnx")).run(None, {"mel": mel})[0]
    assert audio.shape == (2, 1, 9 * 32) and (out / "hifigan.ts.pt").is_file()


def test_synthesizer_onnx_backend_runs_hifigan_like_torch(tmp_path):
    from helpers import tacotron2_for_hifigan

    hifigan = fixture_path("hifigan_dle_v1small.pt")
    t2 = tacotron2_for_hifigan(hifigan, tmp_path)
    torch_synth = Synthesizer.from_checkpoints(t2, hifigan=hifigan)
    onnx_synth = Synthesizer.from_checkpoints(t2, hifigan=hifigan, backend="onnx")
    text = "Fine. How are you today?"  # this untrained model: 80 frames (to the cap), then none
    a, b = torch_synth.synthesize(text, seed=11), onnx_synth.synthesize(text, seed=11)
    assert b.audio.shape == a.audio.shape and rel_err(b.audio, a.audio) < 1e-4
    chunks = list(onnx_synth.stream_audio(text, seed=11))  # the first sentence vocoded as it is decoded
    assert chunks[0].audio.numel() == 16 * onnx_synth.audio.hop_length < b.sentences[0].audio.numel()
    assert rel_err(torch.cat([c.audio for c in chunks]), torch.cat([s.audio for s in b.sentences])) < 1e-5
