"""Validate an uploaded affected image and bring it into the model's input shape.

An analyst who found a misbehaving image in the wild uploads it; it must become a
``[C, H, W]`` float tensor in ``[0, 1]`` exactly like the test images, or be
refused with one sentence (``DataError``). What is fixed silently, with a note,
and what is refused:

- not an image (a text file, a truncated PNG, an empty file): refused;
- smaller than ``MIN_SIDE`` pixels on a side (a 1×1 image): refused — there is
  nothing left of a trigger to trace;
- larger than ``MAX_PIXELS`` (a decompression bomb): refused;
- an alpha channel (RGBA / LA / palette with transparency): **refused when any
  pixel is see-through**, because flattening needs a background colour we would
  have to guess, and the guess changes exactly the pixels a trigger may live in;
  a fully opaque alpha channel carries no information and is dropped with a note;
- colour vs. grayscale: converted to the model's channel count with a note;
- a different size: resized (bilinear, antialiased) with a note, which also says
  when the aspect ratio changes;
- 16-bit grayscale is scaled to ``[0, 1]``; 32-bit integer and float images are
  refused (their value range is not knowable); multi-frame files use frame one.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import DataError

MIN_SIDE = 8
"""Smallest accepted width/height in pixels."""

MAX_PIXELS = 40_000_000
"""Largest accepted width × height (PIL's own bomb check is a warning only up to 2× this)."""

MAX_BYTES = 50 * 2**20
"""Largest accepted upload."""


@dataclass
class UploadedImage:
    """An upload ready for the model: ``image`` is ``[C, H, W]`` float32 in ``[0, 1]``.

    notes: human-readable sentences about every change made (show them to the user).
    original_size: (width, height) as uploaded.
    """

    image: torch.Tensor
    name: str
    notes: list[str] = field(default_factory=list)
    original_size: tuple[int, int] = (0, 0)


def _open(data: bytes, name: str) -> Image.Image:
    if not data:
        raise DataError(f"{name} is empty")
    if len(data) > MAX_BYTES:
        raise DataError(f"{name} is {len(data) / 2**20:.0f} MB; upload an image under {MAX_BYTES // 2**20} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(data))
            if im.width * im.height > MAX_PIXELS:
                raise DataError(
                    f"{name} is {im.width}×{im.height} pixels, too large to be a test image "
                    f"(limit {MAX_PIXELS // 1_000_000} megapixels)"
                )
            im.load()
    except DataError:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        if isinstance(err, UnidentifiedImageError):
            raise DataError(
                f"{name} is not an image that can be read (use PNG, JPEG, BMP, GIF, TIFF or WebP)"
            ) from None
        raise DataError(f"{name} is too large to be a test image") from None
    except (OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{name} is a damaged or truncated image ({type(err).__name__})") from None
    return im


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info)


def _drop_alpha(im: Image.Image, name: str, notes: list[str]) -> Image.Image:
    """Refuse real transparency; drop an alpha channel that is fully opaque everywhere."""
    if im.mode == "P" or im.mode == "PA":
        im = im.convert("RGBA")
    alpha = np.asarray(im.getchannel("A"))
    if alpha.min() < 255:
        share = float((alpha < 255).mean())
        raise DataError(
            f"{name} has an alpha channel with see-through pixels ({share:.0%} of the image); "
            "save it without transparency (flattened to RGB or grayscale) and upload it again"
        )
    notes.append(f"{name} had a 4th (alpha) channel that is fully opaque; it was dropped")
    return im.convert("L" if im.mode in ("LA", "La") else "RGB")


def _to_array(im: Image.Image, name: str) -> np.ndarray:
    """``[H, W]`` or ``[H, W, 3]`` float32 in ``[0, 1]``."""
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N"):
        return np.asarray(im, dtype=np.float32) / 65535.0
    if im.mode in ("I", "F"):
        raise DataError(
            f"{name} stores 32-bit {'float' if im.mode == 'F' else 'integer'} pixels whose range is "
            "unknown; save it as an 8-bit PNG"
        )
    return np.asarray(im, dtype=np.float32) / 255.0


def load_affected_image(data: bytes, image_shape: tuple[int, int, int],
                        name: str = "uploaded file") -> UploadedImage:
    """Decode ``data`` and convert it to ``image_shape`` = ``(C, H, W)``; ``DataError`` if unusable."""
    channels, height, width = (int(v) for v in image_shape)
    if channels not in (1, 3):
        raise DataError(f"the model takes {channels}-channel images; only 1 or 3 channels are supported")
    im = _open(data, name)
    notes: list[str] = []
    size = (im.width, im.height)
    if getattr(im, "n_frames", 1) > 1:
        im.seek(0)
        notes.append(f"{name} holds {im.n_frames} frames; the first one is used")
    if min(size) < MIN_SIDE:
        raise DataError(
            f"{name} is only {size[0]}×{size[1]} pixels; upload an image at least {MIN_SIDE}×{MIN_SIDE}"
        )
    im = ImageOps.exif_transpose(im) or im
    if _has_alpha(im):
        im = _drop_alpha(im, name, notes)
    if im.mode == "1":
        im = im.convert("L")
    elif im.mode in ("P", "CMYK", "YCbCr", "LAB", "HSV"):
        notes.append(f"{name} was stored as {im.mode}; converted to RGB")
        im = im.convert("RGB")
    arr = _to_array(im, name)
    is_colour = arr.ndim == 3
    if is_colour and channels == 1:
        notes.append(f"{name} is a colour image; converted to grayscale for this 1-channel model")
        arr = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif not is_colour and channels == 3:
        notes.append(f"{name} is grayscale; its channel was copied to red, green and blue")
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    tensor = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float32))
    tensor = tensor.unsqueeze(0) if tensor.ndim == 2 else tensor.permute(2, 0, 1)
    if (tensor.shape[1], tensor.shape[2]) != (height, width):
        tensor = torch.nn.functional.interpolate(
            tensor.unsqueeze(0), size=(height, width), mode="bilinear", antialias=True, align_corners=False
        )[0]
        aspect_changed = abs(size[0] / size[1] - width / height) > 0.02
        notes.append(
            f"{name} was resized from {size[0]}×{size[1]} to {width}×{height} pixels, the model's input size"
            + (" (the aspect ratio changed)" if aspect_changed else "")
        )
    return UploadedImage(tensor.clamp(0.0, 1.0).contiguous(), name, notes, size)


__all__ = ["MAX_PIXELS", "MIN_SIDE", "UploadedImage", "load_affected_image"]
