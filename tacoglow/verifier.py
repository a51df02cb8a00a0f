"""A phone recogniser over mels that judges Tacotron 2's decodings: which of several says its sentence.

Tacotron 2 keeps its prenet dropout on at synthesis (as the paper has it), so every decoding of a sentence is
different, and so is how clearly its words come out: a vowel is articulated in one decoding and smeared in the
next. The `PhoneVerifier` is a small CTC recogniser (Graves et al., 2006) trained on the voice's own corpus:
mel frames in, phone classes out (ARPAbet without stress, and letters for the words the lexicon spells). At
synthesis (``SynthesisConfig.candidates``) several decodings of a sentence are made in one batch and the
verifier keeps the one it finds most likely to carry the sentence's phones: the lowest CTC loss per phone.

It reads the mels Tacotron 2 predicts, so it is trained on the recorded mels and, where given, on the
ground-truth-aligned mels of the voice's Tacotron 2 (`tacoglow prepare --gta`), which are as smooth as
predicted ones (`tacoglow.train.verifier`).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import DictConfig
from .text.symbols import ARPABET, ID_TO_SYMBOL

__all__ = ["CLASSES", "VerifierConfig", "PhoneVerifier", "phone_classes", "ctc_loss_per_phone", "best_candidate"]

# Class 0 is CTC's blank. Stress is left out: it is prosody, and a recogniser of 39 phones needs less data.
PHONES = tuple(sorted({p.rstrip("012") for p in ARPABET}))
CLASSES: tuple[str, ...] = ("<blank>", *PHONES, *"abcdefghijklmnopqrstuvwxyz")
_CLASS = {name: i for i, name in enumerate(CLASSES)}


def phone_classes(ids: Sequence[int]) -> list[int]:
    """Tacotron 2 input ids → the verifier's target classes: ARPAbet phones without stress, letters in lower
    case; punctuation, spaces and padding carry no sound of their own and are left out."""
    out = []
    for i in ids:
        symbol = ID_TO_SYMBOL[int(i)]
        if symbol.startswith("@"):
            out.append(_CLASS[symbol[1:].rstrip("012")])
        elif symbol.isalpha() and len(symbol) == 1:
            out.append(_CLASS[symbol.lower()])
    return out


@dataclass
class VerifierConfig(DictConfig):
    """The recogniser's shape: three convolutions (the second halves the frame rate, about 43 per second, still
    several per phone), then one bidirectional GRU."""

    n_mel_channels: int = 80
    channels: int = 256
    kernel_size: int = 5
    hidden: int = 192
    dropout: float = 0.1
    n_classes: int = len(CLASSES)


class PhoneVerifier(nn.Module):
    """log-mel (B, n_mel, T) → CTC log-probabilities over `CLASSES`; `score` ranks candidate mels."""

    mel_mean: Tensor  # (n_mel, 1) buffers
    mel_std: Tensor

    def __init__(self, config: VerifierConfig | None = None):
        super().__init__()
        self.config = config = config or VerifierConfig()
        c, k = config.channels, config.kernel_size
        # Per-channel mean and spread of the training mels (set by the trainer, saved with the weights).
        self.register_buffer("mel_mean", torch.zeros(config.n_mel_channels, 1))
        self.register_buffer("mel_std", torch.ones(config.n_mel_channels, 1))
        self.convs = nn.ModuleList([nn.Conv1d(config.n_mel_channels, c, k, padding=k // 2),
                                    nn.Conv1d(c, c, k, stride=2, padding=k // 2),
                                    nn.Conv1d(c, c, k, padding=k // 2)])
        self.norms = nn.ModuleList([nn.BatchNorm1d(c) for _ in self.convs])
        self.rnn = nn.GRU(c, config.hidden, batch_first=True, bidirectional=True)
        self.proj = nn.Linear(2 * config.hidden, config.n_classes)

    def forward(self, mel: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """mel (B, n_mel, T), lengths (B,) → log-probabilities (B, T', n_classes) and T' per item (B,), T' = ⌈T/2⌉."""
        x = (mel - self.mel_mean) / self.mel_std
        for conv, norm in zip(self.convs, self.norms):
            x = F.dropout(F.relu(norm(conv(x))), self.config.dropout, self.training)
        lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
        packed = nn.utils.rnn.pack_padded_sequence(x.transpose(1, 2), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        x, _ = nn.utils.rnn.pad_packed_sequence(self.rnn(packed)[0], batch_first=True)  # (B, T', 2 * hidden)
        return self.proj(x).log_softmax(-1), lengths

    @torch.inference_mode()
    def score(self, mels: Sequence[Tensor], ids: Sequence[int]) -> Tensor:
        """How badly each candidate mel (n_mel, frames) says the sentence whose Tacotron 2 input is ``ids``:
        CTC loss per phone, (K,), lower is clearer; 0 for every candidate of an input without phones."""
        targets = phone_classes(ids)
        if not targets:
            return torch.zeros(len(mels))
        # A mel too short to hold its phones scores infinity, never 0: it is a decoding cut short.
        scores = torch.full((len(mels),), float("inf"))
        usable = [i for i, m in enumerate(mels) if m.shape[-1] >= 2 * len(targets)]  # 2 frames per CTC step
        if usable:
            scores[usable] = ctc_loss_per_phone(self, [mels[i].float() for i in usable], [targets] * len(usable),
                                                zero_infinity=False).cpu()
        return scores


def ctc_loss_per_phone(model: nn.Module, mels: Sequence[Tensor], targets: Sequence[Sequence[int]],
                       zero_infinity: bool = True) -> Tensor:
    """CTC loss per target symbol of each (n_mel, frames) mel against its classes → (B,). ``model`` is a
    `PhoneVerifier` or its DDP wrapper. A mel too short for its targets costs infinity, or 0 with
    ``zero_infinity`` (training: no gradient from it); callers keep targets non-empty."""
    lengths = torch.tensor([m.shape[-1] for m in mels])
    batch = mels[0].new_zeros(len(mels), mels[0].shape[0], int(lengths.max()))
    for i, mel in enumerate(mels):
        batch[i, :, :mel.shape[-1]] = mel
    log_probs, out_lengths = model(batch, lengths.to(batch.device))
    target_lengths = torch.tensor([len(t) for t in targets])
    flat = torch.tensor([c for t in targets for c in t], dtype=torch.long)
    nll = F.ctc_loss(log_probs.float().transpose(0, 1), flat, out_lengths.cpu(), target_lengths,
                     reduction="none", zero_infinity=zero_infinity)
    return nll / target_lengths.clamp(min=1).to(nll.device)


def best_candidate(verifier: PhoneVerifier, mels: Sequence[Tensor], ids: Sequence[int],
                   stopped_by_gate: Sequence[bool]) -> int:
    """The index of the decoding to keep among candidate mels (n_mel, frames) of one input ``ids``: the lowest
    `PhoneVerifier.score` among those that stopped by the gate (a decoding run into the step cap has babbled),
    or among all when none did; the first of equal scores."""
    scores = verifier.score(mels, ids)
    finished = torch.tensor([bool(g) for g in stopped_by_gate])
    if finished.any():
        scores = torch.where(finished, scores, torch.full_like(scores, float("inf")))
    return int(torch.argmin(scores))  # the first of equal minima, so 0 when every score is infinite

