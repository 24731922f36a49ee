"""Uploaded affected images: accepted ones match the model's input, bad ones give one sentence."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from deltainf_core.errors import DataError
from deltainf_core.uploads import MIN_SIDE, load_affected_image

GRAY = (1, 28, 28)
RGB = (3, 32, 32)


def png(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def refused(data: bytes, shape=GRAY) -> str:
    with pytest.raises(DataError) as info:
        load_affected_image(data, shape, "x.png")
    msg = str(info.value)
    assert "\n" not in msg and "Traceback" not in msg
    return msg


def test_matching_grayscale_image_is_taken_as_is():
    arr = np.random.default_rng(0).integers(0, 256, size=(28, 28), dtype=np.uint8)
    up = load_affected_image(png(Image.fromarray(arr, "L")), GRAY, "digit.png")
    assert up.image.shape == GRAY and up.image.dtype == torch.float32
    assert up.notes == []
    assert torch.allclose(up.image[0], torch.from_numpy(arr / 255.0).float())
    assert up.original_size == (28, 28)


def test_colour_image_is_converted_to_grayscale_with_a_note():
    im = Image.new("RGB", (28, 28), (255, 0, 0))
    up = load_affected_image(png(im), GRAY, "red.png")
    assert up.image.shape == GRAY
    assert any("grayscale" in n for n in up.notes)
    assert up.image.max() == pytest.approx(0.299, abs=1e-3)


def test_grayscale_image_is_copied_to_three_channels():
    up = load_affected_image(png(Image.new("L", (32, 32), 128)), RGB, "g.png")
    assert up.image.shape == RGB
    assert torch.equal(up.image[0], up.image[2])
    assert any("red, green and blue" in n for n in up.notes)


def test_other_sizes_are_resized_with_a_note_about_aspect_ratio():
    up = load_affected_image(png(Image.new("L", (64, 40), 200)), GRAY, "wide.png")
    assert up.image.shape == GRAY
    note = " ".join(up.notes)
    assert "64×40" in note and "28×28" in note and "aspect ratio" in note
    square = load_affected_image(png(Image.new("L", (56, 56), 200)), GRAY, "sq.png")
    assert "aspect ratio" not in " ".join(square.notes)
    assert square.image.min() == pytest.approx(200 / 255, abs=1e-3)


def test_text_file_is_refused():
    assert "not an image" in refused(b"hello, I am a text file\n" * 10)


def test_empty_file_is_refused():
    assert "empty" in refused(b"")


def test_one_pixel_image_is_refused():
    msg = refused(png(Image.new("RGB", (1, 1))))
    assert "1×1" in msg and f"{MIN_SIDE}×{MIN_SIDE}" in msg


def test_transparent_rgba_png_is_refused():
    im = Image.new("RGBA", (28, 28), (10, 20, 30, 255))
    im.putpixel((3, 3), (0, 0, 0, 0))
    msg = refused(png(im))
    assert "alpha" in msg and "transparency" in msg


def test_opaque_rgba_png_drops_alpha_with_a_note():
    im = Image.new("RGBA", (32, 32), (10, 200, 30, 255))
    up = load_affected_image(png(im), RGB, "opaque.png")
    assert up.image.shape == RGB
    assert any("alpha" in n for n in up.notes)
    assert up.image[1].mean() == pytest.approx(200 / 255, abs=1e-3)


def test_palette_image_with_transparency_is_refused():
    im = Image.new("P", (28, 28), 0)
    im.putpalette([0, 0, 0, 255, 255, 255] + [0] * 762)
    im.info["transparency"] = 0
    assert "alpha" in refused(png(im))


def test_truncated_png_is_refused():
    data = png(Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64), dtype=np.uint8)))
    assert "damaged" in refused(data[: len(data) // 2]) or "not an image" in refused(data[: len(data) // 2])


def test_sixteen_bit_grayscale_is_scaled():
    arr = np.full((28, 28), 65535 // 2, dtype=np.uint16)
    up = load_affected_image(png(Image.fromarray(arr)), GRAY, "deep.png")
    assert up.image.mean() == pytest.approx(0.5, abs=1e-3)


def test_float_tiff_is_refused():
    im = Image.fromarray(np.full((28, 28), 3.5, dtype=np.float32), "F")
    assert "8-bit" in refused(png(im, "TIFF"))


def test_huge_image_is_refused_before_decoding():
    im = Image.new("1", (9000, 5000))
    assert "too large" in refused(png(im))


def test_multi_frame_gif_uses_the_first_frame():
    frames = [Image.new("L", (28, 28), v) for v in (0, 255)]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:])
    up = load_affected_image(buf.getvalue(), GRAY, "anim.gif")
    assert any("frames" in n for n in up.notes)
    assert up.image.max() == 0.0


def test_models_with_unusual_channel_counts_are_refused():
    assert "channels" in refused(png(Image.new("L", (28, 28))), (4, 28, 28))
