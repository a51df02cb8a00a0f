"""Tacotron 2: text ids -> mel spectrogram (Shen et al., 2018), compatible with NVIDIA's checkpoints.

Block diagram, in data-flow order:

    ids -> embedding -> _Encoder (3 conv + BiLSTM) -> memory
    previous frame -> _Prenet -> attention LSTM -> _Attention (location-sensitive) -> context
    [attention state, context] -> decoder LSTM -> linear projection (mel frame) + gate (stop logit)
    mel -> _Postnet (5 conv) -> residual -> mel_postnet

Module and parameter names follow NVIDIA's DeepLearningExamples implementation, so its state dicts load
with ``strict=True`` (after stripping any ``module.`` prefix). Numbers follow the reference too: with the
same weights, inputs and seed, ``infer`` and ``forward`` reproduce it on CPU (see ``tests/``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, Iterable, Literal, Sequence, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from . import ops
from .config import ConfigError, DictConfig
from .decoding import (
    DecoderKernels,
    DecoderRuntime,
    DecoderState,
    DecoderStep,
    PrenetMasks,
    Tacotron2Runtime,
    grow,
    keep_mask,
    padding_mask,
)
from .ops import PRECISIONS

__all__ = ["Tacotron2", "Tacotron2Config", "Tacotron2Output", "PRECISIONS"]

# Encoder and postnet convolutions use dropout 0.5 in training (NVIDIA hard-codes it as well).
_CONV_DROPOUT = 0.5
# Padded gate logits when mask_padding is on: sigmoid(1e3) = 1, i.e. "stopped" (NVIDIA's value).
_PADDED_GATE_LOGIT = 1e3


@dataclass
class Tacotron2Config(DictConfig):
    """Tacotron 2 hyperparameters. Field names are NVIDIA's constructor arguments; defaults are the
    torch.hub (``pretrained=False``) configuration, which is also what the published checkpoints use
    apart from ``max_decoder_steps`` (the DLE command line uses 2000)."""

    # Zero padded mel frames (gate logits set to 1e3) in the teacher-forced outputs.
    mask_padding: bool = False
    n_mel_channels: int = 80
    n_symbols: int = 148
    symbols_embedding_dim: int = 512
    # Encoder
    encoder_kernel_size: int = 5
    encoder_n_convolutions: int = 3
    encoder_embedding_dim: int = 512
    # Attention
    attention_rnn_dim: int = 1024
    attention_dim: int = 128
    attention_location_n_filters: int = 32
    attention_location_kernel_size: int = 31
    # Decoder. n_frames_per_step r > 1 predicts r frames per decoder step (not in NVIDIA's published
    # models; r = 1 keeps checkpoint compatibility).
    n_frames_per_step: int = 1
    decoder_rnn_dim: int = 1024
    prenet_dim: int = 256
    max_decoder_steps: int = 1000
    # An item stops at the first step where sigmoid(gate) > gate_threshold.
    gate_threshold: float = 0.5
    p_attention_dropout: float = 0.1
    p_decoder_dropout: float = 0.1
    # Postnet
    postnet_embedding_dim: int = 512
    postnet_kernel_size: int = 5
    postnet_n_convolutions: int = 5
    # Run every inference to max_decoder_steps instead of stopping when all items have stopped.
    decoder_no_early_stopping: bool = False


@dataclass
class Tacotron2Output:
    """Result of :meth:`Tacotron2.infer_detailed`, in input order.

    mel_postnet: (B, n_mel_channels, T_out) float. mel_lengths: (B,) int32, frames before the stop
    frame (the cap for items that never stopped). alignments: (B, T_out / r, T_in) attention weights per
    decoder step. gate_stopped: (B,) bool, True where the gate fired, False where the item hit its cap.
    """

    mel_postnet: Tensor
    mel_lengths: Tensor
    alignments: Tensor
    gate_stopped: Tensor


# --------------------------------------------------------------------------------------------------
# Layers with NVIDIA's initialisation (xavier uniform with a per-activation gain); the wrapper
# attributes ``linear_layer`` and ``conv`` exist only to keep the reference's state-dict keys.
_Gain = Literal["linear", "relu", "tanh", "sigmoid"]  # the activations NVIDIA's layers initialise for


class _LinearNorm(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, w_init_gain: _Gain = "linear"):
        super().__init__()
        self.linear_layer = nn.Linear(in_dim, out_dim, bias=bias)
        nn.init.xavier_uniform_(self.linear_layer.weight, gain=nn.init.calculate_gain(w_init_gain))

    def forward(self, x: Tensor) -> Tensor:
        return self.linear_layer(x)


class _ConvNorm(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True,
                 w_init_gain: _Gain = "linear"):
        super().__init__()
        assert kernel_size % 2 == 1, "'same' padding needs an odd kernel"
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=(kernel_size - 1) // 2,
                              bias=bias)
        nn.init.xavier_uniform_(self.conv.weight, gain=nn.init.calculate_gain(w_init_gain))

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


def _folded(convolutions: nn.ModuleList) -> list[tuple[Tensor, Tensor]]:
    """(_ConvNorm, BatchNorm1d) pairs in eval mode as single convolutions for ``ops.conv``."""
    pairs = cast(Iterable[tuple[_ConvNorm, nn.BatchNorm1d]], convolutions)  # nn.Sequential, unpacked as pairs
    return [ops.fold_batch_norm(conv_norm.conv, bn) for conv_norm, bn in pairs]


class _Encoder(nn.Module):
    """3 x (conv 5, batch norm, ReLU, dropout) then a 1-layer BiLSTM (paper, section 2.1)."""

    def __init__(self, cfg: Tacotron2Config):
        super().__init__()
        dim = cfg.encoder_embedding_dim
        self.convolutions = nn.ModuleList(
            nn.Sequential(_ConvNorm(dim, dim, cfg.encoder_kernel_size, w_init_gain="relu"), nn.BatchNorm1d(dim))
            for _ in range(cfg.encoder_n_convolutions))
        self.lstm = nn.LSTM(dim, dim // 2, num_layers=1, batch_first=True, bidirectional=True)

    def forward(self, x: Tensor, lengths: Tensor, keep: Tensor | None = None) -> Tensor:
        """x: (B, C, T) embedded text; lengths: (B,) int64 on CPU; keep: optional (B, 1, T) 0/1 mask that
        zeroes padding after each conv, so that no item sees its padding (batch-independent results).
        Returns the memory (B, max(lengths), C); rows are zero past each length."""
        if ops.use_fused_convolutions(self, x):
            y = ops.as_conv_input(x)  # (B, C, 1, T), time-major
            keep4 = None if keep is None else keep.unsqueeze(2)  # (B, 1, 1, T)
            for weight, bias in ops.cached(self, "_folded", lambda: _folded(self.convolutions)):
                y = ops.conv(y, weight, bias, activation="relu")
                if keep4 is not None:
                    y = y * keep4
            x = y.squeeze(2)  # (B, C, T) with time-major strides: the transpose below is contiguous
        else:
            for conv in self.convolutions:
                x = F.dropout(F.relu(conv(x)), _CONV_DROPOUT, self.training)
                if keep is not None:
                    x = x * keep
        packed = nn.utils.rnn.pack_padded_sequence(x.transpose(1, 2), lengths, batch_first=True,
                                                   enforce_sorted=False)
        outputs, _ = self.lstm(packed)
        memory, _ = nn.utils.rnn.pad_packed_sequence(outputs, batch_first=True)
        return memory


class _LocationLayer(nn.Module):
    """Features of the previous and cumulative attention weights: conv then projection to attention_dim."""

    def __init__(self, n_filters: int, kernel_size: int, attention_dim: int):
        super().__init__()
        self.location_conv = _ConvNorm(2, n_filters, kernel_size, bias=False)
        self.location_dense = _LinearNorm(n_filters, attention_dim, bias=False, w_init_gain="tanh")

    def forward(self, weights_cat: Tensor) -> Tensor:
        """(B, 2, T_in) -> (B, T_in, attention_dim)."""
        return self.location_dense(self.location_conv(weights_cat).transpose(1, 2))


class _Attention(nn.Module):
    """Location-sensitive additive attention (Chorowski et al., 2015)."""

    def __init__(self, cfg: Tacotron2Config):
        super().__init__()
        self.query_layer = _LinearNorm(cfg.attention_rnn_dim, cfg.attention_dim, bias=False, w_init_gain="tanh")
        self.memory_layer = _LinearNorm(cfg.encoder_embedding_dim, cfg.attention_dim, bias=False,
                                        w_init_gain="tanh")
        self.v = _LinearNorm(cfg.attention_dim, 1, bias=False)
        self.location_layer = _LocationLayer(cfg.attention_location_n_filters,
                                             cfg.attention_location_kernel_size, cfg.attention_dim)

    def forward(self, query: Tensor, memory: Tensor, processed_memory: Tensor, weights_cat: Tensor,
                mask: Tensor) -> tuple[Tensor, Tensor]:
        """query (B, attention_rnn_dim); memory (B, T_in, C); processed_memory (B, T_in, attention_dim),
        i.e. memory_layer(memory), computed once per utterance; weights_cat (B, 2, T_in); mask (B, T_in),
        True on padding. Returns context (B, C) and weights (B, T_in)."""
        # Summed in the reference's order (query + location + memory) to keep its rounding.
        energies = self.v(torch.tanh(
            self.query_layer(query.unsqueeze(1)) + self.location_layer(weights_cat) + processed_memory))
        weights = F.softmax(energies.squeeze(2).masked_fill(mask, float("-inf")), dim=1)
        context = torch.bmm(weights.unsqueeze(1), memory).squeeze(1)
        return context, weights


class _Prenet(nn.Module):
    """Two bias-free ReLU layers with dropout 0.5 that stays on at inference (paper, section 2.2): the
    noise is what lets the autoregressive decoder generalise. Masks are passed in, so the caller decides
    which random numbers feed them (shared or per-item generators)."""

    def __init__(self, in_dim: int, dim: int):
        super().__init__()
        self.layers = nn.ModuleList([_LinearNorm(in_dim, dim, bias=False), _LinearNorm(dim, dim, bias=False)])

    def forward(self, x: Tensor, draw_mask: Callable[[Tensor], Tensor]) -> Tensor:
        """x: (..., in_dim) -> (..., dim). ``draw_mask(h)`` returns the scaled keep-mask for activation h;
        it is called for layer 0, then layer 1 (the reference's order of draws)."""
        for layer in self.layers:
            h = F.relu(layer(x))
            x = h * draw_mask(h)
        return x


class _Decoder(nn.Module):
    """Autoregressive decoder: prenet -> attention LSTM -> attention -> decoder LSTM -> frame + gate."""

    def __init__(self, cfg: Tacotron2Config):
        super().__init__()
        self.cfg = cfg
        frame_dim = cfg.n_mel_channels * cfg.n_frames_per_step  # r frames are predicted (and fed back) at once
        context_dim = cfg.encoder_embedding_dim
        self.prenet = _Prenet(frame_dim, cfg.prenet_dim)
        self.attention_rnn = nn.LSTMCell(cfg.prenet_dim + context_dim, cfg.attention_rnn_dim)
        self.attention_layer = _Attention(cfg)
        self.decoder_rnn = nn.LSTMCell(cfg.attention_rnn_dim + context_dim, cfg.decoder_rnn_dim)
        self.linear_projection = _LinearNorm(cfg.decoder_rnn_dim + context_dim, frame_dim)
        self.gate_layer = _LinearNorm(cfg.decoder_rnn_dim + context_dim, 1, w_init_gain="sigmoid")

    # NVIDIA's decoder attributes, which its users set on the torch.hub model (``tacotron2.decoder.
    # max_decoder_steps = 2000``). They read and write the config, so generation and the Synthesizer's caps
    # follow them, and a saved checkpoint records them.
    @property
    def max_decoder_steps(self) -> int:
        """The most decoder steps an inference runs unless ``infer_detailed`` is given its own caps."""
        return self.cfg.max_decoder_steps

    @max_decoder_steps.setter
    def max_decoder_steps(self, steps: int) -> None:
        if isinstance(steps, bool) or int(steps) != steps or steps < 1:
            raise ValueError(f"max_decoder_steps must be a whole number >= 1, got {steps!r}")
        self.cfg.max_decoder_steps = int(steps)

    @property
    def gate_threshold(self) -> float:
        """An item stops at the first step where sigmoid(gate logit) > gate_threshold."""
        return self.cfg.gate_threshold

    @gate_threshold.setter
    def gate_threshold(self, threshold: float) -> None:
        self.cfg.gate_threshold = float(threshold)

    def initial_state(self, memory: Tensor) -> DecoderState:
        b, t_in, c = memory.shape
        zeros = memory.new_zeros
        return DecoderState(zeros(b, self.cfg.attention_rnn_dim), zeros(b, self.cfg.attention_rnn_dim),
                             zeros(b, self.cfg.decoder_rnn_dim), zeros(b, self.cfg.decoder_rnn_dim),
                             zeros(b, t_in), zeros(b, t_in), zeros(b, c))

    def step(self, prenet_out: Tensor, s: DecoderState, memory: Tensor, processed_memory: Tensor,
             mask: Tensor, forced: Tensor | None = None) -> tuple[Tensor, Tensor, DecoderState, Tensor]:
        """One decoder step. prenet_out (B, prenet_dim) -> frame (B, n_mel * r), gate logit (B, 1), state, and
        the attention's own weights (B, T_in). With ``forced`` (B, T_in), the step reads and carries those
        weights instead of its own (attention forcing); its own are still computed and returned."""
        cfg = self.cfg
        h, c = self.attention_rnn(torch.cat((prenet_out, s.attention_context), -1),
                                  (s.attention_hidden, s.attention_cell))
        h = F.dropout(h, cfg.p_attention_dropout, self.training)
        weights_cat = torch.stack((s.attention_weights, s.attention_weights_cum), dim=1)  # (B, 2, T_in)
        context, own = self.attention_layer(h, memory, processed_memory, weights_cat, mask)
        weights = own
        if forced is not None:
            weights = forced
            context = torch.bmm(forced.unsqueeze(1), memory).squeeze(1)
        dh, dc = self.decoder_rnn(torch.cat((h, context), -1), (s.decoder_hidden, s.decoder_cell))
        dh = F.dropout(dh, cfg.p_decoder_dropout, self.training)
        out = torch.cat((dh, context), dim=1)
        state = DecoderState(h, c, dh, dc, weights, s.attention_weights_cum + weights, context)
        return self.linear_projection(out), self.gate_layer(out), state, own

    def teacher_forced(self, memory: Tensor, mels: Tensor, mask: Tensor, feedback: Tensor | None = None,
                       forced: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """memory (B, T_in, C); mels (B, n_mel, T) with T a multiple of r; mask (B, T_in) True on padding;
        feedback (B, T / r) bool or None: True where step i reads the decoder's own output of step i - 1
        (detached) instead of the target frames, as free-running synthesis does (step 0 reads the go frame);
        forced (B, T / r, T_in) or None: attention weights each step reads instead of its own, so that frames
        made from the decoder's own inputs keep the targets' timing (attention forcing, Dou et al., 2020).
        Returns mel (B, n_mel, T), gate logits (B, T / r), alignments (B, T / r, T_in): the attention's own."""
        b, n_mel, t = mels.shape
        r = self.cfg.n_frames_per_step
        # Step inputs: the go frame (zeros), then each group of r target frames: (T / r + 1, B, n_mel * r).
        # The last group is never consumed but goes through the prenet, as in the reference: its dropout
        # masks are drawn for all T / r + 1 inputs at once, layer 0 then layer 1.
        frames = mels.transpose(1, 2).reshape(b, t // r, n_mel * r).transpose(0, 1)
        inputs = torch.cat((memory.new_zeros(1, b, n_mel * r), frames), dim=0)
        if feedback is None:
            inputs = self.prenet(inputs, lambda h: keep_mask(h.shape, h, None))
        else:  # the prenet runs in the loop, on what each step reads: (T / r, B, 1)
            feedback = feedback.t().unsqueeze(2).to(inputs.device)

        processed_memory = self.attention_layer.memory_layer(memory)
        state = self.initial_state(memory)
        mel_steps: list[Tensor] = []
        gates, alignments = [], []
        for i in range(t // r):
            x = inputs[i]
            if feedback is not None:
                if i > 0:
                    x = torch.where(feedback[i], mel_steps[-1].detach().to(x.dtype), x)
                x = self.prenet(x, lambda h: keep_mask(h.shape, h, None))
            frame, gate, state, own = self.step(x, state, memory, processed_memory, mask,
                                                None if forced is None else forced[:, i])
            mel_steps.append(frame)
            gates.append(gate.squeeze(1))
            alignments.append(own)
        mel = torch.stack(mel_steps, dim=1).reshape(b, t, n_mel).transpose(1, 2)  # (B, n_mel, T)
        return mel, torch.stack(gates, dim=1), torch.stack(alignments, dim=1)

    def kernels(self, precision: str = "fp32") -> DecoderKernels:
        """The parameters arranged for generation; rebuilt only when a parameter changes (new storage,
        dtype or device, or an in-place update such as an optimizer step or ``load_state_dict``)."""
        return ops.cached(self, "_kernels", lambda: DecoderKernels(self, precision), extra=(precision,))

    def start_decoding(self, memory: Tensor, mask: Tensor) -> DecoderStep:
        """The modules' step (a :class:`~tacoglow.decoding.DecoderRuntime`), which generation runs in training
        mode: attention and decoder dropout are then on, as in training."""
        processed_memory = self.attention_layer.memory_layer(memory)  # once, not per step

        def step(frame: Tensor, keep: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
            layer_masks = iter(keep)
            x = self.prenet(frame, lambda h: next(layer_masks))
            frame_out, gate, state, _ = self.step(x, state, memory, processed_memory, mask)
            return torch.cat((frame_out, gate), 1), state

        return step

    def generate(self, memory: Tensor, mask: Tensor, caps: Tensor,
                 rng: torch.Generator | list[torch.Generator] | None, precision: str = "fp32",
                 runtime: DecoderRuntime | None = None
                 ) -> Generator[Tensor, None, tuple[Tensor, Tensor, Tensor, Tensor, Tensor]]:
        """Free-running decoding, yielding each step's output (B, n_mel * r + 1), frames then gate logit, once
        made: the loop, the stopping rule (``gate_threshold``), the caps and the prenet's masks; the steps run
        on ``runtime``. memory (B, T_in, C); mask (B, T_in) True on padding; caps (B,)
        int64 on CPU, the most steps per item; rng: None or one generator (one (B, prenet_dim) mask per layer
        per step), or one generator per item (each active item draws its own (1, prenet_dim) masks);
        precision: one of ``PRECISIONS`` for the kernels; runtime: None for the kernels in eval mode
        (:meth:`kernels`) or the modules in training mode (:meth:`start_decoding`, always fp32), or another
        engine such as ``tacoglow.export.OnnxRuntimeTacotron2``.

        Returns frames (B, n_mel, steps * r), gate logits (B, steps), alignments (B, steps, T_in),
        step_lengths (B,) int32 = steps before the stop step (or the cap), stopped (B,) bool.
        """
        cfg = self.cfg
        b = memory.size(0)
        caps_list = [int(c) for c in caps.tolist()]
        max_steps = max(caps_list)
        frame_dim = cfg.n_mel_channels * cfg.n_frames_per_step
        state = self.initial_state(memory)
        frame = memory.new_zeros(b, frame_dim)  # go frame
        if runtime is None:
            runtime = self if self.training else self.kernels(precision)
        step = runtime.start_decoding(memory, mask)

        # Buffers grow by doubling up to max_steps: no per-step concatenation, no 1000-step allocation
        # for a 30-step utterance. outputs holds each step's frame, then its gate logit.
        capacity = min(max_steps, 64)
        outputs = memory.new_empty(capacity, b, frame_dim + 1)
        alignments = memory.new_empty(capacity, b, memory.size(1))

        # The reference stops an item when sigmoid(gate) <= threshold is false (NaN counts as stopped),
        # comparing in the model's dtype; the same test runs here on Python floats.
        threshold = torch.tensor(self.gate_threshold, dtype=memory.dtype).item()
        not_finished, stopped, step_lengths = [True] * b, [False] * b, [0] * b
        per_item = isinstance(rng, list)
        # In training mode attention and decoder dropout draw from the global generator between the
        # prenet's draws, so the masks are drawn step by step.
        masks = PrenetMasks(rng, b, cfg.prenet_dim, memory, chunked=not self.training)
        steps = 0
        try:
            while True:
                active = None
                if per_item:  # items that are done draw nothing, as when decoded alone
                    active = (not_finished if not cfg.decoder_no_early_stopping
                              else [steps < cap for cap in caps_list])
                out, state = step(frame, masks.next(max_steps - steps, active), state)
                if steps == capacity:
                    capacity = min(2 * capacity, max_steps)
                    outputs, alignments = grow(outputs, capacity), grow(alignments, capacity)
                outputs[steps] = out
                alignments[steps] = state.attention_weights
                steps += 1
                yield outputs[steps - 1]
                for i, p in enumerate(torch.sigmoid(out[:, frame_dim]).tolist()):
                    fired = not p <= threshold
                    stopped[i] = stopped[i] or (not_finished[i] and fired)
                    not_finished[i] = not_finished[i] and not fired
                    step_lengths[i] += not_finished[i]
                    not_finished[i] = not_finished[i] and steps < caps_list[i]
                if steps == max_steps or (not cfg.decoder_no_early_stopping and not any(not_finished)):
                    break
                frame = outputs[steps - 1, :, :frame_dim]  # fed back before the postnet, as in the paper
        finally:
            masks.close()

        # (steps, B, n_mel * r) -> (B, n_mel, steps * r); the r frames of a step are contiguous.
        mel = outputs[:steps, :, :frame_dim].transpose(0, 1).reshape(b, -1, cfg.n_mel_channels).transpose(1, 2)
        device = memory.device
        return (mel, outputs[:steps, :, frame_dim].t(), alignments[:steps].transpose(0, 1),
                torch.tensor(step_lengths, dtype=torch.int32, device=device),
                torch.tensor(stopped, dtype=torch.bool, device=device))


class _Postnet(nn.Module):
    """5 convolutions (tanh on all but the last) predicting a residual that refines the mel (section 2.2)."""

    def __init__(self, cfg: Tacotron2Config):
        super().__init__()
        n_mel, dim, k = cfg.n_mel_channels, cfg.postnet_embedding_dim, cfg.postnet_kernel_size
        dims = [n_mel] + [dim] * (cfg.postnet_n_convolutions - 1) + [n_mel]
        self.convolutions = nn.ModuleList(
            nn.Sequential(_ConvNorm(c_in, c_out, k, w_init_gain="tanh" if i < len(dims) - 2 else "linear"),
                          nn.BatchNorm1d(c_out))
            for i, (c_in, c_out) in enumerate(zip(dims[:-1], dims[1:])))

    def forward(self, x: Tensor, keep: Tensor | None = None) -> Tensor:
        """x: (B, n_mel, T) -> residual (B, n_mel, T). keep: optional (B, 1, T) 0/1 mask applied after
        every layer, so that frames past an item's end never leak into its last frames."""
        last = len(self.convolutions) - 1
        if ops.use_fused_convolutions(self, x):
            y = ops.as_conv_input(x)  # (B, n_mel, 1, T), time-major
            keep4 = None if keep is None else keep.unsqueeze(2)
            folded = ops.cached(self, "_folded", lambda: _folded(self.convolutions))
            for i, (weight, bias) in enumerate(folded):
                y = ops.conv(y, weight, bias, activation="tanh" if i < last else "none")
                if keep4 is not None:
                    y = y * keep4
            return y.squeeze(2)
        for i, conv in enumerate(self.convolutions):
            x = conv(x)
            x = F.dropout(torch.tanh(x) if i < last else x, _CONV_DROPOUT, self.training)
            if keep is not None:
                x = x * keep
        return x


class Tacotron2(nn.Module):
    """Tacotron 2 spectrogram predictor with NVIDIA's module layout and numerics.

    ``forward`` is teacher forcing (training); ``infer``/``infer_detailed`` generate. Like the reference,
    the prenet's dropout stays on in ``eval()`` mode, so generation consumes random numbers: two masks
    per decoder step (layer 0, then layer 1).
    """

    def __init__(self, config: Tacotron2Config | None = None):
        super().__init__()
        cfg = config if config is not None else Tacotron2Config()
        if cfg.n_frames_per_step < 1:
            raise ConfigError(f"n_frames_per_step must be >= 1, got {cfg.n_frames_per_step}", "n_frames_per_step")
        self.config = cfg
        self.embedding = nn.Embedding(cfg.n_symbols, cfg.symbols_embedding_dim)
        # Uniform with the variance of xavier for an (n_symbols, dim) matrix (NVIDIA's init).
        bound = 3.0 ** 0.5 * (2.0 / (cfg.n_symbols + cfg.symbols_embedding_dim)) ** 0.5
        nn.init.uniform_(self.embedding.weight, -bound, bound)
        self.encoder = _Encoder(cfg)
        self.decoder = _Decoder(cfg)
        self.postnet = _Postnet(cfg)

    def forward(self, text: Tensor, text_lengths: Tensor, mels: Tensor, mel_lengths: Tensor,
                feedback: Tensor | None = None, forced: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Teacher-forced pass (the reference's training path).

        Args:
            text: (B, T_in) int64 symbol ids, zero-padded; any order of lengths.
            text_lengths: (B,) valid ids per item (any device/integer dtype).
            mels: (B, n_mel_channels, T) target frames, zero-padded.
            mel_lengths: (B,) valid frames per item; used only when ``config.mask_padding``.
            feedback: None (the reference), or (B, T' / r) bool: the decoder steps that read the decoder's own
                previous output instead of the target frames (``_Decoder.teacher_forced``).
            forced: None, or (B, T' / r, max(text_lengths)) attention weights every step reads instead of its
                own (attention forcing); the returned alignments are still the attention's own.

        Returns:
            mel (B, n_mel_channels, T'), mel_postnet (B, n_mel_channels, T'), gate logits (B, T' / r) and
            alignments (B, T' / r, max(text_lengths)), where T' is T rounded up to a multiple of
            r = n_frames_per_step (the targets are zero-padded to it).
        """
        cfg = self.config
        r = cfg.n_frames_per_step
        if mels.size(2) % r:
            mels = F.pad(mels, (0, r - mels.size(2) % r))
        text_lengths = torch.as_tensor(text_lengths).to("cpu", torch.int64)
        memory = self.encoder(self.embedding(text).transpose(1, 2), text_lengths)
        mask = padding_mask(text_lengths.to(memory.device), memory.size(1))
        mel, gate, alignments = self.decoder.teacher_forced(memory, mels, mask, feedback, forced)
        mel_postnet = mel + self.postnet(mel)

        if cfg.mask_padding:
            mel_lengths = torch.as_tensor(mel_lengths).to(mel.device, torch.int64)
            frame_pad = padding_mask(mel_lengths, mel.size(2))  # (B, T')
            mel = mel.masked_fill(frame_pad.unsqueeze(1), 0.0)
            mel_postnet = mel_postnet.masked_fill(frame_pad.unsqueeze(1), 0.0)
            # A step is padding when all of its r frames are (with r = 1: exactly the reference).
            gate = gate.masked_fill(frame_pad[:, ::r], _PADDED_GATE_LOGIT)
        return mel, mel_postnet, gate, alignments

    def infer(self, sequences: Tensor, lengths: Tensor,
              generator: torch.Generator | Sequence[torch.Generator] | None = None, *,
              precision: str = "fp32") -> tuple[Tensor, Tensor, Tensor]:
        """Generate mels, stopping items by the gate (up to ``decoder.max_decoder_steps`` steps).

        Args / semantics: see :meth:`infer_detailed`.

        Returns:
            mel_postnet (B, n_mel_channels, T_out), mel_lengths (B,) int32 frames before each item's stop
            frame, alignments (B, T_out / r, T_in), all in input order.
        """
        out = self.infer_detailed(sequences, lengths, generator, precision=precision)
        return out.mel_postnet, out.mel_lengths, out.alignments

    @torch.no_grad()
    def infer_detailed(self, sequences: Tensor, lengths: Tensor,
                       generator: torch.Generator | Sequence[torch.Generator] | None = None,
                       max_decoder_steps: int | Tensor | None = None, *,
                       precision: str = "fp32", runtime: Tacotron2Runtime | DecoderRuntime | None = None
                       ) -> Tacotron2Output:
        """:meth:`generate` run to its end: mels with the reference's stopping rule, per-item caps, stop flags."""
        return ops.run_to_end(self.generate(sequences, lengths, generator, max_decoder_steps, precision=precision,
                                        runtime=runtime))

    def generate(self, sequences: Tensor, lengths: Tensor,
                 generator: torch.Generator | Sequence[torch.Generator] | None = None,
                 max_decoder_steps: int | Tensor | None = None, *,
                 precision: str = "fp32", runtime: Tacotron2Runtime | DecoderRuntime | None = None
                 ) -> Generator[Tensor, None, Tacotron2Output]:
        """Generate mels with the reference's stopping rule, plus per-item caps and stop flags; as it goes,
        yields each decoder step's output (B, n_mel * r + 1) in decoding order (sorted by length, see below):
        the r frames before the postnet, then the gate logit. Run it under ``torch.no_grad()``.

        Args:
            sequences: (B, T_in) int64 symbol ids, zero-padded; items in any order of length.
            lengths: (B,) valid ids per item, >= 1 (any device/integer dtype).
            generator: where prenet dropout draws come from.
                ``None`` or one ``torch.Generator``: the reference mode, one (B, prenet_dim) mask per layer
                per step over the batch sorted by length (descending, stable); ``None`` means the default
                generator of the model's device. Each item then equals the reference's result for the
                sorted batch, and padding affects items as in the reference.
                A sequence of B generators (input order): each item draws its own (1, prenet_dim) masks
                and is isolated from the rest of the batch (text padding and the frames after its stop
                are zeroed), so item i equals what it gives alone in a batch of 1 with that generator.
            max_decoder_steps: the most decoder steps, for all items (int) or per item ((B,) tensor,
                input order); default ``decoder.max_decoder_steps`` (initially ``config.max_decoder_steps``;
                set it as in NVIDIA's examples). Items stop where sigmoid(gate) > ``decoder.gate_threshold``.
            precision: how the decoder's LSTM weights are stored while generating (eval mode): "fp32"
                (default) gives the reference's numbers; "fp16", "bf16" and "int8" are faster and
                approximate (see ``PRECISIONS``).
            runtime: run the encoder, decoder step and postnet on another engine (:class:`Tacotron2Runtime`,
                e.g. ``tacoglow.export.OnnxRuntimeTacotron2``); it encodes items one by one, so a batch with
                padding needs per-item generators. A :class:`~tacoglow.decoding.DecoderRuntime` alone (e.g.
                ``tacoglow.decoding.CUDAGraphSteps``) runs only the decoder steps. Sorting, masks, stopping and
                caps stay here.

        Returns (the generator's value; :meth:`infer_detailed` returns it directly):
            :class:`Tacotron2Output`, in input order. T_out = (steps run) * r; an item's frames past its
            stop frame are the decoder's continuation (reference mode) or zeros (per-item generators).
        """
        cfg = self.config
        r = cfg.n_frames_per_step
        b = sequences.size(0)
        lengths = torch.as_tensor(lengths).to("cpu", torch.int64)
        if lengths.shape != (b,) or bool((lengths < 1).any()) or int(lengths.max()) > sequences.size(1):
            raise ValueError(f"lengths must be (B,) = ({b},) values in [1, {sequences.size(1)}]")
        caps = torch.as_tensor(self.decoder.max_decoder_steps if max_decoder_steps is None else max_decoder_steps)
        caps = caps.to("cpu", torch.int64).expand(b).clone()
        if bool((caps < 1).any()):
            raise ValueError("max_decoder_steps must be >= 1")
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        per_item = None if generator is None or isinstance(generator, torch.Generator) else generator
        isolated = per_item is not None
        if per_item is not None and len(per_item) != b:
            raise ValueError(f"expected {b} generators (one per item), got {len(per_item)}")
        if runtime is not None and (self.training or precision != "fp32"):
            raise ValueError(f"a runtime generates in eval mode with fp32 weights, not training={self.training} "
                             f"precision={precision!r}: call model.eval() and use precision='fp32'")
        engine = cast(Tacotron2Runtime | None, runtime if hasattr(runtime, "encode") else None)  # encoder and postnet
        if engine is not None and not isolated and (bool((lengths != lengths[0]).any())
                                                     or sequences.size(1) != int(lengths[0])):
            raise ValueError("a runtime encodes items one by one, without padding; for a batch of different "
                             f"lengths ({lengths.tolist()} in {sequences.size(1)} columns) pass one generator "
                             "per item")

        # The reference requires batches sorted by length, and its dropout rows follow that order.
        order = torch.sort(lengths, descending=True, stable=True).indices
        lengths, caps = lengths[order], caps[order]
        rng = [per_item[i] for i in order.tolist()] if per_item is not None else cast(torch.Generator | None, generator)
        device = self.embedding.weight.device
        sequences = sequences[order.to(sequences.device)]

        if engine is not None:
            memory = engine.encode(sequences, lengths)  # (B, max(lengths), C), each item encoded alone
        else:
            x = self.embedding(sequences).transpose(1, 2)  # (B, C, T_in)
            keep_text = None
            if isolated:
                # The reference embeds the pad id (0) as a non-zero vector and convolves across it; zeroing
                # padding reproduces the zero padding an item sees when it is alone.
                keep_text = (~padding_mask(lengths.to(device), x.size(2))).unsqueeze(1).to(x.dtype)
                x = x * keep_text
            memory = self.encoder(x, lengths, keep_text)  # (B, max(lengths), C)
        mask = padding_mask(lengths.to(device), memory.size(1))
        mel, _, alignments, step_lengths, stopped = yield from self.decoder.generate(memory, mask, caps, rng,
                                                                                     precision, runtime)

        keep_frames = None
        if isolated:
            # Frames an item would not have produced alone: after its stop step (the stop step itself is
            # returned, as in the reference), or after its cap.
            kept_steps = caps.to(device) if cfg.decoder_no_early_stopping else step_lengths.long() + stopped.long()
            keep_steps = ~padding_mask(kept_steps, alignments.size(1))  # (B, steps)
            alignments = alignments * keep_steps.unsqueeze(2).to(alignments.dtype)
            keep_frames = keep_steps.repeat_interleave(r, dim=1).unsqueeze(1).to(mel.dtype)  # (B, 1, T_out)
            mel = mel * keep_frames
        if engine is not None:
            mel_postnet = engine.postnet(mel, keep_frames)
        else:
            mel_postnet = mel + self.postnet(mel, keep_frames)

        inverse = torch.argsort(order).to(device)
        return Tacotron2Output(
            mel_postnet=mel_postnet[inverse],
            mel_lengths=(step_lengths * r)[inverse],
            alignments=alignments[inverse],
            gate_stopped=stopped[inverse],
        )
