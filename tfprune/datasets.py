"""The embedded real data: a 5,000-image sample of MNIST that ships with tfprune."""

from __future__ import annotations

import importlib.resources

import numpy as np

__all__ = ["load_mnist_sample"]

_SEED = 20171005
_N_TRAIN = 4000


def load_mnist_sample() -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Loads the embedded 5,000-image MNIST sample, shuffled and split 4,000 / 1,000.

    The file holds 500 real MNIST digits per class, grouped by class. They are shuffled with a
    fixed seed, so every call returns the same split. No network is used. MNIST is by Yann LeCun,
    Corinna Cortes and Christopher J. C. Burges, under CC BY-SA 3.0 (see `tfprune/data/README.md`).

    Returns:
        `((x_train, y_train), (x_test, y_test))`: `uint8` images of shape `(n, 28, 28)` with values
        in [0, 255] and `int64` labels in [0, 9]; 4,000 training and 1,000 test rows.

    Raises:
        FileNotFoundError: If the packaged data file is missing (a broken installation).

    Example:

    >>> (x_train, y_train), (x_test, y_test) = load_mnist_sample()
    >>> x_train.shape, x_test.shape, y_train.dtype.name
    ((4000, 28, 28), (1000, 28, 28), 'int64')
    >>> int(x_train.max()), sorted(set(y_test.tolist())) == list(range(10))
    (255, True)
    """
    source = importlib.resources.files("tfprune") / "data" / "mnist_sample_5000.npz"
    with source.open("rb") as f, np.load(f) as data:
        images = np.asarray(data["images"], dtype=np.uint8)
        labels = np.asarray(data["labels"], dtype=np.int64)
    order = np.random.default_rng(_SEED).permutation(len(labels))
    images, labels = images[order], labels[order]
    return (images[:_N_TRAIN], labels[:_N_TRAIN]), (images[_N_TRAIN:], labels[_N_TRAIN:])
