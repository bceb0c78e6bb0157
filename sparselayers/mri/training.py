"""Self-supervised training data from a collection's own acquired slices.

The acquired slices are fully observed 2-D images that look like the cuts
through the acquisition axis (brains are roughly isotropic): patches of them,
with every n-th row kept at a random offset, are inputs, and the hidden rows
the targets, known exactly. So a model learns from the sparse scans alone,
and a collection of one volume works too. Random transposes and flips of the
patches give more training signal per subject.

Example:

>>> stacks = [acquired_slices(scaled, acquisition)]
>>> model.fit(training_dataset(stacks, every=3), steps_per_epoch=100, epochs=10)
"""

import dataclasses

import numpy as np
import tensorflow as tf

from sparselayers.layers.image_and_mask import check_positive_int
from sparselayers.mri import slice_profile
from sparselayers.mri.slice_profile import SliceProfile

__all__ = ["RowSampling", "acquired_slices", "sample_patches", "training_dataset",
           "as_sparse_vae_batches"]

# A background patch teaches nothing: patches with less than this share of
# voxels above FOREGROUND (in normalised units) are drawn again.
FOREGROUND = 0.1
MIN_FOREGROUND_SHARE = 0.2
# `training_dataset` shuffles the patches of this many volume visits together.
VISITS_PER_BLOCK = 4


def acquired_slices(scaled, acquisition):
    """The acquired slices as 2-D images, (count, P, Q), in-plane axes in order."""
    return np.moveaxis(np.asarray(scaled), acquisition.axis, 0)[acquisition.acquired]


@dataclasses.dataclass(frozen=True)
class RowSampling:
    """How the rows of a cut through the acquisition axis were acquired.

    Attributes:
        spacing: rows between acquired slice centres (an int for "point").
        profile: the slice profile, its thickness in rows (`SliceProfile`).
            "point": every `spacing`-th row is acquired as it is (the other
            rows are missing); "box" / "gaussian": every row is the linear
            interpolation of thick slices (`slice_profile.simulate_rows`).
    """

    spacing: float
    profile: SliceProfile = SliceProfile()

    def __post_init__(self):
        if self.profile.kind == "point":
            check_positive_int(self.spacing, "every")
            if self.spacing < 2:
                raise ValueError(f"every must be an int >= 2 (a row hidden between kept ones); "
                                 f"received {self.spacing}.")
        elif not (np.isfinite(self.spacing) and self.spacing >= 1):
            raise ValueError(f"slice spacing must be at least one row; received {self.spacing}.")


def row_sampling(every):
    """A `RowSampling` from an int n (every n-th row, point samples) or itself."""
    return every if isinstance(every, RowSampling) else RowSampling(every)


def sample_patches(slices, every, patch_size, count, rng):
    """Training pairs from fully observed 2-D slices, degraded as the scan's cuts are.

    Each patch is cut at random from a random slice, randomly transposed and
    flipped. With point samples (`every` an int n), its rows (axis 0) are kept
    every n-th from a random offset, the others hidden. With a thick-slice
    profile (`every` a `RowSampling`), the patch's rows are acquired as thick
    slices centred at a random sub-row offset and linearly interpolated back
    (`slice_profile.simulate_rows`, on a taller strip cropped to the patch so
    that no slice is cut by the patch's edge): the model learns to restore
    every row, the acquired positions included.

    Args:
        slices: list of 2-D float arrays (any sizes, at least `patch_size`).
        every: n, or a `RowSampling`.
        patch_size: side of the square patches.
        count: number of patches.
        rng: `numpy.random.Generator`.

    Returns:
        (image, mask, truth, weight), each float32 (count, size, size, 1).
        Point samples: image is the truth with hidden rows set to 0, mask 1
        on kept rows, weight 1 on hidden rows (the loss' entries). Thick
        slices: image the interpolated acquisition, mask each row's position
        relative to the slices (`slice_profile.row_mask`, > 0.5: every row
        observed), weight 1 (every row scored).
    """
    sampling = row_sampling(every)
    patch_size = check_positive_int(patch_size, "patch_size")
    usable = [s for s in slices if min(s.shape) >= patch_size]
    if not usable:
        raise ValueError(f"No acquired slice is at least {patch_size} x {patch_size} voxels; "
                         "use a smaller patch size.")
    if sampling.profile.kind != "point":
        return _thick_slice_patches(usable, sampling, patch_size, count, rng)
    every = int(sampling.spacing)
    truth = np.empty((count, patch_size, patch_size), np.float32)
    mask = np.zeros((count, patch_size, patch_size), np.float32)
    for index in range(count):
        truth[index] = _random_patch(usable, patch_size, patch_size, rng)
        mask[index, rng.integers(every)::every] = 1.0
    image = truth * mask
    return image[..., None], mask[..., None], truth[..., None], (1.0 - mask)[..., None]


def _random_patch(usable, rows, columns, rng, scored=None):
    """A random (rows, columns) patch, transposed and flipped at random.

    Background patches are drawn again (up to 20 times): at least
    `MIN_FOREGROUND_SHARE` of the voxels of ``patch[scored]`` (all by
    default) must exceed `FOREGROUND`.
    """
    scored = slice(None) if scored is None else scored
    for _attempt in range(20):
        image = usable[rng.integers(len(usable))]
        if rng.random() < 0.5:
            image = image.T
        height = min(rows, image.shape[0])
        top = rng.integers(0, image.shape[0] - height + 1)
        left = rng.integers(0, image.shape[1] - columns + 1)
        patch = image[top:top + height, left:left + columns]
        if np.mean(patch[scored] > FOREGROUND) >= MIN_FOREGROUND_SHARE:
            break
    if rng.random() < 0.5:
        patch = patch[::-1]
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    return patch


def _thick_slice_patches(usable, sampling, patch_size, count, rng):
    # A margin of rows on each side, so that every slice reaching the patch
    # is whole in the strip it is simulated on.
    margin = int(np.ceil(sampling.profile.reach() + sampling.spacing))
    truth = np.empty((count, patch_size, patch_size), np.float32)
    image = np.empty((count, patch_size, patch_size), np.float32)
    mask = np.empty((count, patch_size, patch_size), np.float32)
    for index in range(count):
        strip = _random_patch(usable, patch_size + 2 * margin, patch_size, rng)
        start = (len(strip) - patch_size) // 2   # a smaller margin where a slice is short
        offset = rng.uniform(0.0, sampling.spacing)
        upsampled, _, centres = slice_profile.simulate_rows(strip, sampling.profile,
                                                            sampling.spacing, offset)
        truth[index] = strip[start:start + patch_size]
        image[index] = upsampled[start:start + patch_size]
        mask[index] = slice_profile.row_mask(centres, len(strip))[start:start + patch_size, None]
    return image[..., None], mask[..., None], truth[..., None], np.ones_like(truth[..., None])


def training_dataset(slice_stacks, every, patch_size=48, batch_size=16, patches_per_visit=64,
                     seed=0, start_batch=0):
    """An endless `tf.data.Dataset` of ``((image, mask), truth, weight)`` batches.

    Memory stays bounded: volumes are visited one at a time in random order
    (``slice_stacks[i]`` is read at each visit, so a sequence that loads a
    volume when indexed keeps only what it caches), and `patches_per_visit`
    patches are drawn from each; the patches of `VISITS_PER_BLOCK` visits
    are shuffled together.

    The stream is a function of `seed` alone, and each block of visits draws
    from its own random generator (seeded by `seed` and the block's index),
    so the stream can start at any batch: ``start_batch=k`` yields exactly
    the batches k, k+1, ... of ``start_batch=0``, drawing one block of
    patches to get there. A resumed training sees the batches an
    uninterrupted one would have.

    Args:
        slice_stacks: a sequence (``len`` and indexing) of 2-D slice stacks
            (count, P, Q), one per volume (see `acquired_slices`): a list, or
            an object that reads them from files when indexed.
        every: how each volume's cuts were acquired: n (every n-th row, point
            samples), a `RowSampling` (thick slices), or a sequence of those,
            one per volume (a collection of several acquisitions).
        patch_size, batch_size: of the training pairs.
        patches_per_visit: patches drawn from a volume each time it is visited.
        seed: of the random patches, an int >= 0.
        start_batch: the index of the first batch, an int >= 0.

    Raises:
        ValueError: naming the argument, before any patch is drawn.
    """
    count = len(slice_stacks)
    if count < 1:
        raise ValueError("training_dataset needs at least one volume.")
    if isinstance(every, (list, tuple)):
        if len(every) != count:
            raise ValueError(f"every holds {len(every)} samplings for {count} volumes.")
        samplings = [row_sampling(item) for item in every]
    else:
        samplings = [row_sampling(every)] * count
    for name, value in (("patch_size", patch_size), ("batch_size", batch_size),
                        ("patches_per_visit", patches_per_visit)):
        check_positive_int(value, name)
    for name, value in (("seed", seed), ("start_batch", start_batch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{name} must be an int >= 0; received {value!r}.")
    block_size = VISITS_PER_BLOCK * patches_per_visit
    first_block, skip = divmod(start_batch * batch_size, block_size)

    def visit_volume(visit):
        # Round r visits every volume once, in the order of its own permutation.
        round_index, position = divmod(visit, count)
        return int(np.random.default_rng([seed, 0, round_index]).permutation(count)[position])

    def patches():
        block, start = first_block, skip
        while True:
            drawn = []
            for visit in range(block * VISITS_PER_BLOCK, (block + 1) * VISITS_PER_BLOCK):
                volume_index = visit_volume(visit)
                drawn.append(sample_patches(
                    list(slice_stacks[volume_index]), samplings[volume_index], patch_size,
                    patches_per_visit, np.random.default_rng([seed, 1, visit])))
            image, mask, truth, weight = (np.concatenate(parts) for parts in zip(*drawn))
            order = np.random.default_rng([seed, 2, block]).permutation(block_size)
            for index in order[start:]:
                yield (image[index], mask[index]), truth[index], weight[index]
            block, start = block + 1, 0

    spec = tf.TensorSpec((patch_size, patch_size, 1), tf.float32)
    dataset = tf.data.Dataset.from_generator(
        patches, output_signature=((spec, spec), spec, spec))
    return dataset.batch(batch_size, drop_remainder=True).prefetch(2)


def as_sparse_vae_batches(dataset):
    """Maps `training_dataset`'s batches to ``(image, mask, scored_mask, target)``.

    For a `SparseVAE` (``conv-interp-residual-vae``): its encoder and
    decoder see the model's input (the kept rows, or the thick slices
    interpolated onto the fine grid), its likelihood scores every pixel of
    the fully known patch (`target`, self-supervision).
    """
    return dataset.map(lambda inputs, truth, weight: (inputs[0], inputs[1], tf.ones_like(truth),
                                                      truth))
