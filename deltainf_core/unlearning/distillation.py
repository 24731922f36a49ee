"""Teacher–student pieces shared by SCRUB and Bad Teacher.

Both methods fine-tune a copy of the poisoned model (the student) to match a
teacher's softened outputs on some images and not on others; they share the
temperature-scaled KL divergence, the mini-batch stream and the cost convention.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from ..data.base import ImageSet
from ..training import augment_batch

FORWARD_COST = 1.0 / 3.0
"""A forward-only pass (teacher outputs, evaluation) costs about a third of a
forward+backward pass; ``UnlearnResult.passes`` counts it that way."""


def kl_to_teacher(student_logits: torch.Tensor, target_probs: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """KL(teacher ‖ student) of temperature-softened outputs, times T² (Hinton et al.).

    The T² factor keeps the gradient size independent of the temperature, so the
    learning rate means the same thing at T = 1 and T = 4.
    """
    log_student = F.log_softmax(student_logits / temperature, dim=1)
    return F.kl_div(log_student, target_probs, reduction="batchmean") * temperature**2


@torch.no_grad()
def teacher_probs(teacher: nn.Module, x: torch.Tensor, temperature: float) -> torch.Tensor:
    return F.softmax(teacher(x) / temperature, dim=1)


def frozen(model: nn.Module) -> nn.Module:
    """Eval mode, no gradients: a teacher that can never drift."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def minibatches(
    data: ImageSet,
    batch_size: int,
    gen: torch.Generator,
    *,
    augment: bool,
    flip: bool,
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """One shuffled epoch of ``(images, labels, positions)``, augmented as in training.

    ``positions`` index into ``data`` (callers use them to look up per-image flags).
    """
    n = len(data)
    order = torch.randperm(n, generator=gen)
    for b in range(math.ceil(n / batch_size)):
        idx = order[b * batch_size : (b + 1) * batch_size]
        x = data.float_batch(idx)
        if augment:
            x = augment_batch(x, flip, gen)
        yield x.to(device), data.labels[idx].to(device), idx
