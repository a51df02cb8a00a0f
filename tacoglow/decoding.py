"""Tacotron 2's decoder at generation: its state, the step kernels, the prenet's dropout masks, and the
runtime seam the decoding loop (``Tacotron2.infer_detailed``) calls.

    DecoderState     the 7 tensors carried from one decoder step to the next
    DecoderRuntime   what runs the steps (a Protocol): :class:`DecoderKernels` (torch, eval mode), the
                     decoder module itself (training mode) and ``tacoglow.export.OnnxRuntimeTacotron2``
    Tacotron2Runtime a DecoderRuntime that also encodes and runs the postnet: another engine for the whole
                     of ``Tacotron2.infer_detailed(runtime=...)`` (ONNX Runtime)
    DecoderKernels   the decoder's parameters rearranged for fast products
    decoder_step     one step over DecoderKernels; the ONNX and TorchScript decoder_step graphs record it
    CUDAGraphSteps   a DecoderRuntime that replays decoder_step as a CUDA graph (opt-in, CUDA only)
    PrenetMasks      the prenet's dropout masks, drawn from the caller's generators as the reference does

At batch 1 a decoder step multiplies a few vectors by ~18 M weights (NVIDIA's sizes) and is bound by
streaming those weights from memory, so generation uses the same parameters rearranged once: each LSTM
cell's two matrices side by side (one product instead of two), the projection and gate layers stacked, the
location conv and its dense layer composed into one conv, large matrices in the layout the CPU library
reads fastest (:class:`tacoglow.ops.PackedLinear`). Results equal the module path up to float rounding.

Shapes: B batch, T_in text length, C encoder_embedding_dim, A attention_dim, P prenet_dim,
n_mel * r the frames of one step (n_mel_channels * n_frames_per_step).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Protocol, Sequence, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .ops import PackedLinear

__all__ = ["PRENET_DROPOUT", "MASK_CHUNK", "DecoderState", "DecoderStep", "DecoderRuntime", "Tacotron2Runtime",
           "DecoderKernels", "decoder_step", "CUDAGraphSteps", "PrenetMasks", "keep_mask", "padding_mask", "grow"]

# The prenet keeps dropout on at inference too (paper, section 2.2); NVIDIA hard-codes p = 0.5.
PRENET_DROPOUT = 0.5
# Decoder steps whose prenet masks are drawn at once (see PrenetMasks).
MASK_CHUNK = 32


class DecoderState(NamedTuple):
    """The recurrent state of the decoder between steps; zeros before the first step."""

    attention_hidden: Tensor  # (B, attention_rnn_dim)
    attention_cell: Tensor
    decoder_hidden: Tensor  # (B, decoder_rnn_dim)
    decoder_cell: Tensor
    attention_weights: Tensor  # (B, T_in)
    attention_weights_cum: Tensor  # (B, T_in)
    attention_context: Tensor  # (B, C)


class DecoderStep(Protocol):
    def __call__(self, frame: Tensor, keep: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """One generation step: frame (B, n_mel * r), the previous output (zeros at the start); keep
        (2, B, P), the scaled keep-masks of prenet layers 0 and 1 (see PrenetMasks) -> out (B, n_mel * r + 1),
        the frame then the gate logit, and the new state."""
        ...


class DecoderRuntime(Protocol):
    """Runs the decoder's steps; the loop, stopping rule, caps and masks stay with the caller."""

    def start_decoding(self, memory: Tensor, mask: Tensor) -> DecoderStep:
        """The step function for one batch: memory (B, T_in, C), the encoder's output; mask (B, T_in) bool,
        True on padding. Work that depends only on the memory is done here, once per utterance."""
        ...


class Tacotron2Runtime(DecoderRuntime, Protocol):
    """Another engine for :meth:`Tacotron2.infer_detailed` (``runtime=``), such as ONNX Runtime
    (``tacoglow.export.OnnxRuntimeTacotron2``): it runs the encoder, the decoder steps and the postnet,
    while sorting, masks, stopping and caps stay in the model's decoding loop."""

    def encode(self, sequences: Tensor, lengths: Tensor) -> Tensor:
        """sequences (B, T_in) int64, lengths (B,) -> memory (B, max(lengths), C), each item encoded alone."""
        ...

    def postnet(self, mel: Tensor, keep: Tensor | None) -> Tensor:
        """mel (B, n_mel, T), keep (B, 1, T) 0/1 or None -> mel_postnet (B, n_mel, T), the residual added."""
        ...


def padding_mask(lengths: Tensor, width: int) -> Tensor:
    """(B,) lengths -> (B, width) bool, True on padded positions."""
    return torch.arange(width, device=lengths.device) >= lengths.unsqueeze(1)


def _draw_keep(shape: Sequence[int], generator: torch.Generator | None, like: Tensor) -> Tensor:
    """Bool keep-mask for p = 0.5, drawn as uniform float64 < 0.5: on CPU this gives exactly the mask of
    ``bernoulli_(0.5)`` that ``F.dropout`` uses in the reference, on any CPU vendor, and accepts a caller's
    generator. Without a generator the default generator of ``like``'s device is used; on CUDA that is the
    reference's own ``F.dropout``, run on ones of ``like``'s dtype: its fused kernel hands Philox numbers to
    elements in an order set by its launch (shape, dtype, device), so only the same kernel on a tensor of the
    reference's shape and dtype draws the reference's mask."""
    if generator is None and like.device.type == "cuda":
        ones = torch.ones(tuple(shape), dtype=like.dtype, device=like.device)
        return F.dropout(ones, PRENET_DROPOUT, training=True) != 0
    device = generator.device if generator is not None else like.device
    return torch.rand(tuple(shape), dtype=torch.float64, device=device, generator=generator) < 0.5


def _scale_keep(keep: Tensor, like: Tensor) -> Tensor:
    """Kept entries scaled by 1 / (1 - p) = 2, in ``like``'s dtype and device."""
    return keep.to(device=like.device, dtype=like.dtype) * (1.0 / (1.0 - PRENET_DROPOUT))


def keep_mask(shape: Sequence[int], like: Tensor, generator: torch.Generator | None) -> Tensor:
    """Dropout mask of ``shape`` for p = 0.5 with kept entries scaled by 2, in ``like``'s dtype/device, drawn
    as the reference's ``F.dropout`` draws it (from the default generator of ``like``'s device without one)."""
    return _scale_keep(_draw_keep(shape, generator, like), like)


def grow(buffer: Tensor, capacity: int) -> Tensor:
    """Extends dim 0 of an output buffer to ``capacity`` rows (new rows uninitialised)."""
    extra = buffer.new_empty((capacity - buffer.size(0),) + tuple(buffer.shape[1:]))
    return torch.cat((buffer, extra), dim=0)


def _fused_lstm_weights(cell: nn.LSTMCell) -> tuple[Tensor, Tensor]:
    """[W_ih | W_hh] and b_ih + b_hh: the cell's gates are then one product with [input, hidden]."""
    return torch.cat((cell.weight_ih, cell.weight_hh), dim=1), cell.bias_ih + cell.bias_hh


def _linear(module: nn.Module, path: str) -> nn.Linear:
    """The ``nn.Linear`` at ``path`` (dotted) in ``module``."""
    return cast(nn.Linear, module.get_submodule(path))


class DecoderKernels:
    """The decoder's parameters arranged for generation (built, and cached, by ``decoder.kernels()``).

    Implements :class:`DecoderRuntime` for eval-mode generation in torch.
    """

    def __init__(self, decoder: nn.Module, precision: str, portable: bool = False):
        """decoder: a Tacotron 2 decoder module (NVIDIA's layout: ``prenet``, ``attention_rnn``,
        ``attention_layer``, ``decoder_rnn``, ``linear_projection``, ``gate_layer``); precision: how the LSTM
        matrices are stored (``tacoglow.ops.PRECISIONS``); portable: fp32 plain products only (for tracing
        and export, see tacoglow.export)."""
        with torch.no_grad():
            prenet = cast(nn.ModuleList, decoder.get_submodule("prenet.layers"))
            self.prenet = [PackedLinear(_linear(layer, "linear_layer").weight, None, portable=portable)
                           for layer in prenet]
            attention_rnn = cast(nn.LSTMCell, decoder.attention_rnn)
            decoder_rnn = cast(nn.LSTMCell, decoder.decoder_rnn)
            self.attention_rnn = PackedLinear(*_fused_lstm_weights(attention_rnn), precision, portable)
            self.decoder_rnn = PackedLinear(*_fused_lstm_weights(decoder_rnn), precision, portable)
            # Attention energies v . tanh(E) are computed as (2 v) . sigmoid(2 E): tanh(x) = 2 sigmoid(2x) - 1,
            # and the constant -sum(v) drops out of the softmax. torch.tanh is ~4x slower than sigmoid on
            # CPU; doubling weights is exact, so only the tanh/sigmoid rounding differs (< 2e-7).
            attention = decoder.get_submodule("attention_layer")
            self.memory_layer = _linear(attention, "memory_layer.linear_layer").weight.detach()  # (A, C)
            self.query = PackedLinear(2.0 * _linear(attention, "query_layer.linear_layer").weight, None,
                                      portable=portable)
            # location_dense(location_conv(w)) is linear in w: one conv (attention_dim, 2, kernel).
            conv = cast(nn.Conv1d, attention.get_submodule("location_layer.location_conv.conv"))
            dense = _linear(attention, "location_layer.location_dense.linear_layer").weight  # (A, n_filters)
            self.location = 2.0 * torch.einsum("af,fck->ack", dense, conv.weight).contiguous()
            self.location_padding = cast(tuple[int, ...], conv.padding)[0]  # an int, (kernel - 1) // 2
            self.v = 2.0 * _linear(attention, "v.linear_layer").weight  # (1, A)
            projection = _linear(decoder, "linear_projection.linear_layer")
            gate = _linear(decoder, "gate_layer.linear_layer")
            self.projection = PackedLinear(torch.cat((projection.weight, gate.weight)),
                                           torch.cat((projection.bias, gate.bias)), portable=portable)
        self.frame_dim = projection.weight.size(0)  # n_mel * r

    def process_memory(self, memory: Tensor) -> Tensor:
        """memory (B, T_in, C) -> the attention's memory term in the layout decoder_step uses: (B, A, T_in),
        doubled (memory_layer(memory) is computed once per utterance, as in the reference)."""
        return (2.0 * F.linear(memory, self.memory_layer)).transpose(1, 2).contiguous()

    def start_decoding(self, memory: Tensor, mask: Tensor) -> DecoderStep:
        processed_memory = self.process_memory(memory)
        step_mask = mask if bool(mask.any()) else None  # no padding: masking is a no-op

        def step(frame: Tensor, keep: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
            return decoder_step(self, frame, keep, state, memory, processed_memory, step_mask)

        return step


def _lstm_cell(gates: Tensor, cell: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 4H) pre-activations (input, forget, cell, output gates, torch's order) and (B, H) cell state ->
    hidden, cell; the elementwise part of ``nn.LSTMCell``, in its order of operations."""
    i, f, g, o = gates.chunk(4, 1)
    cell = (torch.sigmoid(f) * cell).add_(torch.sigmoid(i) * torch.tanh(g))
    return torch.sigmoid(o) * torch.tanh(cell), cell


def _attend(k: DecoderKernels, query_hidden: Tensor, previous: Tensor, cumulative: Tensor, memory: Tensor,
            processed_memory: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """Location-sensitive attention (the model's ``_Attention``) -> context (B, C), weights (B, T_in).

    query_hidden (B, attention_rnn_dim); previous and cumulative attention weights (B, T_in);
    processed_memory: ``k.process_memory(memory)``, (B, A, T_in)."""
    query = k.query(query_hidden).unsqueeze(2)  # (B, A, 1)
    location = F.conv1d(torch.stack((previous, cumulative), 1), k.location, padding=k.location_padding)
    # (query + location) + memory, the reference's order of additions, all doubled (see DecoderKernels).
    energies = torch.matmul(k.v, torch.sigmoid_(location.add_(query).add_(processed_memory))).squeeze(1)
    if mask is not None:
        energies = energies.masked_fill(mask, float("-inf"))
    weights = F.softmax(energies, dim=1)
    return torch.bmm(weights.unsqueeze(1), memory).squeeze(1), weights


def decoder_step(k: DecoderKernels, frame: Tensor, keep: Tensor, s: DecoderState, memory: Tensor,
                 processed_memory: Tensor, mask: Tensor | None) -> tuple[Tensor, DecoderState]:
    """One generation step (eval mode), with the prenet's dropout masks given.

    frame (B, n_mel * r): the previous output (zeros at the start); keep (2, B, P): the scaled
    keep-masks of prenet layers 0 and 1; memory (B, T_in, C); processed_memory:
    ``k.process_memory(memory)``, (B, A, T_in); mask (B, T_in) True on padding, or None when there is none.
    Returns (B, n_mel * r + 1), the frame then the gate logit, and the new state.
    """
    x = F.relu(k.prenet[0](frame)) * keep[0]
    x = F.relu(k.prenet[1](x)) * keep[1]
    h, c = _lstm_cell(k.attention_rnn(torch.cat((x, s.attention_context, s.attention_hidden), 1)),
                      s.attention_cell)
    context, weights = _attend(k, h, s.attention_weights, s.attention_weights_cum, memory, processed_memory, mask)
    dh, dc = _lstm_cell(k.decoder_rnn(torch.cat((h, context, s.decoder_hidden), 1)), s.decoder_cell)
    out = k.projection(torch.cat((dh, context), 1))
    return out, DecoderState(h, c, dh, dc, weights, s.attention_weights_cum + weights, context)


class CUDAGraphSteps:
    """A :class:`DecoderRuntime` that runs :func:`decoder_step` as a CUDA graph: opt-in, CUDA, eval mode.

    On a GPU a decoder step is a few dozen small kernels, and launching them takes longer than running them
    at small batches. The step is captured once per utterance (its shapes and memory are fixed for one) and
    replayed at every step: one launch per step, the same kernels on the same inputs as the eager step, so
    the same numbers. The prenet's masks are still drawn by the decoding loop, outside the graph, and what a
    step returns lives in the graph's tensors until the next step (the loop copies it before then).

        model.infer_detailed(ids, lengths, runtime=CUDAGraphSteps(model.decoder))
    """

    def __init__(self, decoder: nn.Module, precision: str = "fp32", warmup_steps: int = 2):
        """decoder: a Tacotron 2 decoder (its ``kernels(precision)`` are replayed); warmup_steps: eager steps run
        on a side stream before the capture, so that libraries initialise outside it."""
        self.decoder, self.precision, self.warmup_steps = decoder, precision, warmup_steps

    def start_decoding(self, memory: Tensor, mask: Tensor) -> DecoderStep:
        if memory.device.type != "cuda":
            raise ValueError(f"CUDA graph decoding needs the model on a CUDA device, not on {memory.device}; "
                             "leave runtime unset there")
        if self.decoder.training:
            raise ValueError("CUDA graph decoding replays the eval-mode step: call model.eval() first")
        kernels = cast(Callable[[str], DecoderKernels], self.decoder.kernels)(self.precision)  # cached
        return _GraphedStep(kernels, memory, kernels.process_memory(memory), mask if bool(mask.any()) else None,
                            self.warmup_steps)


class _GraphedStep:
    """One utterance's decoder step as a CUDA graph, captured at the first call. Inputs are copied into the
    graph's own tensors; the state it returns is its own too, so passing it back costs no copy."""

    def __init__(self, kernels: DecoderKernels, memory: Tensor, processed_memory: Tensor, mask: Tensor | None,
                 warmup_steps: int):
        self.kernels, self.memory, self.processed_memory, self.mask = kernels, memory, processed_memory, mask
        self.warmup_steps = warmup_steps
        self.graph: torch.cuda.CUDAGraph | None = None

    def _step(self) -> tuple[Tensor, DecoderState]:
        return decoder_step(self.kernels, self.frame, self.keep, self.state, self.memory, self.processed_memory,
                            self.mask)

    def _capture(self, frame: Tensor, keep: Tensor, state: DecoderState) -> None:
        self.frame, self.keep = frame.clone(), keep.clone()
        self.state = DecoderState(*(t.clone() for t in state))
        stream = torch.cuda.current_stream(frame.device)
        side = torch.cuda.Stream(frame.device)
        side.wait_stream(stream)
        with torch.cuda.stream(side):
            for _ in range(self.warmup_steps):
                self._step()  # reads the graph's tensors, writes none of them
        stream.wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out, new = self._step()
            for mine, value in zip(self.state, new):  # the next step's inputs, in the graph's own tensors
                mine.copy_(value)

    def __call__(self, frame: Tensor, keep: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        if self.graph is None:
            self._capture(frame, keep, state)
            assert self.graph is not None  # set by _capture
        else:
            self.frame.copy_(frame)
            self.keep.copy_(keep)
            if state is not self.state:
                for mine, value in zip(self.state, state):
                    mine.copy_(value)
        self.graph.replay()
        return self.out, self.state


class PrenetMasks:
    """The prenet's dropout masks, (2, B, P) per decoder step, from the caller's generators.

    The reference draws, per step, uniform float64 numbers for layer 0 then layer 1: (B, P) each from
    one generator, or (1, P) each from every active item's own generator. CPU generators fill a tensor
    in order, so drawing ``MASK_CHUNK`` steps at once gives the same numbers with far fewer calls;
    :meth:`close` rewinds each generator to just after the draws that were used, so the stream advances
    exactly as with per-step draws. Other devices' generators (and ``chunked=False``, when other random
    draws interleave with the prenet's) draw step by step.
    """

    def __init__(self, rng: torch.Generator | list[torch.Generator] | None, batch: int, dim: int, like: Tensor,
                 chunked: bool = True):
        """rng: None (the default generator of ``like``'s device), one generator for the batch, or a list of
        one per item; dim: P; like: a tensor with the masks' dtype and device."""
        self.per_item = isinstance(rng, list)
        self.generators: Sequence[torch.Generator | None] = rng if isinstance(rng, list) else [rng]
        self.batch, self.dim, self.like = batch, dim, like
        devices = [g.device if g is not None else like.device for g in self.generators]
        self.chunked = chunked and all(d.type == "cpu" for d in devices)
        if self.chunked and not self.per_item and rng is None:
            self.generators = [torch.default_generator]
        self._buffer: Tensor | None = None
        self._position = 0
        self._saved: list[Tensor | None] = [None] * len(self.generators)  # state before the current chunk
        self._used = [0] * len(self.generators)  # steps of the current chunk each generator has used

    def _draw(self, shape: tuple[int, ...], generator: torch.Generator | None) -> Tensor:
        return _draw_keep(shape, generator, self.like)

    def _scale(self, keep: Tensor) -> Tensor:
        return _scale_keep(keep, self.like)

    def next(self, steps_left: int, active: list[bool] | None = None) -> Tensor:
        """Masks for the next step, (2, B, P). ``active`` (per-item mode): items that draw at this step; the
        others get zero rows and consume nothing. Once inactive, an item must stay inactive."""
        b, p = self.batch, self.dim
        active = active or []  # per-item mode passes it; one generator for the batch never reads it
        if not self.chunked:
            if not self.per_item:
                return self._scale(torch.stack([self._draw((b, p), self.generators[0]) for _ in range(2)]))
            keep = self.like.new_zeros(2, b, p)
            for i, generator in enumerate(self.generators):
                if active[i]:
                    keep[:, i] = self._scale(torch.stack([self._draw((p,), generator) for _ in range(2)]))
            return keep
        if self._buffer is None or self._position == self._buffer.size(0):
            self._rewind()
            chunk = max(1, min(MASK_CHUNK, steps_left))
            if not self.per_item:
                generator = self.generators[0]
                assert generator is not None  # chunked: torch.default_generator stands in for None
                self._saved[0] = generator.get_state()
                self._used[0] = 0
                self._buffer = self._scale(self._draw((chunk, 2, b, p), generator))
            else:
                keep = torch.zeros(chunk, 2, b, p, dtype=torch.bool)
                for i, generator in enumerate(self.generators):
                    self._saved[i] = None
                    if active[i]:
                        assert generator is not None  # per-item: a list of generators
                        self._saved[i], self._used[i] = generator.get_state(), 0
                        keep[:, :, i] = self._draw((chunk, 2, p), generator)
                self._buffer = self._scale(keep)
            self._position = 0
        if self.per_item:
            for i in range(b):
                if self._saved[i] is not None and not active[i] and self._used[i] == self._position:
                    self._buffer[self._position:, :, i] = 0  # stopped within this chunk: no more draws
        for i, saved in enumerate(self._saved):
            if saved is not None and (not self.per_item or active[i]):
                self._used[i] += 1
        self._position += 1
        return self._buffer[self._position - 1]

    def _rewind(self) -> None:
        """Give back the draws of the current chunk that no step used."""
        if self._buffer is None:
            return
        b, p, chunk = self.batch, self.dim, self._buffer.size(0)
        for i, (generator, saved) in enumerate(zip(self.generators, self._saved)):
            if saved is not None and self._used[i] < chunk:
                assert generator is not None  # a saved state was drawn from it
                generator.set_state(saved)
                rows = (self._used[i], 2, b if not self.per_item else 1, p)
                self._draw(rows, generator)  # advance past the used draws only
            self._saved[i] = None
        self._buffer = None

    def close(self) -> None:
        """Rewinds the generators past the draws that were used (call once decoding ends)."""
        if self.chunked:
            self._rewind()
