"""On a GPU: NVIDIA's torch.hub example with model_math='fp16', the Synthesizer with per-item generators, the
prenet's masks as the reference draws them, CUDA-graph decoding against eager decoding, and an AMP training step.

Tests marked ``cuda`` are skipped, with the reason in the summary (``pytest -rs``), where torch sees no CUDA
device; ``benchmarks/gpu.py`` runs them on one. The rest check on any machine what can be checked without one.
Comparisons with the CPU turn TF32 off: fp32 there means IEEE fp32, as on the CPU.
"""
import copy

import pytest
import torch
from torch.nn import functional as F

from tacoglow.decoding import CUDAGraphSteps, keep_mask
from tacoglow.tacotron2 import Tacotron2, Tacotron2Config

from conftest import REPO, fixture_path
from helpers import rel_err
from test_hub import torch_home  # noqa: F401  (fixture: NVIDIA's files under their names in $TORCH_HOME)

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (torch sees none)")

TEXT = torch.randint(1, 148, (3, 9), generator=torch.Generator().manual_seed(1))
LENGTHS = torch.tensor([9, 6, 7])
TEXTS = ["Hello there. How are you today?", "A short one.", "The third request has three sentences. Yes! Really."]


@pytest.fixture
def ieee_fp32():
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def _tacotron2(**overrides) -> Tacotron2:
    cfg = dict(symbols_embedding_dim=16, encoder_embedding_dim=16, attention_rnn_dim=24, attention_dim=8,
               attention_location_n_filters=4, attention_location_kernel_size=5, decoder_rnn_dim=24,
               prenet_dim=8, postnet_embedding_dim=12, max_decoder_steps=45)
    cfg.update(overrides)
    torch.manual_seed(0)
    model = Tacotron2(Tacotron2Config(**cfg)).eval()
    with torch.no_grad():
        model.decoder.gate_layer.linear_layer.bias.fill_(-1e4)  # never stops: runs to the caps
    return model


def _same(a, b) -> str:
    """'' when the two outputs are equal, else what differs."""
    for name in ("mel_postnet", "mel_lengths", "alignments", "gate_stopped"):
        x, y = getattr(a, name), getattr(b, name)
        if x.shape != y.shape or not torch.equal(x, y):
            diff = (x.double() - y.double()).abs().max().item() if x.shape == y.shape else "shapes differ"
            return f"{name}: max difference {diff}"
    return ""


# --- on any machine ------------------------------------------------------------------------------------------


def test_a_decoder_runtime_alone_runs_only_the_decoder_steps():
    model = _tacotron2()
    gens = lambda: torch.Generator().manual_seed(3)
    default = model.infer_detailed(TEXT, LENGTHS, gens())
    steps_only = model.infer_detailed(TEXT, LENGTHS, gens(), runtime=model.decoder.kernels())
    assert _same(default, steps_only) == ""


def test_cuda_graph_decoding_refuses_a_model_off_the_gpu():
    model = _tacotron2()
    with pytest.raises(ValueError, match="CUDA device"):
        model.infer_detailed(TEXT, LENGTHS, runtime=CUDAGraphSteps(model.decoder))


# --- on a GPU --------------------------------------------------------------------------------------------------


@pytest.mark.cuda
@requires_cuda
def test_prenet_masks_on_cuda_are_the_reference_dropout_masks():
    like = torch.empty(3, 16, device="cuda")
    h = torch.rand(3, 16, device="cuda") + 0.5  # positive, as after the prenet's ReLU
    for dtype in (torch.float32, torch.float16):
        torch.cuda.manual_seed(7)
        reference = [F.dropout(h.to(dtype), 0.5, training=True) for _ in range(2)]
        torch.cuda.manual_seed(7)
        ours = [keep_mask((3, 16), like.to(dtype), None) for _ in range(2)]
        for r, o in zip(reference, ours):
            assert torch.equal(r, h.to(dtype) * o), dtype


@pytest.mark.cuda
@requires_cuda
def test_hub_fp16_example_on_cuda(torch_home, ieee_fp32):  # noqa: F811
    # NVIDIA's torch.hub page, as written (model_math='fp16' picks the AMP-trained file; the model is fp32).
    tacotron2 = torch.hub.load(str(REPO), "nvidia_tacotron2", source="local", model_math="fp16")
    tacotron2 = tacotron2.to("cuda").eval()
    waveglow = torch.hub.load(str(REPO), "nvidia_waveglow", source="local", model_math="fp16")
    waveglow = waveglow.remove_weightnorm(waveglow)
    waveglow = waveglow.to("cuda").eval()
    utils = torch.hub.load(str(REPO), "nvidia_tts_utils", source="local")
    sequences, lengths = utils.prepare_input_sequence(["Hello world, I missed you so much."])
    assert sequences.is_cuda and lengths.is_cuda
    with torch.no_grad():
        mel, _, _ = tacotron2.infer(sequences, lengths)
        audio = waveglow.infer(mel)
    assert mel.is_cuda and audio.is_cuda
    assert audio.shape == (1, mel.size(2) * 256) and torch.isfinite(audio).all()

    # With the same CPU generators the GPU gives the CPU's numbers (to float rounding).
    cpu_tacotron2, cpu_waveglow = copy.deepcopy(tacotron2).cpu(), copy.deepcopy(waveglow).cpu()
    for model in (tacotron2, cpu_tacotron2):  # run to a fixed length: no stop decision can differ
        model.decoder.gate_threshold, model.decoder.max_decoder_steps = 1.0, 40
    gpu_mel = tacotron2.infer(sequences, lengths, [torch.Generator().manual_seed(5)])[0]
    cpu_mel = cpu_tacotron2.infer(sequences.cpu(), lengths.cpu(), [torch.Generator().manual_seed(5)])[0]
    assert gpu_mel.shape == cpu_mel.shape == (1, 80, 40)
    assert rel_err(gpu_mel.cpu(), cpu_mel) < 1e-4
    gpu_audio = waveglow.infer(cpu_mel.cuda(), generator=torch.Generator().manual_seed(6))
    cpu_audio = cpu_waveglow.infer(cpu_mel, generator=torch.Generator().manual_seed(6))
    assert rel_err(gpu_audio.cpu(), cpu_audio) < 1e-4

    # In half precision too, as NVIDIA's inference script runs with --fp16.
    with torch.no_grad():
        mel16 = tacotron2.half().infer(sequences, lengths)[0]
        audio16 = waveglow.half().infer(mel16)
    assert mel16.dtype == audio16.dtype == torch.float16
    assert audio16.shape == (1, 40 * 256) and torch.isfinite(audio16).all()


@pytest.mark.cuda
@requires_cuda
def test_synthesizer_on_cuda_items_equal_their_batch_of_one(ieee_fp32):
    from tacoglow import Synthesizer

    t2, wg = fixture_path("tacotron2_small_ngc.pt"), fixture_path("waveglow_small_ngc.pt")
    synth = Synthesizer.from_checkpoints(t2, wg, device="cuda")
    assert next(synth.tacotron2.parameters()).is_cuda and next(synth.vocoder.waveglow.parameters()).is_cuda
    batch = synth.synthesize_batch(TEXTS, seeds=[1, 2, 3])
    for text, seed, speech in zip(TEXTS, [1, 2, 3], batch):
        alone = synth.synthesize(text, seed=seed)
        assert [s.mel_length for s in speech.sentences] == [s.mel_length for s in alone.sentences]
        assert speech.audio.shape == alone.audio.shape and torch.isfinite(speech.audio).all()
        assert torch.allclose(speech.audio, alone.audio, atol=1e-4), text
    # The generators are CPU ones, so the CPU speaks the same words the same way.
    on_cpu = Synthesizer.from_checkpoints(t2, wg, device="cpu").synthesize(TEXTS[0], seed=1)
    assert [s.mel_length for s in on_cpu.sentences] == [s.mel_length for s in batch[0].sentences]
    assert torch.allclose(on_cpu.audio, batch[0].audio, atol=1e-3)


@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("per_item", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_cuda_graph_decoding_equals_eager_decoding(batch, per_item, dtype):
    model = _tacotron2().to("cuda", dtype)
    text, lengths = TEXT[:batch].cuda(), LENGTHS[:batch]  # batch 1: no padding, so no attention mask

    def infer(**runtime):
        torch.manual_seed(3)  # the default CUDA generator, for the reference mode
        generators = [torch.Generator().manual_seed(3 + i) for i in range(batch)] if per_item else None
        return model.infer_detailed(text, lengths, generators, **runtime)

    eager = infer()
    graphed = infer(runtime=CUDAGraphSteps(model.decoder))
    assert eager.mel_postnet.size(2) == 45
    assert _same(eager, graphed) == ""
    assert _same(eager, infer(runtime=CUDAGraphSteps(model.decoder))) == ""  # a fresh capture each utterance


@pytest.mark.cuda
@requires_cuda
def test_amp_training_steps_on_cuda(tmp_path):
    import math

    from tacoglow import train as T
    from tacoglow.checkpoint import load_tacotron2, load_waveglow

    from test_train import make_corpus, read_log, tiny_config

    (tmp_path / "corpus").mkdir()
    corpus = make_corpus(tmp_path / "corpus")
    path = T.train_tacotron2(corpus, tmp_path / "t2", tiny_config(max_steps=3), amp="fp16", device="cuda")
    assert all(math.isfinite(r["loss"]) for r in read_log(tmp_path / "t2"))
    assert load_tacotron2(path).config.n_frames_per_step == 2
    path = T.train_waveglow(corpus, tmp_path / "wg", tiny_config("waveglow", max_steps=3, batch_size=2), amp="fp16",
                            device="cuda")
    assert all(math.isfinite(r["loss"]) for r in read_log(tmp_path / "wg"))
    assert torch.isfinite(load_waveglow(path).infer(torch.zeros(1, 80, 4), sigma=0.5)).all()
