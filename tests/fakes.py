"""Small stand-ins for data sets the tests must not need: made on the spot, in the data set's own file format."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def fake_fashion_mnist(folder: Path, n_train: int, n_test: int) -> None:
    """Random 28x28 images and cyclic labels in Fashion-MNIST's IDX files under ``folder`` (made here)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (folder / f"{split}-images-idx3-ubyte").write_bytes(
            bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in images.shape) + images.tobytes())
        (folder / f"{split}-labels-idx1-ubyte").write_bytes(
            bytes([0, 0, 8, 1]) + n.to_bytes(4, "big") + (np.arange(n) % 10).astype(np.uint8).tobytes())
