"""How a scanner acquires a slice: its profile, and the forward model on a fine grid.

A thick slice is not a sample of the tissue at its centre: it integrates the
tissue across its thickness, weighted by the slice profile. With ``f`` the
tissue on a fine grid along the acquisition axis (voxels of size 1, voxel j
centred at j) and slice k centred at ``c_k``, the acquired value is

    s_k = sum_j W[k, j] f_j,   W[k, j] = integral over voxel j of p((z - c_k) / T) dz

normalised so that each row of W sums to 1, for the profiles

* ``"point"``: the value at the centre (linear interpolation between the two
  nearest fine voxels); the acquired slices of a volume stored with zero
  slices between them;
* ``"box"``: the mean over [c_k - T/2, c_k + T/2] (a thick 2-D acquisition);
* ``"gaussian"``: a Gaussian of full width at half maximum T.

Thickness T and spacing (the distance between centres) are independent:
T < spacing leaves gaps between slices, T > spacing makes them overlap.

`forward_matrix` builds W; `interpolation_matrix` the linear interpolation
through the slice centres that the model starts from; `project_onto_slices`
the data-consistency projection that makes a restored volume reproduce its
acquired slices exactly; `simulate_rows` degrades a fully known image as the
scanner would (the model's self-supervised training pairs).

Example:

>>> profile = SliceProfile("box", thickness=6.0)       # in fine voxels
>>> weights = forward_matrix(profile, centres=[2.5, 8.5], size=12)
>>> weights.sum(axis=1)
array([1., 1.])
"""

import dataclasses
import math

import numpy as np

__all__ = ["PROFILES", "SliceProfile", "forward_matrix", "interpolation_matrix",
           "project_onto_slices", "projected_variance", "kept_detail_share", "row_mask",
           "simulate_rows"]

PROFILES = ("point", "box", "gaussian")

# FWHM = 2 sqrt(2 ln 2) sigma for a Gaussian.
_FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
# `row_mask` midway between two slice centres: just above 0.5 (observed).
MIDWAY_MASK = 0.52
# A Gaussian profile's weights are cut at this many sigmas from the centre.
_GAUSSIAN_REACH = 4.0
_normal_cdf = np.vectorize(lambda x: 0.5 * (1.0 + math.erf(x / math.sqrt(2.0))), otypes=[float])


@dataclasses.dataclass(frozen=True)
class SliceProfile:
    """A slice profile and its thickness.

    Attributes:
        kind: "point", "box" or "gaussian" (`PROFILES`).
        thickness: T > 0, the box's width or the Gaussian's FWHM, in the units
            of the positions it is used with (mm in `sparselayers.mri`'s
            acquisition, fine voxels in `forward_matrix`); ignored (0) for
            "point".
    """

    kind: str = "point"
    thickness: float = 0.0

    def __post_init__(self):
        if self.kind not in PROFILES:
            raise ValueError(f"slice profile must be one of {', '.join(PROFILES)}; received "
                             f"{self.kind!r}.")
        if self.kind != "point":
            thickness = self.thickness
            if (isinstance(thickness, bool) or not isinstance(thickness, (int, float, np.number))
                    or not np.isfinite(thickness) or thickness <= 0):
                raise ValueError(f"slice thickness must be a finite number > 0; received "
                                 f"{thickness!r}.")

    def scaled(self, factor):
        """The same profile with its thickness multiplied by `factor` (a change of units)."""
        return SliceProfile(self.kind, self.thickness * factor if self.kind != "point" else 0.0)

    def reach(self):
        """Half the width of the profile's support, in its units."""
        if self.kind == "box":
            return 0.5 * self.thickness
        if self.kind == "gaussian":
            return _GAUSSIAN_REACH * self.thickness / _FWHM_PER_SIGMA
        return 1.0


def forward_matrix(profile, centres, size):
    """W (K, N): slice k's value is ``W[k] @ f`` for a fine column f of `size` voxels.

    Args:
        profile: a `SliceProfile`, its thickness in fine voxels.
        centres: (K,) slice centres in fine-voxel coordinates (voxel j spans
            [j - 1/2, j + 1/2]).
        size: N, the fine voxels.

    Returns:
        float64 (K, N), each row summing to 1 over the voxels of the grid the
        profile reaches (a slice cut by the grid's end is the mean over what
        is inside).

    Raises:
        ValueError: if a slice reaches no voxel of the grid.
    """
    centres = np.asarray(centres, np.float64).reshape(-1, 1)
    low = np.arange(size, dtype=np.float64)[None] - 0.5   # (1, N) voxel edges
    high = low + 1.0
    if profile.kind == "box":
        half = 0.5 * profile.thickness
        weights = np.clip(np.minimum(high, centres + half) - np.maximum(low, centres - half),
                          0.0, None)
    elif profile.kind == "gaussian":
        sigma = profile.thickness / _FWHM_PER_SIGMA
        weights = _normal_cdf((high - centres) / sigma) - _normal_cdf((low - centres) / sigma)
        weights[np.abs(low + 0.5 - centres) > _GAUSSIAN_REACH * sigma + 0.5] = 0.0
    else:  # point: linear interpolation at the centre
        weights = np.clip(1.0 - np.abs(low + 0.5 - centres), 0.0, None)
    totals = weights.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise ValueError(f"A slice centred at {centres[np.argmin(totals), 0]:g} reaches no voxel "
                         f"of a grid of {size}.")
    return weights / totals


def interpolation_matrix(centres, size):
    """B (N, K): linear interpolation through the slice centres at each fine voxel.

    Constant beyond the first and last centres (`numpy.interp`'s ends). The
    model's input for a thick-slice volume is ``B @ s``: what a user would see
    by interpolating the acquired slices, which it learns to correct.
    """
    centres = np.asarray(centres, np.float64)
    fine = np.arange(size, dtype=np.float64)
    matrix = np.empty((size, len(centres)))
    for k in range(len(centres)):
        unit = np.zeros(len(centres))
        unit[k] = 1.0
        matrix[:, k] = np.interp(fine, centres, unit)
    return matrix


def project_onto_slices(fine, acquired, weights, axis=0):
    """The nearest volume to `fine` whose slices under `weights` are `acquired`.

    ``fine + W^T (W W^T)^-1 (acquired - W fine)`` along `axis`: each slice's
    residual spread back over its voxels by the profile (the minimum-norm
    correction; W W^T is solved by Cholesky, in float64).

    Args:
        fine: (..., N, ...) the restored volume, N along `axis`.
        acquired: the acquired slices, K along `axis`, the rest as `fine`.
        weights: W (K, N) from `forward_matrix`.
        axis: the acquisition axis.

    Returns:
        float32, the shape of `fine`; ``W @ result`` equals `acquired` to
        float32 rounding.
    """
    weights = np.asarray(weights, np.float64)
    moved = np.moveaxis(np.asarray(fine, np.float64), axis, 0)
    shape = moved.shape
    columns = moved.reshape(shape[0], -1)                        # (N, M)
    slices = np.moveaxis(np.asarray(acquired, np.float64), axis, 0).reshape(len(weights), -1)
    residual = slices - weights @ columns                        # (K, M)
    corrected = (columns + weights.T @ _solve_gram(weights, residual)).reshape(shape)
    return np.ascontiguousarray(np.moveaxis(corrected, 0, axis).astype(np.float32))


def projected_variance(variance, weights, axis=0):
    """The variance of `project_onto_slices`' output for independent input errors.

    The projection is affine, ``Q f + c`` with ``Q = I - W^T (W W^T)^-1 W``:
    an input whose voxels have independent errors of `variance` gives an
    output of variance ``(Q * Q) @ variance`` along `axis` (Q squared
    elementwise; smaller than the input's near the slices, which pin down
    their weighted mean).

    Args:
        variance: (..., N, ...) per-voxel variances, N along `axis`.
        weights: W (K, N) from `forward_matrix`.
        axis: the acquisition axis.

    Returns:
        float32, the shape of `variance`.
    """
    weights = np.asarray(weights, np.float64)
    projection = np.eye(weights.shape[1]) - weights.T @ _solve_gram(weights, weights)
    squared = (projection**2).astype(np.float32)
    moved = np.moveaxis(np.asarray(variance, np.float32), axis, 0)
    result = (squared @ moved.reshape(len(moved), -1)).reshape(moved.shape)   # float32 (N, M)
    return np.ascontiguousarray(np.moveaxis(result, 0, axis))


def _solve_gram(weights, right):
    """``(W W^T)^-1 right`` by Cholesky of the (slightly regularised) Gram, float64."""
    gram = weights @ weights.T
    factor = np.linalg.cholesky(gram + 1e-12 * np.trace(gram) / len(gram) * np.eye(len(gram)))
    return np.linalg.solve(factor.T, np.linalg.solve(factor, right))


def kept_detail_share(images, profile, threshold):
    """The share of the tissue's fine detail that in-plane images of thick slices keep.

    A thick slice averages the tissue across its thickness, which removes
    fine detail in every direction, in-plane too: the acquired slices hold
    less of it than the tissue on the fine grid that a restoration is
    scored on (on real brains, about half, for 6 mm box slices of 2 mm
    tissue). Taking the tissue as isotropic, the share is estimated in-plane:
    the detail along the rows that the profile's averaging removes
    (``d = x - A_rows x``), in the images as they are and after the same
    averaging along the columns, ``|d(A_cols x)|^2 / |d(x)|^2`` over the
    voxels above `threshold`, both orientations pooled.

    Args:
        images: (k, P, Q) in-plane images (the acquired slices).
        profile: the `SliceProfile`, its thickness in pixels.
        threshold: only voxels above it are counted (the head).

    Returns:
        A float in (0, 1], or None when no voxel is counted.
    """
    kept, total = 0.0, 0.0
    for image in np.asarray(images, np.float64):
        for oriented in (image, image.T):
            rows, columns = (forward_matrix(profile, np.arange(size), size)
                             for size in oriented.shape)
            averaged = oriented @ columns.T              # along the columns
            region = oriented > threshold
            kept += np.sum((averaged - rows @ averaged)[region] ** 2)
            total += np.sum((oriented - rows @ oriented)[region] ** 2)
    if total <= 0:
        return None
    return float(np.clip(kept / total, 1e-3, 1.0))


def row_mask(centres, size):
    """The model's mask input for a thick-slice cut: where each fine row lies.

    1 at a slice centre, falling as a cosine to `MIDWAY_MASK` halfway between
    two centres. Always > 0.5, so every row counts as observed (the layers'
    mask convention): the values tell the model each row's position relative
    to the slices, which the profile's blur depends on. (N,) float32.
    """
    centres = np.asarray(centres, np.float64)
    rows = np.arange(size, dtype=np.float64)
    half = 0.5 * (np.median(np.diff(centres)) if len(centres) > 1 else size)
    distance = np.min(np.abs(rows[:, None] - centres[None]), axis=1)
    phase = np.cos(np.pi * np.clip(distance / half, 0.0, 1.0))      # 1 -> -1
    return (MIDWAY_MASK + (1.0 - MIDWAY_MASK) * 0.5 * (1.0 + phase)).astype(np.float32)


def simulate_rows(image, profile, spacing, offset):
    """An image's rows acquired as thick slices, then linearly interpolated back.

    Args:
        image: (L, W) fully known image; rows are the acquisition axis.
        profile: `SliceProfile`, thickness in rows.
        spacing: distance between slice centres, in rows (any float >= 1).
        offset: position of the first centre, in rows, in [0, spacing).

    Returns:
        (upsampled (L, W) float32: the model's input, ``B @ W @ image``;
        slices (K, W): the acquired values; centres (K,)).
    """
    size = image.shape[0]
    centres = np.arange(offset, size - 0.5, spacing)
    weights = forward_matrix(profile, centres, size)
    slices = weights @ np.asarray(image, np.float64)
    upsampled = interpolation_matrix(centres, size) @ slices
    return upsampled.astype(np.float32), slices, centres
