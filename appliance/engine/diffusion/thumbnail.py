"""The golden fingerprint of an image: per-channel means over an 8x8 grid of blocks.

Small enough for the manifest, and it moves when an engine computes
differently, while a one-level rounding difference in a pixel does not.
"""

from __future__ import annotations

import numpy as np

CELLS = 8


def thumbnail(pixels: np.ndarray) -> list[float]:
    """[H, W, 3] uint8 -> 8 x 8 x 3 block means (0-255), row-major, rounded to 0.01."""
    p = pixels.astype(np.float64)
    rows = [np.array_split(band, CELLS, axis=1) for band in np.array_split(p, CELLS, axis=0)]
    return [round(float(x), 2) for row in rows for cell in row for x in cell.mean(axis=(0, 1))]


def max_difference(a: list[float], b: list[float]) -> float:
    return float(np.abs(np.asarray(a) - np.asarray(b)).max()) if len(a) == len(b) else float("inf")
