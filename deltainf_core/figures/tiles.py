"""Images as display tiles: enlarged so a 3-px trigger stays visible, framed or faded by a decision."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def to_display(image: Any, min_side: int = 84) -> np.ndarray:
    """A ``[C, H, W]``/``[H, W]`` image in ``[0, 1]`` (or uint8 pixels, as the core stores them) as
    uint8 ``[H, W]`` or ``[H, W, 3]``.

    Small images are enlarged by an integer factor with nearest-neighbour, so a 28-px
    digit stays crisp and a 3-px trigger stays visible.
    """
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    scale = 1.0 if arr.dtype == np.uint8 else 255.0
    arr = np.asarray(arr, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] in (1, 3):  # [C, H, W] as the core stores images
        arr = np.moveaxis(arr, 0, -1)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    factor = max(1, math.ceil(min_side / max(1, min(arr.shape[0], arr.shape[1]))))
    if factor > 1:
        arr = arr.repeat(factor, axis=0).repeat(factor, axis=1)
    return (np.clip(arr * scale, 0.0, 255.0) + 0.5).astype(np.uint8)


def framed(image: Any, colour: tuple[int, int, int] | None, width: int = 3, min_side: int = 84) -> np.ndarray:
    """``to_display`` with a coloured frame (e.g. orange for a known poison); RGB uint8."""
    tile = to_display(image, min_side)
    if tile.ndim == 2:
        tile = np.repeat(tile[..., None], 3, axis=2)
    if colour is None:
        return tile
    out = np.empty((tile.shape[0] + 2 * width, tile.shape[1] + 2 * width, 3), dtype=np.uint8)
    out[:] = np.asarray(colour, dtype=np.uint8)
    out[width:-width, width:-width] = tile
    return out


def faded(image: Any, min_side: int = 84, amount: float = 0.6) -> np.ndarray:
    """``to_display`` washed out towards white (a rejected image: still legible, visibly set aside)."""
    tile = to_display(image, min_side).astype(np.float32)
    return (tile + (255.0 - tile) * amount + 0.5).astype(np.uint8)
