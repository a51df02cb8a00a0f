"""Tacotron 2, WaveGlow and HiFi-GAN as ONNX and TorchScript graphs, and an ONNX Runtime backend for generation.

Graphs (fp32, eval mode; batch and time axes are dynamic):

    encoder             ids (B, T_in) int64, items of one length -> memory (B, T_in, C)
    memory_projection   memory (B, T_in, C) -> processed_memory (B, attention_dim, T_in), the attention's
                        memory term, computed once per utterance
    decoder_step        frame (B, n_mel * r), keep (2, B, prenet_dim), the 7 state tensors (STATE_NAMES),
                        memory, processed_memory, mask (B, T_in) bool (True on padding)
                        -> out (B, n_mel * r + 1) (the frames, then the gate logit), the 7 new state tensors
    postnet             mel (B, n_mel, T), keep (B, 1, T) -> mel_postnet (B, n_mel, T)
    waveglow            mel (B, n_mel, T), z (B, n_group, 256 T / n_group) -> audio (B, 256 T)
    hifigan             mel (B, n_mel, T) -> audio (B, 1, hop_length T)

Randomness is an input, never drawn inside a graph: the prenet's dropout masks (``keep``, scaled 0/2) and
WaveGlow's noise (``z``, already multiplied by sigma). The caller draws them from torch generators exactly
as the eager models do, so a graph run reproduces the eager result to float rounding (ONNX Runtime's own
random numbers would differ). The decoding loop (stopping rule, caps, masks) stays in Python
(:meth:`tacoglow.Tacotron2.infer_detailed` with ``runtime=``), so both engines share it.
"""
from __future__ import annotations

import copy
import io
import json
import warnings
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .config import ConfigError
from .decoding import DecoderKernels, DecoderState, DecoderStep, decoder_step, padding_mask
from .errors import TacoglowError
from .hifigan import HiFiGAN
from .tacotron2 import Tacotron2
from .waveglow import WaveGlow


class ExportError(TacoglowError, RuntimeError):
    """Export or the ONNX backend cannot run here (a missing package); the message names the install."""

__all__ = ["ExportError", "STATE_NAMES", "tacotron2_graphs", "waveglow_graphs", "export_onnx", "export_torchscript",
           "OnnxRuntimeTacotron2", "OnnxTacotron2", "OnnxWaveGlow", "onnxruntime_available"]

STATE_NAMES = DecoderState._fields
# ONNX opset: 17 has every operator used here and is read by every ONNX Runtime of the last years.
OPSET = 17


class Graph:
    """One exportable computation: a module in eval mode, example inputs, names and dynamic axes."""

    def __init__(self, module: nn.Module, inputs: tuple[Tensor, ...], input_names: list[str],
                 output_names: list[str], dynamic_axes: dict[str, dict[int, str]]):
        self.module = module.eval()
        self.inputs, self.input_names, self.output_names = inputs, input_names, output_names
        self.dynamic_axes = dynamic_axes


# -------------------------------------------------------------------------------------------- Tacotron 2

class _EncoderGraph(nn.Module):
    def __init__(self, model: Tacotron2):
        super().__init__()
        self.embedding, self.encoder = model.embedding, model.encoder

    def forward(self, ids: Tensor) -> Tensor:
        # Items of one length, so no packing: the BiLSTM over the whole sequence is what the packed
        # sequence computes for an unpadded item.
        x = self.embedding(ids).transpose(1, 2)  # (B, C, T_in)
        for conv in self.encoder.convolutions:
            x = F.relu(conv(x))  # eval: no dropout
        memory, _ = self.encoder.lstm(x.transpose(1, 2))
        return memory  # (B, T_in, C)


class _MemoryProjectionGraph(nn.Module):
    def __init__(self, kernels: DecoderKernels):
        super().__init__()
        self.kernels = kernels

    def forward(self, memory: Tensor) -> Tensor:
        return self.kernels.process_memory(memory)  # (B, A, T_in), doubled (see DecoderKernels)


class _DecoderStepGraph(nn.Module):
    def __init__(self, kernels: DecoderKernels):
        super().__init__()
        self.kernels = kernels

    def forward(self, frame: Tensor, keep: Tensor, attention_hidden: Tensor, attention_cell: Tensor,
                decoder_hidden: Tensor, decoder_cell: Tensor, attention_weights: Tensor,
                attention_weights_cum: Tensor, attention_context: Tensor, memory: Tensor,
                processed_memory: Tensor, mask: Tensor) -> tuple[Tensor, ...]:
        state = DecoderState(attention_hidden, attention_cell, decoder_hidden, decoder_cell, attention_weights,
                             attention_weights_cum, attention_context)
        out, new = decoder_step(self.kernels, frame, keep, state, memory, processed_memory, mask)
        return (out,) + tuple(new)


class _PostnetGraph(nn.Module):
    def __init__(self, model: Tacotron2):
        super().__init__()
        self.postnet = model.postnet

    def forward(self, mel: Tensor, keep: Tensor) -> Tensor:
        return mel + self.postnet(mel, keep)


def tacotron2_graphs(model: Tacotron2) -> dict[str, Graph]:
    """The four Tacotron 2 graphs, sharing ``model``'s parameters (copied into the graph on export)."""
    if model.training:
        raise ValueError("export a Tacotron 2 in eval mode: call model.eval() first")
    _check_cpu_fp32(model)
    cfg = model.config
    kernels = DecoderKernels(model.decoder, "fp32", portable=True)
    weight = model.embedding.weight
    g = torch.Generator().manual_seed(0)  # example inputs from a local generator: the global one is left alone
    b, t_in = 2, 7
    frame_dim = cfg.n_mel_channels * cfg.n_frames_per_step
    state = model.decoder.initial_state(weight.new_zeros(b, t_in, cfg.encoder_embedding_dim))
    state = DecoderState(*(torch.rand(s.shape, generator=g) for s in state))
    memory = torch.randn(b, t_in, cfg.encoder_embedding_dim, generator=g)
    processed = kernels.process_memory(memory)
    mask = padding_mask(torch.tensor([t_in, t_in - 2]), t_in)
    keep = (torch.rand(2, b, cfg.prenet_dim, generator=g) < 0.5).float() * 2.0
    batch_time = {0: "batch", 1: "time_in"}
    step_axes = {name: {0: "batch"} for name in ("frame", "out") + STATE_NAMES + tuple(f"new_{n}" for n in STATE_NAMES)}
    for name in ("attention_weights", "attention_weights_cum", "new_attention_weights",
                 "new_attention_weights_cum"):
        step_axes[name] = {0: "batch", 1: "time_in"}
    step_axes.update(keep={1: "batch"}, memory=batch_time, processed_memory={0: "batch", 2: "time_in"},
                     mask=batch_time)
    mel = torch.randn(b, cfg.n_mel_channels, 9, generator=g)
    ids = torch.randint(1, cfg.n_symbols, (b, t_in), generator=g)
    return {
        "encoder": Graph(_EncoderGraph(model), (ids,), ["ids"], ["memory"],
                         {"ids": batch_time, "memory": batch_time}),
        "memory_projection": Graph(_MemoryProjectionGraph(kernels), (memory,), ["memory"], ["processed_memory"],
                                   {"memory": batch_time, "processed_memory": {0: "batch", 2: "time_in"}}),
        "decoder_step": Graph(_DecoderStepGraph(kernels),
                              (weight.new_zeros(b, frame_dim), keep) + tuple(state) + (memory, processed, mask),
                              ["frame", "keep", *STATE_NAMES, "memory", "processed_memory", "mask"],
                              ["out"] + [f"new_{n}" for n in STATE_NAMES], step_axes),
        "postnet": Graph(_PostnetGraph(model), (mel, torch.ones(b, 1, 9)), ["mel", "keep"],
                         ["mel_postnet"], {"mel": {0: "batch", 2: "time"}, "keep": {0: "batch", 2: "time"},
                                           "mel_postnet": {0: "batch", 2: "time"}}),
    }


# -------------------------------------------------------------------------------------------- WaveGlow

class _WaveGlowGraph(nn.Module):
    """WaveGlow.infer with the latent given (z = sigma * noise), on plain convolutions."""

    def __init__(self, waveglow: WaveGlow):
        super().__init__()
        self.waveglow = copy.deepcopy(waveglow).remove_weightnorm().eval()
        for k, conv in enumerate(self.waveglow.convinv):
            inverse_weight = cast(Callable[[], Tensor], conv.inverse_weight)  # of WaveGlow's invertible 1x1 conv
            self.register_buffer(f"inverse_{k}", inverse_weight().detach().clone())

    def forward(self, mel: Tensor, z: Tensor) -> Tensor:
        wg, cfg = self.waveglow, self.waveglow.config
        cond = wg._group_mel(mel, mel.size(2) * 256)  # (B, n_mel * g, 32 T) for the defaults
        x = z[:, cfg.n_group - cfg.remaining_channels(cfg.n_flows - 1):]
        for k in reversed(range(cfg.n_flows)):
            half = x.size(1) // 2
            x_0, x_1 = x[:, :half], x[:, half:]
            out = wg.WN[k](x_0, cond)
            x_1 = (x_1 - out[:, :half]) / torch.exp(out[:, half:])
            x = F.conv1d(torch.cat([x_0, x_1], 1), getattr(self, f"inverse_{k}"))
            if cfg.early_exit(k):
                start = cfg.n_group - x.size(1) - cfg.n_early_size
                x = torch.cat([z[:, start:start + cfg.n_early_size], x], 1)
        return x.transpose(1, 2).reshape(x.size(0), -1)


def waveglow_graphs(waveglow: WaveGlow) -> dict[str, Graph]:
    _check_cpu_fp32(waveglow)
    cfg = waveglow.config
    frames = 3
    g = torch.Generator().manual_seed(0)
    mel = torch.randn(1, cfg.n_mel_channels, frames, generator=g)
    z = torch.randn(1, cfg.n_group, frames * 256 // cfg.n_group, generator=g)
    return {"waveglow": Graph(_WaveGlowGraph(waveglow), (mel, z), ["mel", "z"], ["audio"],
                              {"mel": {0: "batch", 2: "frames"}, "z": {0: "batch", 2: "groups"},
                               "audio": {0: "batch", 1: "samples"}})}


# -------------------------------------------------------------------------------------------- HiFi-GAN

class _HiFiGANGraph(nn.Module):
    """The generator's modules (weight norm folded): traced, `HiFiGAN.forward` runs them, not `infer`'s
    oneDNN kernels, which ONNX has no operators for."""

    def __init__(self, hifigan: HiFiGAN):
        super().__init__()
        self.hifigan = copy.deepcopy(hifigan).remove_weight_norm().eval()

    def forward(self, mel: Tensor) -> Tensor:
        return self.hifigan(mel)  # (B, 1, frames * hop_length)


def hifigan_graphs(hifigan: HiFiGAN) -> dict[str, Graph]:
    _check_cpu_fp32(hifigan)
    mel = torch.randn(1, hifigan.config.n_mel_channels, 8, generator=torch.Generator().manual_seed(0))
    return {"hifigan": Graph(_HiFiGANGraph(hifigan), (mel,), ["mel"], ["audio"],
                             {"mel": {0: "batch", 2: "frames"}, "audio": {0: "batch", 2: "samples"}})}


def _check_cpu_fp32(model: nn.Module) -> None:
    weight = next(model.parameters())
    if weight.device.type != "cpu" or weight.dtype != torch.float32:
        raise ValueError(f"graphs are exported from an fp32 model on the CPU, not {weight.dtype} on "
                         f"{weight.device}: call model.float().cpu() first")


def graphs_of(model: Tacotron2 | WaveGlow | HiFiGAN) -> dict[str, Graph]:
    if isinstance(model, Tacotron2):
        return tacotron2_graphs(model)
    if isinstance(model, WaveGlow):
        return waveglow_graphs(model)
    if isinstance(model, HiFiGAN):
        return hifigan_graphs(model)
    raise TypeError(f"can export a Tacotron2, a WaveGlow or a HiFiGAN, not {type(model).__name__}")


# -------------------------------------------------------------------------------------------- export

def onnx_bytes(graph: Graph) -> bytes:
    """The graph as a serialized ONNX model (weights inside)."""
    try:
        import onnx  # noqa: F401  (the exporter writes through it)
    except ImportError:
        raise ExportError("ONNX export needs the onnx package: pip install 'tacoglow[export]'") from None
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation and tracer notes
        # The stubs type f as a path, but the TorchScript exporter (dynamo=False) also writes to a file object.
        torch.onnx.export(graph.module, graph.inputs, buffer, input_names=graph.input_names,  # type: ignore[arg-type]
                          output_names=graph.output_names, dynamic_axes=graph.dynamic_axes, opset_version=OPSET,
                          do_constant_folding=True, dynamo=False)
    return buffer.getvalue()


def _trace(graph: Graph) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.trace(graph.module, graph.inputs, check_trace=False)


_KINDS: dict[str, type] = {"tacotron2": Tacotron2, "waveglow": WaveGlow, "hifigan": HiFiGAN}


def _manifest(model: Tacotron2 | WaveGlow | HiFiGAN, graphs: dict[str, Graph], files: dict[str, str]) -> dict[str, Any]:
    return {"format": "tacoglow-graphs", "version": 1,
            "model": next(name for name, kind in _KINDS.items() if isinstance(model, kind)),
            "config": model.config.to_dict(),
            "graphs": {name: {"file": files[name], "inputs": g.input_names, "outputs": g.output_names}
                       for name, g in graphs.items()}}


def _write(model: Tacotron2 | WaveGlow | HiFiGAN, directory: str | Path, suffix: str, manifest_suffix: str,
           save: Callable[[Graph, Path], object]) -> dict[str, Path]:
    """Each graph saved as ``<name><suffix>``, then the manifest ``<model><manifest_suffix>``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    graphs = graphs_of(model)
    paths = {}
    for name, graph in graphs.items():
        paths[name] = directory / f"{name}{suffix}"
        save(graph, paths[name])
    manifest = _manifest(model, graphs, {n: p.name for n, p in paths.items()})
    (directory / f"{manifest['model']}{manifest_suffix}").write_text(json.dumps(manifest, indent=2) + "\n")
    return paths


def export_onnx(model: Tacotron2 | WaveGlow | HiFiGAN, directory: str | Path) -> dict[str, Path]:
    """Writes ``<graph>.onnx`` files and ``<model>.json`` (config, input and output names) to ``directory``."""
    return _write(model, directory, ".onnx", ".json", lambda graph, path: path.write_bytes(onnx_bytes(graph)))


def export_torchscript(model: Tacotron2 | WaveGlow | HiFiGAN, directory: str | Path) -> dict[str, Path]:
    """Writes traced ``<graph>.ts.pt`` TorchScript archives (same inputs and outputs as the ONNX graphs) and
    ``<model>.torchscript.json``."""
    return _write(model, directory, ".ts.pt", ".torchscript.json", lambda graph, path: _trace(graph).save(str(path)))


# -------------------------------------------------------------------------------------------- ONNX Runtime

def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def _session(model: bytes, threads: int | None):
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ExportError("the ONNX backend needs onnxruntime and onnx: pip install 'tacoglow[export]'") from e
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only
    # Idle pools must not spin: torch and the Python loop run between the calls, on the same cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _numpy(x: Tensor) -> np.ndarray:
    return np.ascontiguousarray(x.detach().cpu().numpy())


class OnnxRuntimeTacotron2:
    """Runs Tacotron 2's encoder, decoder step and postnet graphs on ONNX Runtime (CPU): a
    :class:`~tacoglow.decoding.Tacotron2Runtime`.

    Pass it as ``runtime=`` to :meth:`Tacotron2.infer_detailed`, which keeps the loop, masks and stopping.
    """

    def __init__(self, model: Tacotron2, threads: int | None = None):
        self.sessions = {name: _session(onnx_bytes(g), threads) for name, g in tacotron2_graphs(model).items()}

    def _run(self, name: str, **feeds: np.ndarray) -> list[np.ndarray]:
        return self.sessions[name].run(None, feeds)

    def encode(self, sequences: Tensor, lengths: Tensor) -> Tensor:
        """Each item alone -> (B, max(lengths), C), zero past each length."""
        outputs = [torch.from_numpy(self._run("encoder", ids=_numpy(sequences[i:i + 1, :int(n)].long()))[0])
                   for i, n in enumerate(lengths.tolist())]
        memory = outputs[0].new_zeros(len(outputs), int(lengths.max()), outputs[0].size(2))
        for i, m in enumerate(outputs):
            memory[i, :m.size(1)] = m[0]
        return memory

    def start_decoding(self, memory: Tensor, mask: Tensor) -> DecoderStep:
        """The decoder_step graph for this memory (B, T_in, C) and mask (B, T_in); its memory projection
        runs once, here."""
        feeds = {"memory": _numpy(memory), "mask": _numpy(mask)}
        feeds["processed_memory"] = self._run("memory_projection", memory=feeds["memory"])[0]
        session = self.sessions["decoder_step"]

        def step(frame: Tensor, keep: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
            feeds.update(zip(STATE_NAMES, map(_numpy, state)), frame=_numpy(frame), keep=_numpy(keep))
            out, *new = session.run(None, feeds)
            return torch.from_numpy(out), DecoderState(*map(torch.from_numpy, new))

        return step

    def postnet(self, mel: Tensor, keep: Tensor | None) -> Tensor:
        keep = torch.ones_like(mel[:, :1]) if keep is None else keep
        return torch.from_numpy(self._run("postnet", mel=_numpy(mel), keep=_numpy(keep))[0])


class OnnxTacotron2:
    """A Tacotron 2 that generates on ONNX Runtime: the same ``config``/``decoder``/``infer``/``infer_detailed``
    as :class:`Tacotron2` (fp32 only; batches with padding need per-item generators), so the
    :class:`~tacoglow.Synthesizer` takes it in place of the model. The decoding loop is the model's, so
    ``decoder.max_decoder_steps`` and ``decoder.gate_threshold`` apply here too."""

    backend = "onnx"

    def __init__(self, model: Tacotron2, threads: int | None = None):
        self.model = model.eval()
        self.config = model.config
        self.runtime = OnnxRuntimeTacotron2(self.model, threads)

    @property
    def decoder(self) -> nn.Module:
        """The model's decoder, for NVIDIA's settings ``max_decoder_steps`` and ``gate_threshold``."""
        return self.model.decoder

    def eval(self) -> "OnnxTacotron2":
        return self

    def to(self, device: str | torch.device) -> "OnnxTacotron2":
        if torch.device(device).type != "cpu":
            raise ConfigError(f"the ONNX backend runs on the CPU, not {device}; use the torch backend there")
        return self

    def infer_detailed(self, sequences: Tensor, lengths: Tensor, generator: Any = None,
                       max_decoder_steps: int | Tensor | None = None, *, precision: str = "fp32"):
        return self.model.infer_detailed(sequences, lengths, generator, max_decoder_steps, precision=precision,
                                         runtime=self.runtime)

    def generate(self, sequences: Tensor, lengths: Tensor, generator: Any = None,
                 max_decoder_steps: int | Tensor | None = None, *, precision: str = "fp32"):
        return self.model.generate(sequences, lengths, generator, max_decoder_steps, precision=precision,
                                   runtime=self.runtime)

    def postnet_mel(self, mel: Tensor) -> Tensor:
        """mel (B, n_mel, T) before the postnet -> after it, the residual added (for tacoglow.streaming)."""
        return self.runtime.postnet(mel, None)

    def infer(self, sequences: Tensor, lengths: Tensor, generator: Any = None, *,
              precision: str = "fp32") -> tuple[Tensor, Tensor, Tensor]:
        out = self.infer_detailed(sequences, lengths, generator, precision=precision)
        return out.mel_postnet, out.mel_lengths, out.alignments


class OnnxWaveGlow:
    """WaveGlow inference on ONNX Runtime; noise drawn by torch (:meth:`WaveGlow.sample_latent`)."""

    def __init__(self, waveglow: WaveGlow, threads: int | None = None):
        self.waveglow = waveglow
        self.session = _session(onnx_bytes(waveglow_graphs(waveglow)["waveglow"]), threads)

    @torch.no_grad()
    def infer(self, mel: Tensor, sigma: float = 1.0, generator: torch.Generator | None = None) -> Tensor:
        """As :meth:`WaveGlow.infer`: (B, n_mel, T) -> (B, 256 T), same noise for the same generator."""
        z = self.waveglow.sample_latent(mel.size(0), mel.size(2), generator, like=mel.float())
        audio = self.session.run(None, {"mel": _numpy(mel.float()), "z": _numpy(sigma * z)})[0]
        return torch.from_numpy(audio)


class OnnxHiFiGAN:
    """HiFi-GAN inference on ONNX Runtime: the engine of a :class:`~tacoglow.synthesizer.HiFiGANVocoder`."""

    def __init__(self, hifigan: HiFiGAN, threads: int | None = None):
        self.hifigan = hifigan
        self.session = _session(onnx_bytes(hifigan_graphs(hifigan)["hifigan"]), threads)

    @torch.no_grad()
    def infer(self, mel: Tensor) -> Tensor:
        """As :meth:`HiFiGAN.infer`: (B, n_mel, T) -> (B, 1, T * hop_length)."""
        return torch.from_numpy(self.session.run(None, {"mel": _numpy(mel.float())})[0])
