"""Keras layers that take ``[image, mask]``: the sparsity-aware layers of the paper.

* `SparseDense` (`sparse_dense`): a fully connected layer by a masked,
  regularised pseudo-inverse (eq. 10).
* `WeightedConv1D/2D/3D` (`weighted_conv`): mask-normalised convolutions that
  propagate the mask (eqs. 11-12).
* `LocallyConnectedSparse2D/3D` (`locally_connected_sparse`): one masked
  least-squares projection per block (§3.4.1).
* `FillMissing` (`fill_missing`): zero, mean or interpolation fills.

`base_sparse_linear`, `masked_least_squares` and `image_and_mask` are the
shared machinery (the masked least squares, the checks of ``[image, mask]``).
"""

from sparselayers.layers.fill_missing import FillMissing
from sparselayers.layers.fill_missing import interpolate_along
from sparselayers.layers.fill_missing import interpolate_rows
from sparselayers.layers.locally_connected_sparse import LocallyConnectedSparse2D
from sparselayers.layers.locally_connected_sparse import LocallyConnectedSparse3D
from sparselayers.layers.masked_least_squares import masked_least_squares
from sparselayers.layers.sparse_dense import SparseDense
from sparselayers.layers.weighted_conv import WeightedConv1D
from sparselayers.layers.weighted_conv import WeightedConv2D
from sparselayers.layers.weighted_conv import WeightedConv3D

__all__ = [
    "FillMissing",
    "interpolate_along",
    "interpolate_rows",
    "LocallyConnectedSparse2D",
    "LocallyConnectedSparse3D",
    "masked_least_squares",
    "SparseDense",
    "WeightedConv1D",
    "WeightedConv2D",
    "WeightedConv3D",
    "base_sparse_linear",
    "fill_missing",
    "image_and_mask",
    "locally_connected_sparse",
    "sparse_dense",
    "weighted_conv",
]
