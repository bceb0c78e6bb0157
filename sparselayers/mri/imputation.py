"""Filling a volume's missing slices with a trained model.

`impute_volume` fills a volume from its cuts through the acquisition axis,
both orientations of them, each cut also mirrored: the mean of the four
predictions (a `SparseVAE`'s uncertainty: `sparselayers.mri.uncertainty`).
`restore_volume` restores a
thick-slice volume on its fine grid (box or Gaussian slice profile): between
and across its slices, consistent with them. Memory: the volume, one or two
accumulators, and one batch of cuts.

The model is any Keras model mapping ``[image, mask]`` (batch, H, W, 1) to
the filled image, with the acquisition axis as H; by default
``build_variant("conv-interp-residual", (None, None, 1))``.

Example:

>>> filled = impute_volume(model, scaled, acquisition)
"""

import keras
import numpy as np
import tensorflow as tf

from sparselayers.layers.image_and_mask import check_positive_int
from sparselayers.models.sparse_vae_imputation import widest_activation
from sparselayers.mri import slice_profile

__all__ = ["impute_volume", "restore_volume", "fine_columns", "consistent_with_slices",
           "check_cuts_fit", "cut_predictor", "ACTIVATION_VALUES_PER_CALL"]

# Default bound on one model call's widest activation during imputation:
# 2**23 float32 values (32 MB), e.g. 4 cuts of 256 x 256 through 32 channels.
ACTIVATION_VALUES_PER_CALL = 2**23


def impute_volume(model, scaled, acquisition, batch_size=None, mirror=True, verbose=0):
    """Fills the missing slices of a normalised volume with a trained model.

    Every cut through the acquisition axis is imputed, in both orientations
    (for axis 2: the cuts at fixed X and those at fixed Y), each also
    mirrored in-plane when `mirror`; each missing voxel gets the mean of
    these 2 or 4 predictions. Acquired voxels are returned exactly as given.

    Args:
        model: Keras model ``[image, mask] -> image`` on (batch, H, W, 1)
            images, H being the acquisition axis. A model of fixed input
            size gets each cut zero-padded (mask 0) at the end to that size.
        scaled: (X, Y, Z) normalised volume (missing slices may hold anything).
        acquisition: its `Acquisition`.
        batch_size: cuts per model call; None chooses it so that one call's
            widest activation holds at most `ACTIVATION_VALUES_PER_CALL`
            values, whatever the volume's size.
        mirror: also predict the mirrored cuts.
        verbose: 1 shows a progress bar over the cuts, 2 one line at the end
            (for logs).

    Returns:
        float32 (X, Y, Z).
    """
    scaled = np.asarray(scaled, np.float32)
    acquisition.check_shape(scaled.shape)
    acquired = acquisition.acquired
    moved = np.moveaxis(scaled, acquisition.axis, 0)   # (A, P, Q): the acquisition axis first
    total = _predict_cuts_of_volume(model, moved, acquired.astype(np.float32), batch_size,
                                    mirror, verbose)
    total[acquired] = moved[acquired]  # in place: no third volume
    return np.ascontiguousarray(np.moveaxis(total, 0, acquisition.axis))


def restore_volume(model, slices, grid, batch_size=None, mirror=True, verbose=0, minimum=None,
                   rounds=20):
    """Restores a thick-slice volume on its fine grid: between and across its slices.

    The acquired slices are linearly interpolated onto the fine grid
    (`SliceGrid.interpolation_matrix`), every fine row is predicted by the
    model from the cuts through the acquisition axis (both orientations,
    mirrored, as `impute_volume`; every row observed, its mask telling its
    position relative to the slices, `slice_profile.row_mask`), and the result
    is projected so that the slice profile applied to it reproduces the
    acquired slices (`slice_profile.project_onto_slices`): the acquired
    slices are deblurred, not kept.

    Args:
        model: as `impute_volume`'s, trained on thick-slice patches
            (`sparselayers.mri.training.RowSampling` with the same profile).
        slices: the normalised acquired slices, K along `grid.axis`.
        grid: the volume's `SliceGrid`.
        batch_size, mirror, verbose: as `impute_volume`'s.
        minimum: None, or a lower bound on the result (0 in the input's units
            for a magnitude image): the projection and clipping at `minimum`
            are alternated (projections onto convex sets) for up to `rounds`
            rounds, and the result clipped, so every voxel is >= `minimum`
            and the profile reproduces the slices up to what the clipping
            of the last round changed.

    Returns:
        float32, the fine grid's shape (`grid.fine_shape`).
    """
    moved, upsampled, mask, weights = fine_columns(slices, grid)
    total = _predict_cuts_of_volume(model, upsampled, mask, batch_size, mirror, verbose)
    del upsampled
    restored = consistent_with_slices(total, moved, weights, minimum, rounds)
    return np.ascontiguousarray(np.moveaxis(restored, 0, grid.axis))


def fine_columns(slices, grid):
    """What a thick-slice volume's restoration starts from, the acquisition axis first.

    Returns:
        (slices (K, P, Q), their linear interpolation onto the fine grid
        (N, P, Q), each fine row's mask value (N,) (`slice_profile.row_mask`),
        the forward weights W (K, N)).
    """
    moved = np.moveaxis(np.asarray(slices, np.float32), grid.axis, 0)
    if len(moved) != len(grid.centres):
        raise ValueError(f"{len(moved)} slices along axis {grid.axis}, but the grid places "
                         f"{len(grid.centres)}.")
    upsampled = np.tensordot(grid.interpolation_matrix().astype(np.float32), moved, axes=1)
    return (moved, upsampled, slice_profile.row_mask(grid.centres, grid.size),
            grid.forward_matrix())


def consistent_with_slices(fine, slices, weights, minimum=None, rounds=20):
    """`fine` (N, P, Q) projected onto the volumes whose slices under `weights` are `slices`.

    `slice_profile.project_onto_slices` along axis 0; with a `minimum`,
    alternated with clipping at it for up to `rounds` rounds, then clipped
    (see `restore_volume`).
    """
    restored = slice_profile.project_onto_slices(fine, slices, weights)
    if minimum is not None:
        for _round in range(rounds):
            if restored.min() >= minimum:
                break
            restored = slice_profile.project_onto_slices(np.maximum(restored, minimum), slices,
                                                         weights)
        np.maximum(restored, np.float32(minimum), out=restored)
    return restored


def _predict_cuts_of_volume(model, moved, row_mask, batch_size, mirror, verbose):
    """The mean prediction of every cut through axis 0 of `moved` (A, P, Q).

    `row_mask` (A,) is each row's mask value: rows of mask > 0.5 are given to
    the model as observed, the others as missing (0). Memory: one
    accumulator and one batch of cuts.
    """
    total = np.zeros(moved.shape, np.float32)
    predict = _predictor(model)
    fixed = fixed_input_size(model)
    if batch_size is None:
        largest_cut = (fixed[0] or moved.shape[0], fixed[1] or max(moved.shape[1:]), 1)
        batch_size = max(1, ACTIVATION_VALUES_PER_CALL // widest_activation(model, largest_cut))
    batch_size = check_positive_int(batch_size, "batch_size")
    progress = (keras.utils.Progbar(moved.shape[1] + moved.shape[2], unit_name="cut",
                                    verbose=verbose) if verbose else None)
    for cut_axis in (1, 2):
        cuts_count = moved.shape[cut_axis]
        for start in range(0, cuts_count, batch_size):
            stop = min(start + batch_size, cuts_count)
            index = [slice(None)] * 3
            index[cut_axis] = slice(start, stop)
            cuts = np.moveaxis(moved[tuple(index)], cut_axis, 0)  # (b, A, other)
            mask = np.broadcast_to(row_mask[None, :, None], cuts.shape).astype(np.float32)
            images = np.where(mask > 0.5, cuts, 0.0).astype(np.float32)
            prediction = _predict_cuts(predict, images, mask, fixed)
            if mirror:
                prediction += _predict_cuts(predict, images[:, :, ::-1], mask[:, :, ::-1],
                                            fixed)[:, :, ::-1]
                prediction *= 0.5
            total[tuple(index)] += np.moveaxis(prediction, 0, cut_axis)
            if progress is not None:
                progress.add(stop - start)
    total *= 0.5
    return total


def check_cuts_fit(model, shape, acquisition, name="volume"):
    """Raises a ValueError naming `name` if a fixed-size model cannot take its cuts.

    A volume of `shape` is imputed from cuts (size along the acquisition axis,
    size along another axis); a model of fixed input size (H, W) takes them
    zero-padded, so they must be at most H x W. Models of any size always fit.
    """
    height, width = fixed_input_size(model)
    along = shape[acquisition.axis]
    across = max(size for axis, size in enumerate(shape) if axis != acquisition.axis)
    if (height is not None and along > height) or (width is not None and across > width):
        raise ValueError(
            f"{name}: its cuts ({along} x {across} voxels, the acquisition axis first) do not "
            f"fit the model's fixed input size {height} x {width}; use a model of any size "
            "(conv-interp-residual) or resample the volumes.")


def fixed_input_size(model):
    """(H, W) of the model's image input, None where any size is accepted."""
    shape = getattr(model, "image_shape", None)  # SparseVAE
    if shape is None:
        try:
            shape = tuple(model.inputs[0].shape[1:])
        except (AttributeError, IndexError, TypeError, ValueError):
            return (None, None)
    return tuple(shape[:2])


def cut_predictor(model, size=None):
    """A function ``(images, mask) -> predictions`` of a batch of cuts (b, H, W).

    One compiled model call per batch, no mirroring; cuts are zero-padded
    (mask 0) at their end to a fixed-size model's input, or to `size`
    (H, W) for a model of any size: one trace for cuts of many sizes.
    """
    predict, fixed = _predictor(model), fixed_input_size(model)
    if size is not None:
        fixed = tuple(f if f is not None else s for f, s in zip(fixed, size))
    return lambda images, mask: _predict_cuts(predict, np.asarray(images, np.float32),
                                              np.asarray(mask, np.float32), fixed)


def _predictor(model):
    # No AutoGraph: the model call has no Python control flow to convert, and
    # AutoGraph cannot read a lambda's source when it is defined in a loop.
    function = tf.function(lambda image, mask: model([image, mask], training=False),
                           reduce_retracing=True, autograph=False)
    return lambda image, mask: np.asarray(function(tf.constant(image), tf.constant(mask)),
                                          np.float32)


def _predict_cuts(predict, images, mask, fixed):
    """(b, H, W) predictions; pads to a model's fixed (H, W) and crops back."""
    height, width = images.shape[1:]
    target = (fixed[0] or height, fixed[1] or width)
    if target[0] < height or target[1] < width:
        raise ValueError(f"Cuts of {height} x {width} voxels do not fit the model's fixed input "
                         f"size {target[0]} x {target[1]}.")
    pad = ((0, 0), (0, target[0] - height), (0, target[1] - width))
    images = np.ascontiguousarray(np.pad(images, pad)[..., None])
    mask = np.ascontiguousarray(np.pad(mask, pad)[..., None])
    return np.array(predict(images, mask)[:, :height, :width, 0])
