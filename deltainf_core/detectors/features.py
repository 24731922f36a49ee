"""Penultimate-layer activations of the training set, shared by the feature-space baselines."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from ..data.base import ImageSet


@torch.no_grad()
def penultimate_features(model: nn.Module, data: ImageSet, batch_size: int = 256) -> np.ndarray:
    """``model.features`` of every image in eval mode, as a float64 ``[N, D]`` array."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [model.features(data.images[i : i + batch_size].to(device)).flatten(1).double().cpu()
           for i in range(0, len(data), batch_size)]
    model.train(was_training)
    return torch.cat(out).numpy() if out else np.zeros((0, 0))
