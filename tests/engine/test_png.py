"""PNG out and back, and the golden thumbnail: sizes kept, pixels exact, drift measured in levels."""

from __future__ import annotations

import numpy as np

from appliance.engine.diffusion.pipeline import to_uint8
from appliance.engine.diffusion.png import decode_png, encode_png
from appliance.engine.diffusion.thumbnail import max_difference, thumbnail


def test_png_round_trip_keeps_size_and_pixels():
    pixels = np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)  # width 80, height 48
    data = encode_png(pixels)
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    back = decode_png(data)
    assert back.shape == (48, 80, 3) and np.array_equal(back, pixels)


def test_to_uint8_rounds_like_diffusers():
    images = np.array([[[[0.0, 0.5, 1.0], [0.001, 0.999, 0.2]]]], dtype=np.float32)
    assert to_uint8(images).tolist() == [[[[0, 128, 255], [0, 255, 51]]]]


def test_thumbnail_is_block_means_and_notices_drift():
    pixels = np.zeros((64, 64, 3), np.uint8)
    pixels[:8, :8] = [255, 0, 10]
    t = thumbnail(pixels)
    assert len(t) == 8 * 8 * 3 and t[:3] == [255.0, 0.0, 10.0] and t[3:6] == [0.0, 0.0, 0.0]
    shifted = pixels.copy()
    shifted[0, 0] = [250, 0, 10]  # one pixel, a few levels: well inside the tolerance
    assert max_difference(thumbnail(shifted), t) < 0.1
    broken = pixels.copy()
    broken[8:16, 8:16] = 40  # a whole block wrong: what a misbehaving engine looks like
    assert max_difference(thumbnail(broken), t) == 40.0
    assert max_difference(t[:-3], t) == float("inf")
