"""Tacotron 2's training loss: NVIDIA's Tacotron2Loss (mel MSE + postnet MSE + gate BCE), optionally over real
frames only, plus a guided-attention term (the diagonal prior, or a prior of each step's own target from phone
timings: `tacoglow.train.alignment`), and the alignment measures validation reports."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["Tacotron2Loss", "attention_scores", "guided_attention_loss"]


def _diagonal_prior(step_lengths: Tensor, text_lengths: Tensor, steps: int, width: int,
                    sigma: float) -> tuple[Tensor, Tensor]:
    """exp(-(n/N - t/T)^2 / 2 sigma^2) over (B, steps, width), and the mask of real (t, n) pairs."""
    device = step_lengths.device
    t = torch.arange(steps, device=device)[None, :, None] / step_lengths[:, None, None].float()
    n = torch.arange(width, device=device)[None, None, :] / text_lengths[:, None, None].float()
    prior = torch.exp(-(n - t) ** 2 / (2 * sigma ** 2))
    mask = ((torch.arange(steps, device=device)[None, :] < step_lengths[:, None])[:, :, None]
            & (torch.arange(width, device=device)[None, :] < text_lengths[:, None])[:, None, :])
    return prior, mask


def guided_attention_loss(alignments: Tensor, text_lengths: Tensor, step_lengths: Tensor,
                          sigma: float = 0.2, prior: Tensor | None = None) -> Tensor:
    """Tachibana et al. (2017): attention weight times (1 - diagonal prior), summed over text positions and
    averaged over real decoder steps, i.e. the share of attention off the diagonal band (0 = on it). A
    ``prior`` (B, >= steps, >= width), e.g. from phone timings, replaces the diagonal where it is not NaN."""
    diagonal, mask = _diagonal_prior(step_lengths, text_lengths, alignments.size(1), alignments.size(2), sigma)
    if prior is not None:
        prior = prior[:, :alignments.size(1), :alignments.size(2)].to(diagonal)
        diagonal = torch.where(prior.isnan(), diagonal, prior)
    return ((1 - diagonal) * alignments * mask).sum() / step_lengths.sum().clamp(min=1)


def attention_scores(alignments: Tensor, text_lengths: Tensor, step_lengths: Tensor,
                     sigma: float = 0.2) -> tuple[Tensor, Tensor]:
    """Per item: focus (mean over real decoder steps of the largest attention weight; 1 = sharp) and
    diagonality (mean share of attention inside the diagonal band of width sigma; 1 = on the diagonal)."""
    alignments = alignments.float()
    prior, mask = _diagonal_prior(step_lengths, text_lengths, alignments.size(1), alignments.size(2), sigma)
    a = alignments * mask
    steps = step_lengths.clamp(min=1).float()
    focus = a.max(dim=2).values.sum(dim=1) / steps
    diagonality = (a * prior).sum(dim=(1, 2)) / steps
    return focus, diagonality


class Tacotron2Loss(nn.Module):
    """The reference's mel MSE + postnet MSE + gate BCE, optionally over real frames and decoder steps only
    (``masked``), plus a weighted guided-attention term.

    ``forward(outputs, mels, gate, mel_lengths, text_lengths, guided_attention_weight, attention_prior)``
    takes the ``(mel, mel_postnet, gate, alignments)`` of :meth:`tacoglow.tacotron2.Tacotron2.forward`, the target mels
    ``(n_batch, n_mel_channels, T)`` with T a multiple of r, the stop targets ``(n_batch, T / r)`` (1 from the
    step holding the last real frame on), the real frames and text lengths ``(n_batch,)`` and optionally a
    guided-attention prior (:func:`guided_attention_loss`); it returns the total ("loss") and each term
    ("mel_loss", "postnet_loss", "gate_loss", "attention_loss").
    """

    def __init__(self, masked: bool = False, gate_pos_weight: float = 1.0,
                 guided_attention_sigma: float = 0.2) -> None:
        super().__init__()
        self.masked = masked  # False: padding counts, as the reference
        self.gate_pos_weight = gate_pos_weight  # BCE weight of "stop" targets
        self.guided_attention_sigma = guided_attention_sigma

    def forward(self, outputs: Sequence[Tensor], mels: Tensor, gate: Tensor, mel_lengths: Tensor,
                text_lengths: Tensor, guided_attention_weight: float = 0.0,
                attention_prior: Tensor | None = None) -> dict[str, Tensor]:
        mel, mel_postnet, gate_logits, alignments = (x.float() for x in outputs)
        pos_weight = torch.tensor(self.gate_pos_weight, device=gate_logits.device)
        r = mels.size(2) // gate.size(1)
        step_lengths = (mel_lengths + r - 1) // r  # decoder steps that hold real frames
        if self.masked:
            frames = (torch.arange(mels.size(2), device=mels.device)[None, :] < mel_lengths[:, None])
            frames = frames.unsqueeze(1).float()  # (B, 1, T)
            count = frames.sum() * mels.size(1)
            mel_loss = ((mel - mels) ** 2 * frames).sum() / count
            postnet_loss = ((mel_postnet - mels) ** 2 * frames).sum() / count
            steps = torch.arange(gate_logits.size(1), device=gate_logits.device)[None, :] < step_lengths[:, None]
            gate_loss = F.binary_cross_entropy_with_logits(gate_logits[steps], gate[steps], pos_weight=pos_weight)
        else:
            mel_loss = F.mse_loss(mel, mels)
            postnet_loss = F.mse_loss(mel_postnet, mels)
            gate_loss = F.binary_cross_entropy_with_logits(gate_logits, gate, pos_weight=pos_weight)
        attention_loss = (guided_attention_loss(alignments, text_lengths, step_lengths, self.guided_attention_sigma,
                                                attention_prior)
                          if guided_attention_weight > 0 else mel.new_zeros(()))
        loss = mel_loss + postnet_loss + gate_loss + guided_attention_weight * attention_loss
        return {"loss": loss, "mel_loss": mel_loss, "postnet_loss": postnet_loss, "gate_loss": gate_loss,
                "attention_loss": attention_loss}
