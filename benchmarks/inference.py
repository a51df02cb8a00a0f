"""Inference speed of Tacotron 2, WaveGlow, Griffin-Lim and the whole pipeline, optionally against NVIDIA's
reference implementation on the same inputs and weights.

    python benchmarks/inference.py                               # every row, torch's default thread count
    python benchmarks/inference.py --threads 2 --reference DLE/PyTorch/SpeechSynthesis/Tacotron2
    python benchmarks/inference.py --only tacotron2 --batch-sizes 1 --repeats 5

Models are built with each configuration's shape and random weights (seeded), because speed does not
depend on what the weights learned. Inputs are fixed: four LJSpeech sentences for Tacotron 2, whose stop
gate is disabled so that every run decodes exactly ``--steps`` decoder steps, and the mel spectrogram of a
fixed synthetic signal for the vocoders. Each row is the median of ``--repeats`` timed runs after one
untimed warm-up run, with the same seed before every run.

HiFi-GAN (V1 and V3, ``--hifigan-frames`` per item) runs against jik876's ``Generator`` with
``--hifigan-reference DIR`` (a jik876/hifi-gan checkout), interleaved; its notes give the fraction of this
machine's measured convolution rate. ``--hifigan-bf16`` and ``--hifigan-int8`` add bfloat16 and int8 rows,
their error against fp32 on the same weights; the notes add each one's error on a real mel (the bundled
voice's Tacotron 2 mel of a sentence; through a trained generator with ``--hifigan-checkpoint``).

Columns: wall seconds per call; RTF = compute seconds / audio seconds (lower is faster) and NVIDIA's
inverse ("x real time"); mel frames and audio samples produced per second; the achieved fraction of this
machine's matrix-multiply rate (arithmetic of the reference's operations / time / the faster of
``torch.mm`` and oneDNN on a 1024^3 fp32 product, both measured at start with the same thread count);
with ``--reference``, NVIDIA's time on the same inputs and the speed-up; and a relative error
||a - b|| / ||b||: against the reference's output for exact rows, against our fp32 output for the
reduced-precision rows.

``--reference DIR`` takes a checkout of NVIDIA DeepLearningExamples' ``PyTorch/SpeechSynthesis/Tacotron2``
folder (its Python files are imported from there, unchanged; librosa and scipy must be installed). Timings
mean little while other processes use the CPU: the machine's load is measured and printed with the table.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.util
import io
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch

from tacoglow.audio import AudioConfig, griffin_lim, mel_spectrogram
from tacoglow.checkpoint import load_hifigan
from tacoglow.export import OnnxTacotron2, OnnxWaveGlow, onnxruntime_available
from tacoglow.hifigan import HiFiGAN, HiFiGANConfig
from tacoglow.quantized import avoid_amx
from tacoglow.synthesizer import Synthesizer
from tacoglow.tacotron2 import PRECISIONS, Tacotron2, Tacotron2Config
from tacoglow.text import text_to_sequence
from tacoglow.train import PRESETS
from tacoglow.waveglow import Denoiser, WaveGlow, WaveGlowConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from helpers import rel_err  # noqa: E402  (the error column is measured as the tests measure it)

SEED = 1234
SIGMA = 0.666  # NVIDIA's inference_perf.py
DENOISER_STRENGTH = 0.01  # the Synthesizer's default (NVIDIA's inference script: -d 0.01)
GRIFFIN_LIM_ITERS = 60
# Four LJSpeech validation lines, longest first (the reference wants batches sorted by length).
SENTENCES = [
    "The overwhelming majority of people in this country know how to sift the wheat from the chaff in what "
    "they hear and what they read.",
    "If somebody did that to me, a lousy trick like that, to take my wife away, and all the furniture, I "
    "would be mad as hell, too.",
    "as is shown by the report of the Commissioners to inquire into the state of the municipal corporations.",
    "He likewise indicated he was disenchanted with Russia.",
]
AUDIO = AudioConfig()

TACOTRON2_CONFIGS = {
    "nvidia": Tacotron2Config.from_dict(PRESETS["tacotron2"]["nvidia"].model_config),
    "small": Tacotron2Config.from_dict(PRESETS["tacotron2"]["small"].model_config),
}
WAVEGLOW_CONFIGS = {
    "256": WaveGlowConfig(n_channels=256),  # NVIDIA's published checkpoints
    "512": WaveGlowConfig(n_channels=512),  # the DLE training default
    "small": WaveGlowConfig.from_dict(PRESETS["waveglow"]["small"].model_config),
}
HIFIGAN_CONFIGS = {"V1": HiFiGANConfig.v1(), "V3": HiFiGANConfig.v3()}
SECTIONS = ("tacotron2", "waveglow", "hifigan", "griffin-lim", "pipeline", "streaming")
# Time to first audio: a fixed five-sentence paragraph whose first sentence has 12 words or fewer.
PARAGRAPH = ("The quick brown fox jumps over the lazy dog near the river. "
             "It was a bright cold day in April, and the clocks were striking thirteen. "
             "Nobody in the village could remember a spring as dry as this one had been. "
             "The farmers gathered at the market every morning to talk about the weather. "
             "By the end of the month, the first rain finally came down over the hills.")


# ------------------------------------------------------------------------------------------------ machine

def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class LoadMeter:
    """CPU time used by other processes while the benchmark runs (Linux: /proc/stat), in busy cores."""

    def __init__(self) -> None:
        self.start = self._sample()

    @staticmethod
    def _sample() -> tuple[float, float, float] | None:
        try:
            values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        except (OSError, ValueError):
            return None
        busy = (sum(values) - values[3] - values[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait
        return time.perf_counter(), busy, time.process_time()

    def others(self) -> float | None:
        end = self._sample()
        if self.start is None or end is None or end[0] - self.start[0] < 0.5:
            return None
        wall, busy, own = (e - s for e, s in zip(end, self.start))
        return max(0.0, (busy - own) / wall)


def _median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_rates() -> dict[str, float]:
    """GFLOP/s of a 1024^3 fp32 product: torch.mm (the BLAS torch was built with) and oneDNN."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    flops = 2 * 1024 ** 3
    rates = {}
    torch.mm(a, b)
    rates["torch.mm"] = flops / _median_time(lambda: torch.mm(a, b), 15) / 1e9
    if torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise"):
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(b.t().contiguous(), 1024)
            run = lambda: torch.ops.mkldnn._linear_pointwise(a, packed, None, "none", [], "")
            run()
            rates["oneDNN"] = flops / _median_time(run, 15) / 1e9
        except RuntimeError:
            pass
    return rates


def conv_rate() -> float:
    """GFLOP/s of one fp32 convolution shaped like HiFi-GAN V1's middle stages (256 channels, kernel 7, 8192
    samples), through oneDNN with the weight prepacked as `HiFiGAN.infer` runs it."""
    x = torch.randn(1, 256, 1, 8192).contiguous(memory_format=torch.channels_last)
    w, b = torch.randn(256, 256, 1, 7), torch.zeros(256)
    try:
        packed = torch._C._nn.mkldnn_reorder_conv2d_weight(w.to_mkldnn(), [0, 3], [1, 1], [1, 1], 1, [1, 256, 1, 8192])
        run = lambda: torch.ops.mkldnn._convolution_pointwise(x, packed, b, [0, 3], [1, 1], [1, 1], 1, "none", [], "")
        run()
    except (RuntimeError, AttributeError):
        run = lambda: torch.nn.functional.conv2d(x, w, b, padding=(0, 3))
    return 2 * 256 * 256 * 7 * 8192 / _median_time(run, 10) / 1e9


def hifigan_flops(cfg: HiFiGANConfig, frames: int) -> float:
    """Multiply-adds x 2 of one item's generator pass (activations and tanh not counted)."""
    flops, length, channels = 2 * cfg.n_mel_channels * cfg.upsample_initial_channel * 7 * frames, frames, None
    layers = sum(len(d) for d in cfg.resblock_dilation_sizes) * (2 if cfg.resblock == "1" else 1)
    taps = sum(k * len(d) * (2 if cfg.resblock == "1" else 1)
               for k, d in zip(cfg.resblock_kernel_sizes, cfg.resblock_dilation_sizes))
    for i, (u, k) in enumerate(zip(cfg.upsample_rates, cfg.upsample_kernel_sizes)):
        c_in, channels = cfg.upsample_initial_channel if i == 0 else channels, cfg.channels(i)
        flops += 2 * c_in * channels * k * length  # the transposed convolution, k taps per input sample
        length *= u
        flops += 2 * channels * channels * taps * length
    assert layers and channels
    return flops + 2 * channels * 7 * length


def jik876_generator(path: str) -> type:
    """jik876/hifi-gan's models.Generator from a checkout (matplotlib stubbed: only its plot helpers use it)."""
    import types

    if importlib.util.find_spec("matplotlib") is None:
        stub = types.ModuleType("matplotlib")
        stub.use = lambda *args, **kwargs: None  # type: ignore[attr-defined]
        sys.modules.update({"matplotlib": stub, "matplotlib.pylab": types.ModuleType("matplotlib.pylab")})
    sys.path.insert(0, str(Path(path).resolve()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated
        from models import Generator
    return Generator


class _AttrDict(dict):
    def __getattr__(self, name: str) -> Any:  # jik876's Generator reads its config as attributes
        return self[name]


def copy_bandwidth() -> float:
    """Bytes copied per second (each byte read once and written once) for a 256 MiB tensor."""
    x = torch.randn(64 * 1024 * 1024)
    y = torch.empty_like(x)
    y.copy_(x)
    return x.numel() * 4 / _median_time(lambda: y.copy_(x), 5)


# ------------------------------------------------------------------------------------------------ inputs

def text_batch(batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = [text_to_sequence(s) for s in SENTENCES[:batch]]
    lengths = torch.tensor([len(x) for x in ids])
    padded = torch.zeros(batch, int(lengths.max()), dtype=torch.long)
    for i, x in enumerate(ids):
        padded[i, :len(x)] = torch.tensor(x)
    return padded, lengths


def mel_batch(batch: int, frames: int) -> torch.Tensor:
    """Log-mel spectrograms of a fixed signal (a vowel-like harmonic sweep plus noise), one per item."""
    g = torch.Generator().manual_seed(SEED)
    t = torch.arange(frames * AUDIO.hop_length) / AUDIO.sampling_rate
    mels = []
    for i in range(batch):
        f0 = 110 + 30 * i + 40 * torch.sin(2 * math.pi * 0.7 * t)
        phase = 2 * math.pi * torch.cumsum(f0, 0) / AUDIO.sampling_rate
        signal = sum(torch.sin(k * phase) / k for k in range(1, 12)) * 0.1
        signal = signal + 0.01 * torch.randn(t.shape, generator=g)
        mels.append(mel_spectrogram(signal.clamp(-1, 1).unsqueeze(0), AUDIO)[0, :, :frames])
    return torch.stack(mels)


def build_tacotron2(cfg: Tacotron2Config, steps: int) -> Tacotron2:
    torch.manual_seed(0)
    model = Tacotron2(dataclasses.replace(cfg, max_decoder_steps=steps)).eval()
    with torch.no_grad():
        model.decoder.gate_layer.linear_layer.bias.fill_(-1e4)  # sigmoid(gate) = 0: never stops early
    return model


def build_waveglow(cfg: WaveGlowConfig) -> WaveGlow:
    torch.manual_seed(0)
    model = WaveGlow(cfg).eval()
    with torch.no_grad():  # `end` starts at zero (identity couplings): give the flows something to do
        for wn in model.WN:
            wn.end.weight.normal_(0.0, 0.02)
            wn.end.bias.normal_(0.0, 0.02)
    return model


# ------------------------------------------------------------------------------------------------ FLOPs
# Multiply-adds of the reference's operations, x2; elementwise work is not counted.

def tacotron2_flops(cfg: Tacotron2Config, text_lengths: list[int], steps: int) -> float:
    frame = cfg.n_mel_channels * cfg.n_frames_per_step
    p, c, a = cfg.prenet_dim, cfg.encoder_embedding_dim, cfg.attention_dim
    ha, hd, nf, k = cfg.attention_rnn_dim, cfg.decoder_rnn_dim, cfg.attention_location_n_filters, \
        cfg.attention_location_kernel_size
    e, kp = cfg.postnet_embedding_dim, cfg.postnet_kernel_size
    total = 0.0
    for t in text_lengths:
        per_step = (frame * p + p * p + 4 * ha * (p + c + ha) + a * ha + t * (nf * 2 * k + nf * a + a + c)
                    + 4 * hd * (ha + c + hd) + (frame + 1) * (hd + c))
        dims = [cfg.n_mel_channels] + [e] * (cfg.postnet_n_convolutions - 1) + [cfg.n_mel_channels]
        postnet = steps * cfg.n_frames_per_step * kp * sum(i * o for i, o in zip(dims[:-1], dims[1:]))
        encoder = t * (cfg.encoder_n_convolutions * c * c * cfg.encoder_kernel_size + 2 * 4 * (c // 2) * (c + c // 2)
                       + c * a)
        total += steps * per_step + postnet + encoder
    return 2 * total


def waveglow_flops(cfg: WaveGlowConfig, frames: int) -> float:
    positions = frames * AUDIO.hop_length // cfg.n_group
    ch, n_cond = cfg.n_channels, cfg.n_mel_channels * cfg.n_group
    total = cfg.n_mel_channels ** 2 * 1024 * frames  # upsampler
    for flow in range(cfg.n_flows):
        rem = cfg.remaining_channels(flow)
        n_in = rem // 2
        layers = sum(2 * ch * ch * cfg.kernel_size + 2 * ch * n_cond + (ch if i == cfg.n_layers - 1 else 2 * ch) * ch
                     for i in range(cfg.n_layers))
        total += positions * (n_in * ch + layers + ch * 2 * n_in + rem * rem)
    return 2 * total


# ------------------------------------------------------------------------------------------------ reference

class Reference:
    """NVIDIA's DeepLearningExamples Tacotron2 folder, imported from where it lies."""

    def __init__(self, path: str):
        root = Path(path).resolve()
        if not (root / "tacotron2" / "model.py").is_file() or not (root / "waveglow" / "model.py").is_file():
            raise SystemExit(f"--reference {path}: expected DeepLearningExamples' PyTorch/SpeechSynthesis/"
                             "Tacotron2 folder (with tacotron2/model.py and waveglow/model.py)")
        sys.path.insert(0, str(root))
        from tacotron2.model import Tacotron2 as RefTacotron2
        from tacotron2_common.audio_processing import griffin_lim as ref_griffin_lim
        from tacotron2_common.layers import TacotronSTFT
        from waveglow.model import WaveGlow as RefWaveGlow
        spec = importlib.util.spec_from_file_location("_reference_denoiser", root / "waveglow" / "denoiser.py")
        denoiser = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(denoiser)
        self.Tacotron2, self.WaveGlow, self.Denoiser = RefTacotron2, RefWaveGlow, denoiser.Denoiser
        self.griffin_lim, self.TacotronSTFT = ref_griffin_lim, TacotronSTFT
        self.path = root

    def tacotron2(self, ours: Tacotron2) -> torch.nn.Module:
        model = self.Tacotron2(**ours.config.to_dict())
        model.load_state_dict(ours.state_dict())
        return model.eval()

    @staticmethod
    def quiet(fn: Callable[[], Any]) -> Callable[[], Any]:
        """fn with its stdout discarded (the reference prints a warning whenever it reaches its step cap)."""
        def run() -> Any:
            with contextlib.redirect_stdout(io.StringIO()):
                return fn()
        return run

    def waveglow(self, ours: WaveGlow) -> torch.nn.Module:
        nvidia = ours.config.to_nvidia()
        model = self.WaveGlow(**nvidia)
        model.load_state_dict(ours.state_dict())
        return model.remove_weightnorm(model).eval()

    def vocoder_griffin_lim(self) -> Callable[[torch.Tensor], torch.Tensor]:
        stft = self.TacotronSTFT(AUDIO.filter_length, AUDIO.hop_length, AUDIO.win_length, AUDIO.n_mel_channels,
                                 AUDIO.sampling_rate, AUDIO.mel_fmin, AUDIO.mel_fmax)
        inverse = torch.linalg.pinv(stft.mel_basis)

        def run(mel: torch.Tensor) -> torch.Tensor:
            magnitudes = torch.clamp(inverse @ torch.exp(mel), min=0.0)
            return self.griffin_lim(magnitudes, stft.stft_fn, GRIFFIN_LIM_ITERS)
        return run


# ------------------------------------------------------------------------------------------------ rows

@dataclasses.dataclass
class Row:
    section: str
    name: str
    batch: int
    seconds: float
    frames: int  # mel frames produced (or consumed, for vocoders), all items
    flops: float | None = None
    reference_seconds: float | None = None
    error: float | None = None
    error_against: str = ""

    @property
    def audio_seconds(self) -> float:
        return self.frames * AUDIO.hop_length / AUDIO.sampling_rate


class Bench:
    def __init__(self, args: argparse.Namespace, reference: Reference | None):
        self.args, self.reference = args, reference
        self.rows: list[Row] = []
        self.notes: list[str] = []
        self.latency: list[dict[str, Any]] = []

    def time(self, fn: Callable[[], Any]) -> tuple[float, Any]:
        """Median seconds of `repeats` runs after a warm-up, seeding before each; the last output."""
        output = None

        def seeded() -> None:
            nonlocal output
            torch.manual_seed(SEED)
            output = fn()
        with torch.inference_mode():
            seeded()
            seconds = _median_time(seeded, self.args.repeats)
        return seconds, output

    def add(self, row: Row) -> None:
        self.rows.append(row)
        ref = f", reference {row.reference_seconds:.3f} s" if row.reference_seconds else ""
        err = f", rel. err {row.error:.1e} vs {row.error_against}" if row.error is not None else ""
        print(f"  {row.section} {row.name} batch {row.batch}: {row.seconds:.3f} s{ref}{err}", file=sys.stderr)

    # -- Tacotron 2 ------------------------------------------------------------------------------------
    def tacotron2(self) -> None:
        steps = self.args.steps
        onnx_models: dict[str, OnnxTacotron2] = {}
        for config_name, cfg in TACOTRON2_CONFIGS.items():
            model = build_tacotron2(cfg, steps)
            r = cfg.n_frames_per_step
            reference = self.reference.tacotron2(model) if self.reference else None
            for batch in self.args.batch_sizes:
                text, lengths = text_batch(batch)
                flops = tacotron2_flops(cfg, lengths.tolist(), steps)
                exact = None
                for precision in self.args.precisions:
                    seconds, out = self.time(lambda: model.infer(text, lengths, precision=precision)[0])
                    row = Row("Tacotron 2", f"{config_name} {precision}", batch, seconds, batch * steps * r, flops)
                    if precision == "fp32":
                        exact = out
                        if reference is not None:
                            run_reference = Reference.quiet(lambda: reference.infer(text, lengths)[0])
                            row.reference_seconds, ref_out = self.time(run_reference)
                            row.error, row.error_against = rel_err(out, ref_out), "reference"
                    elif exact is not None:
                        row.error, row.error_against = rel_err(out, exact), "fp32"
                    self.add(row)
                if batch > 1 and "fp32" in self.args.precisions:
                    # What the Synthesizer does: one generator per item, each isolated from the batch.
                    def isolated(engine: Any = model) -> torch.Tensor:
                        generators = [torch.Generator().manual_seed(SEED + i) for i in range(batch)]
                        return engine.infer(text, lengths, generators)[0]
                    seconds, exact = self.time(isolated)
                    self.add(Row("Tacotron 2", f"{config_name} fp32, per-item generators", batch, seconds,
                                 batch * steps * r, flops))
                if "onnx" in self.args.backends and exact is not None:
                    onnx_model = onnx_models.setdefault(config_name, OnnxTacotron2(model))
                    if batch == 1:
                        seconds, out = self.time(lambda: onnx_model.infer(text, lengths)[0])
                    else:
                        seconds, out = self.time(lambda: isolated(onnx_model))
                    row = Row("Tacotron 2", f"{config_name} fp32, ONNX Runtime"
                              + (", per-item generators" if batch > 1 else ""), batch, seconds, batch * steps * r,
                              flops)
                    row.error, row.error_against = rel_err(out, exact), "torch fp32"
                    self.add(row)
            if config_name == "nvidia" and 1 in self.args.batch_sizes:
                self.streaming_floor(model)

    def streaming_floor(self, model: Tacotron2) -> None:
        """Exact fp32 decoder step at batch 1 against the time to stream its weights from memory once."""
        text, lengths = text_batch(1)
        steps = self.args.steps
        decoder = model.decoder
        with torch.inference_mode():
            memory = model.encoder(model.embedding(text).transpose(1, 2), lengths)
            mask = torch.zeros(1, memory.size(1), dtype=torch.bool)
            caps = torch.tensor([steps])
        seconds, _ = self.time(lambda: decoder.infer(memory, mask, caps, None))
        step = seconds / steps
        per_step = [decoder.attention_rnn, decoder.decoder_rnn, decoder.prenet, decoder.linear_projection,
                    decoder.gate_layer, decoder.attention_layer.query_layer, decoder.attention_layer.location_layer,
                    decoder.attention_layer.v]
        weight_bytes = sum(p.numel() * p.element_size() for m in per_step for p in m.parameters())
        bandwidth = copy_bandwidth()
        floor = weight_bytes / bandwidth
        self.floor = dict(step_ms=step * 1e3, floor_ms=floor * 1e3, weight_mb=weight_bytes / 1e6,
                          bandwidth_gbs=bandwidth / 1e9)
        self.notes.append(
            f"Tacotron 2 (nvidia), exact fp32, batch 1, decoder only: {step * 1e3:.2f} ms per step; weight-streaming "
            f"floor {floor * 1e3:.2f} ms = {weight_bytes / 1e6:.1f} MB of decoder weights / {bandwidth / 1e9:.1f} GB/s "
            f"copied by a 256 MiB tensor copy (ratio {step / floor:.2f}; below 1 means part of the weights stayed "
            "in cache between steps).")

    # -- WaveGlow --------------------------------------------------------------------------------------
    def waveglow(self) -> None:
        frames = self.args.waveglow_frames
        onnx_engines: dict[str, OnnxWaveGlow] = {}
        for config_name, cfg in WAVEGLOW_CONFIGS.items():
            if config_name not in self.args.waveglow_configs:
                continue
            model = build_waveglow(cfg)
            reference = self.reference.waveglow(model) if self.reference else None
            model.remove_weightnorm()
            for batch in self.args.batch_sizes:
                mel = mel_batch(batch, frames)
                seconds, out = self.time(lambda: model.infer(mel, sigma=SIGMA))
                row = Row("WaveGlow", config_name, batch, seconds, batch * frames, batch * waveglow_flops(cfg, frames))
                if reference is not None:
                    row.reference_seconds, ref_out = self.time(lambda: reference.infer(mel, sigma=SIGMA))
                    row.error, row.error_against = rel_err(out, ref_out), "reference"
                self.add(row)
                if "onnx" in self.args.backends:
                    engine = onnx_engines.setdefault(config_name, OnnxWaveGlow(model))
                    seconds, onnx_out = self.time(lambda: engine.infer(mel, sigma=SIGMA))
                    row = Row("WaveGlow", f"{config_name}, ONNX Runtime", batch, seconds, batch * frames,
                              batch * waveglow_flops(cfg, frames))
                    row.error, row.error_against = rel_err(onnx_out, out), "torch"
                    self.add(row)

    # -- HiFi-GAN ---------------------------------------------------------------------------------------
    def hifigan(self) -> None:
        """V1 and V3 with random weights (seeded), against jik876's Generator on the same weights; the runs of
        a row are interleaved (reference, fp32, bf16, again and again) so that load changes hit them alike."""
        frames, args = self.args.hifigan_frames, self.args
        Generator = jik876_generator(args.hifigan_reference) if args.hifigan_reference else None
        self.conv_rate = conv_rate()
        for config_name, cfg in HIFIGAN_CONFIGS.items():
            torch.manual_seed(SEED)
            model = HiFiGAN(cfg).eval()
            reference = None
            if Generator is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # torch.nn.utils.weight_norm is deprecated
                    reference = Generator(_AttrDict(cfg.to_reference())).eval()
                reference.load_state_dict(model.state_dict())  # the same keys, weight norm included
                Reference.quiet(reference.remove_weight_norm)()  # it prints "Removing weight norm..."
            model.remove_weight_norm().requires_grad_(False)
            for batch in self.args.batch_sizes:
                mel = mel_batch(batch, frames)
                runs = {"fp32": lambda: model.infer(mel)}
                if args.hifigan_bf16:
                    runs["bf16"] = lambda: model.infer(mel, precision="bf16")
                if args.hifigan_int8:
                    runs["int8"] = lambda: model.infer(mel, precision="int8")
                if reference is not None:
                    runs["reference"] = lambda: reference(mel)
                times: dict[str, list[float]] = {name: [] for name in runs}
                with torch.inference_mode():
                    outputs = {name: run() for name, run in runs.items()}  # warm-up
                    for _ in range(args.repeats):
                        for name, run in runs.items():
                            start = time.perf_counter()
                            run()
                            times[name].append(time.perf_counter() - start)
                flops = batch * hifigan_flops(cfg, frames)
                ref_s = statistics.median(times["reference"]) if reference is not None else None
                for name in [n for n in runs if n != "reference"]:
                    row = Row("HiFi-GAN", f"{config_name}{'' if name == 'fp32' else ', ' + name}", batch,
                              statistics.median(times[name]), batch * frames, flops, ref_s)
                    against = "reference" if reference is not None else "fp32"
                    if name != "fp32" or reference is not None:
                        row.error, row.error_against = rel_err(outputs[name], outputs[against]), against
                    self.add(row)
                    self.notes.append(f"HiFi-GAN {row.name} batch {batch}: {flops / row.seconds / 1e9:.1f} GFLOP/s, "
                                      f"{flops / row.seconds / 1e9 / self.conv_rate:.0%} of the measured "
                                      f"convolution rate ({self.conv_rate:.0f} GFLOP/s).")
            self.hifigan_real_mel_errors(config_name, model)

    def hifigan_real_mel_errors(self, config_name: str, model: HiFiGAN) -> None:
        """Notes: the reduced precisions' error against fp32 on a real mel (random weights see a random-like
        input otherwise), through `model` or, for V1, the trained ``--hifigan-checkpoint``."""
        precisions = [p for p, wanted in (("bf16", self.args.hifigan_bf16), ("int8", self.args.hifigan_int8)) if wanted]
        if not precisions:
            return
        generator, weights = model, "random weights"
        if self.args.hifigan_checkpoint and config_name == "V1":
            generator, weights = load_hifigan(self.args.hifigan_checkpoint), Path(self.args.hifigan_checkpoint).name
        mel = voice_mel()
        with torch.inference_mode():
            exact = generator.infer(mel)
            for precision in precisions:
                error = rel_err(generator.infer(mel, precision=precision), exact)
                self.notes.append(f"HiFi-GAN {config_name} {precision} on the bundled voice's mel of "
                                  f"{VOICE_SENTENCE!r} ({mel.size(2)} frames, {weights}): relative error "
                                  f"{error:.3f} against fp32.")

    # -- Griffin-Lim -----------------------------------------------------------------------------------
    def griffin_lim(self) -> None:
        frames = self.args.griffin_lim_frames
        reference = self.reference.vocoder_griffin_lim() if self.reference else None
        for batch in self.args.batch_sizes:
            mel = mel_batch(batch, frames)
            seconds, _ = self.time(lambda: griffin_lim(mel, AUDIO, n_iters=GRIFFIN_LIM_ITERS))
            row = Row("Griffin-Lim", f"{GRIFFIN_LIM_ITERS} iterations", batch, seconds, batch * frames)
            if reference is not None:
                row.reference_seconds, _ = self.time(lambda: reference(mel))
            self.add(row)

    # -- pipeline --------------------------------------------------------------------------------------
    def pipeline(self) -> None:
        steps = self.args.pipeline_steps
        for name, t2_cfg, wg_cfg in (("nvidia (Tacotron 2 + WaveGlow 256)", TACOTRON2_CONFIGS["nvidia"],
                                      WAVEGLOW_CONFIGS["256"]),
                                     ("small (Tacotron 2 + WaveGlow small)", TACOTRON2_CONFIGS["small"],
                                      WAVEGLOW_CONFIGS["small"])):
            t2, wg = build_tacotron2(t2_cfg, steps), build_waveglow(wg_cfg)
            ref = None
            if self.reference:
                ref_t2, ref_wg = self.reference.tacotron2(t2), self.reference.waveglow(wg)
                with torch.random.fork_rng(devices=[]), torch.no_grad():
                    ref_denoiser = self.reference.Denoiser(ref_wg).eval()
                ref = (ref_t2, ref_wg, ref_denoiser)
            wg.remove_weightnorm()
            with torch.random.fork_rng(devices=[]), torch.no_grad():
                denoiser = Denoiser(wg).eval()
            frames = steps * t2_cfg.n_frames_per_step
            for batch in self.args.batch_sizes:
                text, lengths = text_batch(batch)
                flops = tacotron2_flops(t2_cfg, lengths.tolist(), steps) + batch * waveglow_flops(wg_cfg, frames)

                def ours() -> torch.Tensor:
                    mel = t2.infer(text, lengths)[0]
                    return denoiser(wg.infer(mel, sigma=SIGMA), strength=DENOISER_STRENGTH)
                seconds, out = self.time(ours)
                row = Row("Pipeline", name, batch, seconds, batch * frames, flops)
                if ref is not None:
                    def theirs() -> torch.Tensor:
                        mel = ref[0].infer(text, lengths)[0]
                        return ref[2](ref[1].infer(mel, sigma=SIGMA), strength=DENOISER_STRENGTH)
                    row.reference_seconds, ref_out = self.time(Reference.quiet(theirs))
                    row.error, row.error_against = rel_err(out, ref_out), "reference"
                self.add(row)


    # -- streaming latency ------------------------------------------------------------------------------
    def streaming(self) -> None:
        """Time from a request for PARAGRAPH to its first audio, with the default voice and its own vocoder, as
        `Synthesizer.stream_audio` delivers it (first sentence decoded alone; a HiFi-GAN sends its first 16 frames
        first, other vocoders the whole sentence). A voice without a HiFi-GAN also gets a row with a V1 of random
        weights (speed only)."""
        from tacoglow.errors import TacoglowError
        from tacoglow.hub import choose_checkpoints
        from tacoglow.synthesizer import HiFiGANVocoder, Synthesizer

        try:
            tacotron2, waveglow, hifigan = choose_checkpoints()
        except (TacoglowError, FileNotFoundError, RuntimeError, ValueError) as error:
            self.notes.append(f"Streaming latency: skipped, no default voice ({error}).")
            return
        words = len(PARAGRAPH.split(". ")[0].split())
        extra = [] if hifigan is not None else ["torch, hifigan"]
        for backend in [*self.args.backends, *extra]:
            if backend == "torch, hifigan":
                synth = Synthesizer.from_checkpoints(tacotron2)
                torch.manual_seed(SEED)
                synth = Synthesizer(synth.tacotron2, HiFiGANVocoder(HiFiGAN(HiFiGANConfig.v1()), audio=synth.audio),
                                    synthesis=synth.synthesis, audio=synth.audio)
            else:  # a voice's int8 HiFi-GAN runs in fp32 on ONNX Runtime (from_checkpoints falls back)
                synth = Synthesizer.from_checkpoints(tacotron2, waveglow, hifigan=hifigan, backend=backend)
            first_times, totals, first_audio = [], [], 0.0
            for i in range(self.args.repeats + 1):  # the first run warms up and is not counted
                start = time.perf_counter()
                pieces = iter(synth.stream_audio(PARAGRAPH, seed=SEED))
                first = next(pieces)
                first_at = time.perf_counter() - start
                rest = list(pieces)
                total = time.perf_counter() - start
                if i:
                    first_times.append(first_at)
                    totals.append(total)
                sentences = [c.result for c in [first, *rest] if c.result is not None]
                first_audio = sentences[0].audio.numel() / AUDIO.sampling_rate
                audio = sum(r.audio.numel() for r in sentences) / AUDIO.sampling_rate
            vocoder = getattr(synth.vocoder, "name", type(synth.vocoder).__name__)
            self.latency.append(dict(voice=str(tacotron2), vocoder=vocoder, backend=backend,
                                     first_audio_s=statistics.median(first_times),
                                     whole_paragraph_s=statistics.median(totals), first_sentence_words=words,
                                     first_sentence_audio_s=first_audio, paragraph_audio_s=audio))


# ------------------------------------------------------------------------------------------------ output

def _fmt(x: float | None, spec: str) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def table(rows: list[Row], rate: float) -> str:
    header = ["model", "config", "batch", "s", "RTF", "x real time", "mel frames/s", "samples/s",
              "of matmul rate", "reference s", "speed-up", "rel. err (vs)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        speed_up = r.reference_seconds / r.seconds if r.reference_seconds else None
        err = f"{r.error:.1e} ({r.error_against})" if r.error is not None and not math.isnan(r.error) else "-"
        cells = [r.section, r.name, str(r.batch), _fmt(r.seconds, ".3f"), _fmt(r.seconds / r.audio_seconds, ".3f"),
                 _fmt(r.audio_seconds / r.seconds, ".2f"), _fmt(r.frames / r.seconds, ".0f"),
                 _fmt(r.frames * AUDIO.hop_length / r.seconds, ".0f"),
                 _fmt(r.flops / r.seconds / 1e9 / rate if r.flops else None, ".0%"),
                 _fmt(r.reference_seconds, ".3f"), _fmt(speed_up, ".2f") + ("x" if speed_up else ""), err]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


VOICE_SENTENCE = "Printing, in the only sense with which we are at present concerned, differs from most arts."


def voice_mel() -> torch.Tensor:
    """The bundled voice's Tacotron 2 mel of `VOICE_SENTENCE`, (1, n_mel, frames), seeded."""
    voice = Path(__file__).resolve().parents[1] / "tacoglow" / "voices" / "default" / "tacotron2.pt"
    synthesizer = Synthesizer.from_checkpoints(voice)
    generator = torch.Generator().manual_seed(SEED)
    result = synthesizer.synthesize_ids([synthesizer.text_to_ids(VOICE_SENTENCE)], [generator])[0]
    return result.mel.unsqueeze(0).float()


def main(argv: list[str] | None = None) -> None:
    avoid_amx()  # as the command line does, before torch's first oneDNN operation
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    parser.add_argument("--reference", metavar="DIR", help="NVIDIA DLE PyTorch/SpeechSynthesis/Tacotron2 folder")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[1, 4], choices=[1, 2, 3, 4])
    parser.add_argument("--precisions", nargs="+", choices=PRECISIONS, default=list(PRECISIONS),
                        help="Tacotron 2 decoder weight precisions (fp32 is exact)")
    parser.add_argument("--waveglow-configs", nargs="+", choices=list(WAVEGLOW_CONFIGS),
                        default=list(WAVEGLOW_CONFIGS))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per row (after 1 warm-up run)")
    parser.add_argument("--steps", type=int, default=150, help="Tacotron 2 decoder steps")
    parser.add_argument("--waveglow-frames", type=int, default=32, help="mel frames per WaveGlow item")
    parser.add_argument("--griffin-lim-frames", type=int, default=32)
    parser.add_argument("--hifigan-frames", type=int, default=172, help="mel frames per HiFi-GAN item (2 s)")
    parser.add_argument("--hifigan-reference", metavar="DIR", help="a jik876/hifi-gan checkout (its models.py)")
    parser.add_argument("--hifigan-bf16", action="store_true", help="also time HiFi-GAN in bfloat16 (with its error)")
    parser.add_argument("--hifigan-int8", action="store_true", help="also time HiFi-GAN in int8 (with its error)")
    parser.add_argument("--hifigan-checkpoint", metavar="PATH",
                        help="a trained V1 generator (e.g. UNIVERSAL_V1) for the reduced precisions' real-mel error")
    parser.add_argument("--pipeline-steps", type=int, default=32, help="decoder steps in the pipeline rows")
    parser.add_argument("--backends", nargs="+", choices=["torch", "onnx"],
                        default=["torch", "onnx"] if onnxruntime_available() else ["torch"],
                        help="engines timed besides torch's eager path (default: torch and, when installed, onnx)")
    parser.add_argument("--json", metavar="PATH", help="also write the rows and machine facts as JSON")
    args = parser.parse_args(argv)
    if "onnx" in args.backends and not onnxruntime_available():
        raise SystemExit("--backends onnx needs onnxruntime: pip install 'tacoglow[export]'")
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    reference = Reference(args.reference) if args.reference else None

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    probe = LoadMeter()
    time.sleep(1.0)
    busy_before = probe.others()
    if busy_before is not None and busy_before + threads > (os.cpu_count() or 1) + 0.5:
        print(f"warning: other processes keep {busy_before:.1f} of {os.cpu_count()} CPUs busy; with {threads} torch "
              "threads the timings will be slow and erratic (a thread waiting for a busy CPU stalls the others). "
              "Use --threads 1 beside other work, or an idle machine.", file=sys.stderr)
    meter = LoadMeter()
    rates = matmul_rates()
    rate = max(rates.values())
    print(f"measuring on {_cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{threads} threads ...", file=sys.stderr)
    bench = Bench(args, reference)
    started = time.perf_counter()
    for section in SECTIONS:
        if section in args.only:
            getattr(bench, section.replace("-", "_"))()
    elapsed = time.perf_counter() - started
    others = meter.others()

    print(f"## Inference speed: {_cpu_name()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
          f"{threads} torch thread{'s' if threads != 1 else ''}\n")
    print(f"- Matrix-multiply rate (1024^3 fp32, {threads} threads): "
          + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in rates.items())
          + f"; 'of matmul rate' is relative to {rate:.0f} GFLOP/s.")
    load = f"load average {load_before[0]:.2f} before the run" if load_before else "load average unknown"
    if busy_before is not None:
        load += f" ({busy_before:.2f} CPUs busy just before it)"
    busy = f"; other processes kept {others:.2f} CPUs busy on average during it" if others is not None else ""
    print(f"- Machine load: {load}{busy}. Timings taken beside other work are not comparable with idle ones.")
    print(f"- Median of {args.repeats} runs after 1 warm-up; Tacotron 2: {args.steps} decoder steps (gate disabled), "
          f"{len(SENTENCES[0])}-character sentence at batch 1; WaveGlow (sigma {SIGMA}): {args.waveglow_frames} "
          f"frames per item; Griffin-Lim: {args.griffin_lim_frames} frames; pipeline: {args.pipeline_steps} decoder "
          f"steps, WaveGlow, denoiser {DENOISER_STRENGTH}. Audio seconds = frames x {AUDIO.hop_length} / "
          f"{AUDIO.sampling_rate}, all items.")
    if reference:
        print(f"- Reference: {reference.path}, same weights, inputs and seeds.")
    print(f"- Whole run: {elapsed:.0f} s.\n")
    print(table(bench.rows, rate))
    if bench.latency:
        print(f"\n### Time to first audio: {len(PARAGRAPH.split('. '))}-sentence paragraph, first sentence "
              f"{bench.latency[0]['first_sentence_words']} words, default voice, median of {args.repeats} after 1 "
              "warm-up\n")
        print("| backend | vocoder | first audio s | whole paragraph s | first sentence audio s | paragraph audio s |")
        print("|---|---|---|---|---|---|")
        for x in bench.latency:
            print(f"| {x['backend']} | {x['vocoder']} | {x['first_audio_s']:.3f} | {x['whole_paragraph_s']:.3f} | "
                  f"{x['first_sentence_audio_s']:.2f} | {x['paragraph_audio_s']:.2f} |")
    for note in bench.notes:
        print(f"\n{note}")
    if args.json:
        facts = dict(cpu=_cpu_name(), cpus=os.cpu_count(), torch=torch.__version__, threads=threads,
                     matmul_gflops=rates, load_average_before=load_before, other_busy_cpus=others,
                     busy_cpus_before=busy_before, floor=getattr(bench, "floor", None), args=vars(args),
                     latency=bench.latency)
        Path(args.json).write_text(json.dumps(dict(machine=facts, rows=[dataclasses.asdict(r) for r in bench.rows]),
                                              indent=2))


if __name__ == "__main__":
    main()
