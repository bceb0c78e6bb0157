"""The `--model` of the workflow, checked before any work: a readable Keras
model that maps ``[image, mask]`` cuts of each volume to images.

Example:

>>> model = load_model("imputed/model.keras")
>>> check_model(model, PreparedVolume("scan.nii.gz"))
"""

import os
import zipfile

import keras
import numpy as np

from sparselayers.models.sparse_vae import SparseVAE
from sparselayers.mri import imputation

__all__ = ["load_model", "check_model"]


def load_model(path):
    """A `--model` file loaded; ValueError naming it if it is not a Keras model."""
    path = str(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: --model: no such file.")
    if path.lower().endswith(".keras") and not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: --model is not a .keras file (not a zip archive).")
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # zipfile, h5py and Keras raise many kinds
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"{path}: --model is not a readable Keras model "
                         f"({type(error).__name__}: {reason[:160]}).") from None


def check_model(model, prepared, name="model"):
    """ValueError unless `model` maps ``[image, mask]`` cuts of `prepared` to images.

    The model is called once on one cut of the volume's size (zeros, all
    rows observed; padded to a fixed input size): it must take two inputs
    and return a finite image of the cut's shape.
    """
    imputation.check_cuts_fit(model, prepared.fine_shape(), prepared.acquisition,
                              name=prepared.path)
    if isinstance(model, SparseVAE):
        return
    try:
        inputs = list(model.inputs)
    except (AttributeError, TypeError, ValueError):
        inputs = None   # a subclassed model: its call decides
    if inputs is not None and len(inputs) != 2:
        raise ValueError(f"--model {name}: takes {len(inputs)} input(s); the workflow's models "
                         "take [image, mask] (e.g. build_variant('conv-interp-residual')).")
    fixed = imputation.fixed_input_size(model)
    shape = prepared.fine_shape()
    along = shape[prepared.axis]
    across = max(size for axis, size in enumerate(shape) if axis != prepared.axis)
    cut = (1, fixed[0] or along, fixed[1] or across, 1)
    try:
        output = np.asarray(model([np.zeros(cut, np.float32), np.ones(cut, np.float32)],
                                  training=False))
    except Exception as error:  # whatever the model raises
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"--model {name}: cannot map [image, mask] cuts of {cut[1]} x {cut[2]} "
                         f"voxels to an image ({type(error).__name__}: {reason[:160]}).") from None
    if output.shape != cut:
        raise ValueError(f"--model {name}: maps [image, mask] of shape {cut} to shape "
                         f"{output.shape}, not to an image of the same shape.")
    if not np.all(np.isfinite(output)):
        raise ValueError(f"--model {name}: returns NaN or Inf on a blank cut (a diverged "
                         "training?).")
