"""Event-adversarial training (EANN: Wang et al., "EANN: Event Adversarial Neural Networks for Multi-Modal Fake News
Detection", KDD 2018), for every network: a discriminator guesses each training post's event from the head's fused
representation (`ModelOutput.features`) and learns to do so, while a gradient-reversal layer hands the network the
negated, lambda-scaled gradient, so the network learns features the discriminator cannot tell events apart by
(EANN's min-max of L_d - lambda L_e, eq. 5-7, with the reversal layer of Ganin & Lempitsky 2015).

Not part of any checkpoint: the discriminator exists only while training (`trainer train --event-adversarial
LAMBDA`); its weights travel in the trainer's resumable state.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class GradientReversal(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by -lambda."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lam * grad, None


def reverse_gradient(x: torch.Tensor, lam: float) -> torch.Tensor:
    return GradientReversal.apply(x, lam)


class EventDiscriminator(nn.Module):
    """EANN's event discriminator: two fully connected layers (LeakyReLU between) over the fused representation,
    reversed-gradient input, softmax over the training events."""

    def __init__(self, in_dim: int, num_events: int, lam: float, hidden: int = 64):
        super().__init__()
        self.lam = lam
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, num_events))

    def loss(self, features: torch.Tensor, events: torch.Tensor) -> torch.Tensor:
        """L_e: cross-entropy of the event guess; its gradient reaches the network negated and scaled by lambda."""
        return F.cross_entropy(self.net(reverse_gradient(features, self.lam)).float(), events)
