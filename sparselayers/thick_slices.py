"""Thick-slice volumes: learn from a collection's acquired slices, fill in the rest.

A clinical scan often acquires only every n-th 2-D slice of a volume (paper
§4.4). This module fills in the missing slices of a collection of such scans:

1. `find_acquisition` tells, for each volume, the acquisition axis and which
   slices were acquired: from the header (thick voxels along one axis: the
   grid is refined n-fold, `refine_thick_slices`) or from the data (missing
   slices stored as constant, e.g. all-zero, slices), or as the user says.
2. `normalize` maps each volume's intensities to about [0, 1] by robust
   percentiles of its acquired voxels (0.5th -> 0, 99.5th -> 1).
3. `training_dataset` streams training pairs through `tf.data`. The acquired
   slices are fully observed 2-D images that look like the cuts through the
   acquisition axis (brains are roughly isotropic): patches of them, with
   every n-th row kept at a random offset, are inputs, and the hidden rows
   the targets, known exactly. So the model learns from the sparse scans
   alone, and a collection of one volume works too. Random transposes and
   flips of the patches give more training signal per subject.
4. `impute_volume` fills a volume from its cuts through the acquisition axis,
   both orientations of them, each cut also mirrored: the mean of the four
   predictions. Memory: the volume, one accumulator, and one batch of cuts.

The model is any Keras model mapping ``[image, mask]`` (batch, H, W, 1) to
the filled image, with the acquisition axis as H; by default
``build_variant("conv-interp-residual", (None, None, 1))``, a correction to
linear interpolation learnt by dilated convolutions. `sparselayers.slice_workflow`
runs the whole workflow on files, and is the ``sparselayers-impute-slices``
command.

Example:

>>> acquisition = find_acquisition(volume)            # axis, acquired slices
>>> scaled, scale = normalize(volume, acquisition)
>>> model = build_variant("conv-interp-residual", (None, None, 1))
>>> model.compile("adam", "mse")
>>> model.fit(training_dataset([(scaled, acquisition)]), steps_per_epoch=100, epochs=10)
>>> filled = impute_volume(model, scaled, acquisition)
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from sparselayers import sparse_vae

# A background patch teaches nothing: patches with less than this share of
# voxels above FOREGROUND (in normalised units) are drawn again.
FOREGROUND = 0.1
MIN_FOREGROUND_SHARE = 0.2


@dataclasses.dataclass
class Acquisition:
    """Which slices of a volume were acquired.

    Attributes:
        axis: the acquisition axis (0, 1 or 2) of the volume's array.
        acquired: bool (size along axis,), True for acquired slices.
        every: n, the spacing of the acquired slices in voxels.
        refined_from: for a thick-slice file, the n-fold refinement applied to
            its grid (`refine_thick_slices`), else 1.
        thick: True for a thick-slice grid not yet refined (every slice
            acquired, each n voxels thick).
    """

    axis: int
    acquired: np.ndarray
    every: int
    refined_from: int = 1
    thick: bool = False

    def mask(self, shape):
        """Bool array of the volume's `shape`, True at acquired voxels."""
        index = [None, None, None]
        index[self.axis] = slice(None)
        return np.broadcast_to(self.acquired[tuple(index)], shape)


def find_acquisition(volume, zooms=None, axis=None, every=None, name="volume"):
    """Finds the acquisition axis and the acquired slices of a volume.

    Missing slices are recognised as constant slices (all zero, typically)
    between acquired ones; when the others lie on a regular lattice (every
    n-th slice), the lattice's own constant slices (blank, outside the head)
    count as acquired. With `zooms` showing one axis at least 1.5 times
    coarser than the others, the volume is a thick-slice file: every slice
    is acquired and ``every`` is the rounded ratio (refine its grid with
    `refine_thick_slices` before imputing).

    Args:
        volume: (X, Y, Z) array.
        zooms: voxel sizes (3,), or None.
        axis: the acquisition axis if known, else detected.
        every: n if known (checked against the data), else detected.
        name: the volume's name in error messages (its file).

    Returns:
        An `Acquisition`.

    Raises:
        ValueError: if no axis has missing slices between acquired ones (or
            several do), if the given axis has none, or if fewer than two
            slices are acquired.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"{name}: expected a 3-D volume; found shape {volume.shape}.")
    if axis is not None and axis not in (0, 1, 2, -1, -2, -3):
        raise ValueError(f"{name}: axis must be 0, 1 or 2; received {axis}.")
    axis = None if axis is None else axis % 3
    if every is not None and (int(every) != every or every < 2):
        raise ValueError(f"{name}: every must be an int >= 2; received {every}.")
    thick = _thick_axis(zooms)
    if thick is not None and (axis is None or axis == thick[0]):
        thick_axis, ratio = thick
        if every is not None and every != ratio:
            raise ValueError(
                f"{name}: the header's voxel sizes {np.round(zooms, 3).tolist()} give slices "
                f"{ratio} times thicker along axis {thick_axis}, not every={every}.")
        acquired = np.ones(volume.shape[thick_axis], bool)
        return Acquisition(thick_axis, acquired, ratio, thick=True)

    candidates = [axis] if axis is not None else [0, 1, 2]
    found = []
    for candidate in candidates:
        acquired = ~_constant_slices(volume, candidate)
        positions = np.flatnonzero(acquired)
        if len(positions) < 2:
            continue
        gaps = np.diff(positions)
        if gaps.max() < 2:
            continue  # no missing slice between acquired ones
        found.append((candidate, acquired, int(np.median(gaps))))
    if not found:
        where = f"along axis {axis}" if axis is not None else "along any axis"
        raise ValueError(
            f"{name}: no missing slices found {where} (missing slices are stored as constant, "
            "e.g. all-zero, slices between acquired ones; or give thick voxel sizes in the "
            "header).")
    if len(found) > 1:
        raise ValueError(
            f"{name}: missing slices along axes {[f[0] for f in found]}; name the acquisition "
            "axis.")
    axis, acquired, spacing = found[0]
    positions = np.flatnonzero(acquired)
    if np.all(positions % spacing == positions[0] % spacing):
        # A regular lattice: its blank slices (outside the head, say) were
        # acquired too, and are kept as they are.
        acquired = np.zeros_like(acquired)
        acquired[positions[0] % spacing::spacing] = True
    if every is not None and spacing != every:
        raise ValueError(
            f"{name}: acquired slices along axis {axis} are {spacing} apart (median), not "
            f"every={every}.")
    return Acquisition(axis, acquired, spacing)


def _thick_axis(zooms):
    """(axis, n) if one voxel size is >= 1.5x the median of the others."""
    if zooms is None:
        return None
    zooms = np.asarray(zooms, np.float64)
    for axis in range(3):
        others = np.delete(zooms, axis)
        if zooms[axis] >= 1.5 * others.max():
            return axis, int(round(zooms[axis] / np.median(others)))
    return None


def _constant_slices(volume, axis):
    moved = np.moveaxis(volume, axis, 0).reshape(volume.shape[axis], -1)
    return moved.min(axis=1) == moved.max(axis=1)


def refine_thick_slices(volume, affine, acquisition):
    """Puts a thick-slice volume on an n-fold finer grid along its axis.

    Acquired slice k goes to fine slice n*k, at the same place in the world:
    the fine affine is the thick one with its `axis` column divided by n (the
    first slice's centre is unchanged). The fine grid ends at the last
    acquired slice, so nothing is extrapolated.

    Returns:
        (fine volume with zero slices between the acquired ones, fine affine,
        fine `Acquisition` with ``refined_from = n``).
    """
    n = acquisition.every
    axis = acquisition.axis
    count = volume.shape[axis]
    shape = list(volume.shape)
    shape[axis] = (count - 1) * n + 1
    fine = np.zeros(shape, np.float32)
    index = [slice(None)] * 3
    index[axis] = slice(0, None, n)
    fine[tuple(index)] = volume
    fine_affine = np.array(affine, np.float64)
    fine_affine[:3, axis] /= n
    acquired = np.zeros(shape[axis], bool)
    acquired[::n] = True
    return fine, fine_affine, Acquisition(axis, acquired, n, refined_from=n)


def normalize(volume, acquisition, percentiles=(0.5, 99.5)):
    """Maps intensities to about [0, 1] by percentiles of the acquired voxels.

    Returns:
        (float32 scaled volume, (low, high)): ``scaled = (v - low) / (high - low)``;
        `denormalize` inverts it.
    """
    acquired = np.asarray(volume)[acquisition.mask(np.shape(volume))]
    low, high = np.percentile(acquired, percentiles)
    if not high > low:
        low, high = float(acquired.min()), float(acquired.max())
    if not high > low:
        raise ValueError("The acquired voxels are constant; nothing to learn from.")
    scaled = (np.asarray(volume, np.float32) - np.float32(low)) / np.float32(high - low)
    return scaled, (float(low), float(high))


def denormalize(scaled, scale):
    low, high = scale
    return np.asarray(scaled, np.float32) * np.float32(high - low) + np.float32(low)


def acquired_slices(scaled, acquisition):
    """The acquired slices as 2-D images, (count, P, Q), in-plane axes in order."""
    return np.moveaxis(np.asarray(scaled), acquisition.axis, 0)[acquisition.acquired]


def sample_patches(slices, every, patch_size, count, rng):
    """Training pairs from fully observed 2-D slices: rows hidden as in a thick-slice cut.

    Each patch is cut at random from a random slice, randomly transposed and
    flipped; its rows (axis 0) are kept every `every`-th from a random offset.

    Args:
        slices: list of 2-D float arrays (any sizes, at least `patch_size`).
        every: n.
        patch_size: side of the square patches.
        count: number of patches.
        rng: `numpy.random.Generator`.

    Returns:
        (image, mask, truth, weight), each float32 (count, size, size, 1):
        image is the truth with hidden rows set to 0, mask 1 on kept rows,
        weight 1 on hidden rows (the loss' entries).
    """
    truth = np.empty((count, patch_size, patch_size), np.float32)
    mask = np.zeros((count, patch_size, patch_size), np.float32)
    usable = [s for s in slices if min(s.shape) >= patch_size]
    if not usable:
        raise ValueError(f"No acquired slice is at least {patch_size} x {patch_size} voxels; "
                         "use a smaller patch size.")
    for index in range(count):
        for _attempt in range(20):
            image = usable[rng.integers(len(usable))]
            if rng.random() < 0.5:
                image = image.T
            top = rng.integers(0, image.shape[0] - patch_size + 1)
            left = rng.integers(0, image.shape[1] - patch_size + 1)
            patch = image[top:top + patch_size, left:left + patch_size]
            if np.mean(patch > FOREGROUND) >= MIN_FOREGROUND_SHARE:
                break
        if rng.random() < 0.5:
            patch = patch[::-1]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        truth[index] = patch
        mask[index, rng.integers(every)::every] = 1.0
    image = truth * mask
    return image[..., None], mask[..., None], truth[..., None], (1.0 - mask)[..., None]


def training_dataset(slice_stacks, every, patch_size=48, batch_size=16, patches_per_visit=64,
                     seed=0):
    """An endless `tf.data.Dataset` of ``((image, mask), truth, weight)`` batches.

    Memory stays bounded: volumes are visited one at a time in random order
    (``slice_stacks[i]`` is read at each visit, so a sequence that loads a
    volume when indexed keeps only what it caches), and `patches_per_visit`
    patches are drawn from each; a shuffle buffer of a few visits mixes them.

    Args:
        slice_stacks: a sequence (``len`` and indexing) of 2-D slice stacks
            (count, P, Q), one per volume (see `acquired_slices`): a list, or
            an object that reads them from files when indexed.
        every: n, rows kept in each patch.
        patch_size, batch_size: of the training pairs.
        patches_per_visit: patches drawn from a volume each time it is visited.
        seed: of the random patches.
    """
    count = len(slice_stacks)
    if count < 1:
        raise ValueError("training_dataset needs at least one volume.")

    def patches():
        rng = np.random.default_rng(seed)
        while True:
            for volume_index in rng.permutation(count):
                slices = list(slice_stacks[int(volume_index)])
                image, mask, truth, weight = sample_patches(
                    slices, every, patch_size, patches_per_visit, rng)
                for item in zip(image, mask, truth, weight):
                    yield (item[0], item[1]), item[2], item[3]

    spec = tf.TensorSpec((patch_size, patch_size, 1), tf.float32)
    dataset = tf.data.Dataset.from_generator(
        patches, output_signature=((spec, spec), spec, spec))
    return (dataset.shuffle(4 * patches_per_visit, seed=seed)
            .batch(batch_size, drop_remainder=True).prefetch(2))


def as_sparse_vae_triples(dataset):
    """Maps `training_dataset`'s batches to ``(truth, mask, scored_mask)`` triples.

    For a `SparseVAE` (``conv-interp-residual-vae``): its encoder sees the
    kept rows (`mask`), its likelihood scores every pixel of the fully
    known patch (self-supervision).
    """
    return dataset.map(lambda inputs, truth, weight: (truth, inputs[1], tf.ones_like(truth)))


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
    acquired = acquisition.acquired
    # (A, P, Q): the acquisition axis first.
    moved = np.moveaxis(scaled, acquisition.axis, 0)
    total = np.zeros(moved.shape, np.float32)
    predict = _predictor(model)
    fixed = _fixed_input_size(model)
    if batch_size is None:
        largest_cut = (fixed[0] or moved.shape[0], fixed[1] or max(moved.shape[1:]), 1)
        batch_size = max(1, ACTIVATION_VALUES_PER_CALL
                         // sparse_vae.widest_activation(model, largest_cut))
    progress = (keras.utils.Progbar(moved.shape[1] + moved.shape[2], unit_name="cut",
                                    verbose=verbose) if verbose else None)
    for cut_axis in (1, 2):
        cuts_count = moved.shape[cut_axis]
        for start in range(0, cuts_count, batch_size):
            stop = min(start + batch_size, cuts_count)
            index = [slice(None)] * 3
            index[cut_axis] = slice(start, stop)
            cuts = np.moveaxis(moved[tuple(index)], cut_axis, 0)  # (b, A, other)
            mask = np.broadcast_to(acquired[None, :, None], cuts.shape).astype(np.float32)
            images = np.where(mask > 0, cuts, 0.0).astype(np.float32)
            prediction = _predict_cuts(predict, images, mask, fixed)
            if mirror:
                prediction += _predict_cuts(predict, images[:, :, ::-1], mask[:, :, ::-1],
                                            fixed)[:, :, ::-1]
                prediction *= 0.5
            total[tuple(index)] += np.moveaxis(prediction, 0, cut_axis)
            if progress is not None:
                progress.add(stop - start)
    total *= 0.5
    total[acquired] = moved[acquired]  # in place: no third volume
    return np.ascontiguousarray(np.moveaxis(total, 0, acquisition.axis))


def check_cuts_fit(model, shape, acquisition, name="volume"):
    """Raises a ValueError naming `name` if a fixed-size model cannot take its cuts.

    A volume of `shape` is imputed from cuts (size along the acquisition axis,
    size along another axis); a model of fixed input size (H, W) takes them
    zero-padded, so they must be at most H x W. Models of any size always fit.
    """
    height, width = _fixed_input_size(model)
    along = shape[acquisition.axis]
    across = max(size for axis, size in enumerate(shape) if axis != acquisition.axis)
    if (height is not None and along > height) or (width is not None and across > width):
        raise ValueError(
            f"{name}: its cuts ({along} x {across} voxels, the acquisition axis first) do not "
            f"fit the model's fixed input size {height} x {width}; use a model of any size "
            "(conv-interp-residual) or resample the volumes.")


def _fixed_input_size(model):
    """(H, W) of the model's image input, None where any size is accepted."""
    shape = getattr(model, "image_shape", None)  # SparseVAE
    if shape is None:
        try:
            shape = tuple(model.inputs[0].shape[1:])
        except (AttributeError, IndexError, TypeError, ValueError):
            return (None, None)
    return tuple(shape[:2])


def _predictor(model):
    function = tf.function(lambda image, mask: model([image, mask], training=False),
                           reduce_retracing=True)
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


def sample_volume(model, scaled, acquisition, num_samples=10, batch_size=None, seed=0):
    """Conditional mean and per-voxel spread from a `SparseVAE`'s posterior draws.

    Each cut through the acquisition axis (both orientations) gets
    `num_samples` imputations f(x_k), x_k ~ q(x | acquired rows)
    (`SparseVAE.sample_imputations` without pixel noise); per voxel, their
    mean is the imputation (eq. 8) and their standard deviation the model's
    uncertainty, both averaged over the two orientations. Memory: the volume,
    two accumulators, and one batch of cuts' draws.

    Args:
        batch_size: cuts per call; None bounds one call's widest activation
            (times `num_samples`) by `ACTIVATION_VALUES_PER_CALL` values.

    Returns:
        (mean, std), float32 (X, Y, Z) each; acquired voxels are exact in
        `mean` and 0 in `std`.
    """
    scaled = np.asarray(scaled, np.float32)
    acquired = acquisition.acquired
    moved = np.moveaxis(scaled, acquisition.axis, 0)
    if batch_size is None:
        largest_cut = (moved.shape[0], max(moved.shape[1:]), 1)
        batch_size = max(1, ACTIVATION_VALUES_PER_CALL
                         // (num_samples * sparse_vae.widest_activation(model, largest_cut)))
    mean_total = np.zeros(moved.shape, np.float32)
    std_total = np.zeros(moved.shape, np.float32)
    rng = np.random.default_rng(seed)
    for cut_axis in (1, 2):
        for start in range(0, moved.shape[cut_axis], batch_size):
            index = [slice(None)] * 3
            index[cut_axis] = slice(start, min(start + batch_size, moved.shape[cut_axis]))
            cuts = np.moveaxis(moved[tuple(index)], cut_axis, 0)[..., None]
            mask = np.broadcast_to(acquired[None, :, None, None], cuts.shape).astype(np.float32)
            draws = model.sample_imputations(cuts, mask, num_samples,
                                             seed=int(rng.integers(2**31)),
                                             batch_size=len(cuts), pixel_noise=False)[..., 0]
            mean_total[tuple(index)] += np.moveaxis(draws.mean(axis=0), 0, cut_axis)
            std_total[tuple(index)] += np.moveaxis(draws.std(axis=0), 0, cut_axis)
    mean = np.where(acquired[:, None, None], moved, 0.5 * mean_total)
    std = np.where(acquired[:, None, None], 0.0, 0.5 * std_total)
    return (np.ascontiguousarray(np.moveaxis(mean, 0, acquisition.axis)),
            np.ascontiguousarray(np.moveaxis(std, 0, acquisition.axis)))
