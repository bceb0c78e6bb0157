"""Data loading and figures shared by the example scripts."""

import os

import numpy as np

from sparselayers import datasets


def load_images(dataset="digits", data=None, limit=None):
    """Images in [0, 1], float32 (n, H, W, 1).

    Args:
        dataset: "digits" (scikit-learn's embedded 8x8 digits, offline),
            "mnist" or "fashion_mnist" (downloaded by keras.datasets).
        data: a local .npz / .npy / MNIST IDX (.gz) file; overrides `dataset`.
        limit: keep at most this many images.
    """
    if data is not None:
        images = datasets.load_images(data)
    elif dataset == "digits":
        from sklearn.datasets import load_digits

        images = load_digits().images.astype("float32")[..., None] / 16.0
    elif dataset in ("mnist", "fashion_mnist"):
        import keras

        module = keras.datasets.mnist if dataset == "mnist" else keras.datasets.fashion_mnist
        (train, _), (test, _) = module.load_data()
        images = np.concatenate([train, test]).astype("float32")[..., None] / 255.0
    else:
        raise ValueError(f"Unknown dataset {dataset!r}: use digits, mnist or fashion_mnist.")
    return images[:limit] if limit else images


def save_grid(path, rows, titles, vmax=1.0):
    """Saves a grid of single-channel images: one row per entry of `rows`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(rows[0])
    figure, axes = plt.subplots(len(rows), count, figsize=(1.2 * count, 1.3 * len(rows)),
                                squeeze=False)
    for row, (images, title) in enumerate(zip(rows, titles)):
        for column in range(count):
            axis = axes[row, column]
            axis.imshow(images[column, ..., 0], cmap="gray", vmin=0, vmax=vmax)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(title, fontsize=8)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
