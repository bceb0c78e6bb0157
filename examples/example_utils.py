"""Data loading, figures and command-line set-up shared by the example scripts.

Nothing heavy is imported at module level: the examples parse their
arguments (and answer --help) before TensorFlow is loaded.
"""

import argparse
import os
import sys

import numpy as np

VARIANT_NAMES = ("linear", "conv-zero", "conv-mean", "conv-interp", "conv-interp-wmask",
                 "conv-sparse", "conv-FC-sparse")


class DefaultsOnceFormatter(argparse.HelpFormatter):
    """Shows an option's default once: not where its help already says it, nor for
    flags, nor for options whose absence means "not given" (None).

    The rule of ``sparselayers-impute-slices --help`` (`sparselayers.mri.cli`);
    repeated here because importing the package would load TensorFlow
    before ``--help`` is answered.
    """

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


def argument_parser(doc):
    """An argparse parser showing each default once, described by the module
    docstring's first paragraph."""
    return argparse.ArgumentParser(description=doc.split("\n\n")[0],
                                   formatter_class=DefaultsOnceFormatter)


def import_tensorflow():
    """Loads TensorFlow through sparselayers, which hides its load-time log lines
    (`sparselayers.console`); call it after parsing, before importing keras."""
    import sparselayers  # noqa: F401


def progress_verbosity(quiet):
    """Keras' verbose: 0 if quiet, a bar on a terminal, one line per epoch in a log."""
    from sparselayers import console

    return console.progress_verbosity(quiet)


# 3,500 MNIST training images shipped with the examples (see data/README.md).
MNIST_SAMPLE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "mnist_3500.npz")


def load_images(dataset="mnist-sample", data=None, limit=None):
    """Images in [0, 1], float32 (n, H, W, 1).

    Args:
        dataset: "mnist-sample" (3,500 MNIST digits shipped in examples/data,
            offline), "digits" (scikit-learn's embedded 8x8 digits, offline),
            "mnist" or "fashion_mnist" (downloaded by keras.datasets).
        data: a local .npz / .npy / MNIST IDX (.gz) file; overrides `dataset`.
        limit: keep at most this many images.
    """
    from sparselayers import datasets

    if data is not None:
        images = datasets.load_images(data)
    elif dataset == "mnist-sample":
        images = datasets.load_images(MNIST_SAMPLE)
    elif dataset == "digits":
        from sklearn.datasets import load_digits

        images = load_digits().images.astype("float32")[..., None] / 16.0
    elif dataset in ("mnist", "fashion_mnist"):
        import keras

        module = keras.datasets.mnist if dataset == "mnist" else keras.datasets.fashion_mnist
        try:
            (train, _), (test, _) = module.load_data()
        except Exception as error:  # Keras raises a bare Exception on a failed download
            sys.exit(f"Could not download {dataset} ({type(error).__name__}): without network "
                     f"access, give a local copy with --data PATH (an .npz, .npy or MNIST IDX "
                     f"file) or use --dataset digits.")
        images = np.concatenate([train, test]).astype("float32")[..., None] / 255.0
    else:
        raise ValueError(f"Unknown dataset {dataset!r}: use mnist-sample, digits, mnist or "
                         "fashion_mnist.")
    return images[:limit] if limit else images


def save_grid(path, rows, titles, vmax=1.0, title=None):
    """Saves a grid of single-channel images: one row per entry of `rows`.

    Args:
        path: the PNG to write (its folder is created).
        rows: arrays (count, H, W, 1), one per row, shown in [0, vmax].
        titles: one label per row, written left of it.
        vmax: the grey level shown white.
        title: the figure's title, or None.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(rows[0])
    # A left margin wide enough for the row labels, written horizontally.
    figure, axes = plt.subplots(len(rows), count, figsize=(1.2 * count + 1.8, 1.3 * len(rows)),
                                squeeze=False)
    for row, images in enumerate(rows):
        for column in range(count):
            axis = axes[row, column]
            axis.imshow(images[column, ..., 0], cmap="gray", vmin=0, vmax=vmax)
            axis.set_xticks([])
            axis.set_yticks([])
        axes[row, 0].set_ylabel(titles[row], fontsize=11, rotation=0, ha="right", va="center",
                                labelpad=8)
    if title:
        figure.suptitle(title, fontsize=11)
    figure.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
