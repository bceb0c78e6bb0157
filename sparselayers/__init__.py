"""sparselayers: Keras 3 layers for images with missing pixels.

The package is grouped by concern: `layers` (the sparsity-aware Keras
layers), `models` (the sparse VAE and its variants), `mri` (the thick-slice
MRI workflow and its command line) and `distribute` (several workers,
streaming). `masks`, `datasets` and `console` are small helpers. The most
used names are also here: ``from sparselayers import SparseDense``.

Every layer takes ``[image, mask]``, the mask being 1 where an entry is
observed and 0 where it is missing (bool, or float > 0.5), of the image's shape
or with a single channel. Missing entries may hold anything, NaN included.
"""

from sparselayers import console

# The distribution's version, shared by `imputers` (setup.cfg reads it here).
__version__ = "0.2.0"

# The package's command lines answer --help before TensorFlow is loaded: when
# one of them imports this package, it imports the submodules it needs itself,
# after parsing its arguments. Any other import loads everything now, so that
# the Keras classes are registered for `keras.models.load_model`.
_COMMAND_LINE = console.running_a_command()

if not _COMMAND_LINE:
    console.import_tensorflow_quietly()

    from sparselayers import datasets
    from sparselayers import masks
    from sparselayers import distribute
    from sparselayers import layers
    from sparselayers import models
    from sparselayers import mri
    from sparselayers.distribute import streaming
    from sparselayers.layers import FillMissing
    from sparselayers.layers import LocallyConnectedSparse2D
    from sparselayers.layers import LocallyConnectedSparse3D
    from sparselayers.layers import SparseDense
    from sparselayers.layers import WeightedConv1D
    from sparselayers.layers import WeightedConv2D
    from sparselayers.layers import WeightedConv3D
    from sparselayers.layers import interpolate_along
    from sparselayers.layers import interpolate_rows
    from sparselayers.layers import masked_least_squares
    from sparselayers.models import VARIANTS
    from sparselayers.models import LinearSubspaceVAE
    from sparselayers.models import SparseVAE
    from sparselayers.models import build_variant
    from sparselayers.models import sparse_vae_loss

__all__ = [
    "FillMissing",
    "LinearSubspaceVAE",
    "SparseVAE",
    "VARIANTS",
    "build_variant",
    "interpolate_along",
    "interpolate_rows",
    "sparse_vae_loss",
    "LocallyConnectedSparse2D",
    "LocallyConnectedSparse3D",
    "SparseDense",
    "WeightedConv1D",
    "WeightedConv2D",
    "WeightedConv3D",
    "masked_least_squares",
    "datasets",
    "masks",
    "console",
    "streaming",
    "layers",
    "models",
    "mri",
    "distribute",
]
