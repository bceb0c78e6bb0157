"""sparselayers: Keras 3 layers for images with missing pixels.

Every layer takes ``[image, mask]``, the mask being 1 where an entry is
observed and 0 where it is missing (bool, or float > 0.5), of the image's shape
or with a single channel. Missing entries may hold anything, NaN included.
"""

import os
import sys

from sparselayers import console

# The distribution's version, shared by `imputers` (setup.cfg reads it here).
__version__ = "0.1.0"

# The package's command lines answer --help before TensorFlow is loaded: when
# one of them imports this package, it imports the submodules it needs itself,
# after parsing its arguments. Any other import loads everything now, so that
# the Keras classes are registered for `keras.models.load_model`.
_COMMANDS = ("sparselayers-impute-slices",)
_COMMAND_LINE = bool(sys.argv) and os.path.basename(sys.argv[0]) in _COMMANDS

if not _COMMAND_LINE:
    console.import_tensorflow_quietly()

    from sparselayers import datasets
    from sparselayers import masks
    from sparselayers import sparse_vae_loss
    from sparselayers import streaming
    from sparselayers.fill_missing import FillMissing
    from sparselayers.fill_missing import interpolate_along
    from sparselayers.fill_missing import interpolate_rows
    from sparselayers.linear_subspace_vae import LinearSubspaceVAE
    from sparselayers.locally_connected_sparse import LocallyConnectedSparse2D
    from sparselayers.locally_connected_sparse import LocallyConnectedSparse3D
    from sparselayers.masked_least_squares import masked_least_squares
    from sparselayers.sparse_dense import SparseDense
    from sparselayers.sparse_vae import SparseVAE
    from sparselayers.variants import VARIANTS
    from sparselayers.variants import build_variant
    from sparselayers.weighted_conv import WeightedConv1D
    from sparselayers.weighted_conv import WeightedConv2D
    from sparselayers.weighted_conv import WeightedConv3D

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
]
