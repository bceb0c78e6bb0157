"""Batch-by-batch imputation of data larger than memory.

Every imputation entry point (`SparseVAE.impute`, `encode` and
`sample_imputations`, `imputers.vector_field_ascent`, `pseudo_gibbs` and
`VectorFieldImputer.impute`) takes, in place of image and mask arrays, a
`tf.data.Dataset` or any iterator of ``(image, mask)`` batches, and then
returns a generator of per-batch results: memory holds one batch at a time,
whatever the size of the data. NumPy in, NumPy out stays as it is.
`imputers.knn_fill` is a TensorFlow function: map it over a dataset
(``dataset.map(lambda x, m: (knn_fill(x, m, reference), m))``).

Example:

>>> batches = tf.data.Dataset.from_tensor_slices((images, masks)).batch(256)
>>> for imputed in model.impute(batches, None, num_samples=10):
...     sink.write(imputed)          # (256, *shape), one batch at a time
"""

import collections.abc

import numpy as np
import tensorflow as tf

__all__ = ["is_stream", "map_batches"]


def is_stream(data, caller="streaming"):
    """True for a `tf.data.Dataset` or an iterator (a generator, say) of batches.

    Raises:
        ValueError: for a list or tuple of ``(image, mask)`` pairs, which
            would otherwise be read as one array of images: a stream is an
            iterator (``iter(pairs)``) or a dataset.
    """
    if isinstance(data, (list, tuple)) and data and all(
            isinstance(item, tuple) and len(item) == 2
            and all(hasattr(part, "shape") for part in item) for item in data):
        raise ValueError(
            f"{caller}: received a {type(data).__name__} of {len(data)} (image, mask) pairs; "
            "pass iter(pairs) or a tf.data.Dataset to stream them, or stacked image and mask "
            "arrays.")
    return isinstance(data, (tf.data.Dataset, collections.abc.Iterator))


def map_batches(function, data, mask, caller, seed=None):
    """A generator of ``function(image, mask, batch_seed)`` over the batches of `data`.

    Args:
        function: takes NumPy ``image`` and ``mask`` batches and an int seed
            (or None) and returns that batch's result.
        data: a `tf.data.Dataset` or iterator of ``(image, mask)`` batches.
        mask: must be None (the masks come with the batches).
        caller: the name shown in error messages.
        seed: None, or an int from which each batch gets its own seed (the
            same seed gives the same results batch by batch).

    Raises:
        ValueError: at once (not at the first batch) if `mask` is given.
    """
    if mask is not None:
        raise ValueError(
            f"{caller}: with a dataset or iterator of (image, mask) batches, give no separate "
            "mask (received one).")
    seeds = None if seed is None else np.random.default_rng(seed)

    def results():
        first_sample = 0   # the index in the whole stream of the batch's first sample
        for number, batch in enumerate(data):
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError(
                    f"{caller}: batch {number} of the stream is not an (image, mask) pair; "
                    f"received {type(batch).__name__}.")
            image, batch_mask = (np.asarray(part) for part in batch)
            where = f"{caller}: batch {number} of the stream"
            _check_batch_finite(image, batch_mask, where, first_sample)
            batch_seed = None if seeds is None else int(seeds.integers(2**31 - 1))
            try:
                result = function(image, batch_mask, batch_seed)
            except ValueError as error:
                raise ValueError(f"{where} (samples {first_sample} to "
                                 f"{first_sample + len(image) - 1}): {error}") from None
            first_sample += len(image)
            yield result

    return results()


def _check_batch_finite(image, mask, where, first_sample):
    """NaN or Inf at an observed entry: a ValueError naming the sample's index in the stream."""
    if image.ndim == 0 or image.dtype.kind not in "fc":
        return   # shapes and types are the function's to check
    try:
        observed = np.broadcast_to(mask if mask.dtype == bool else mask > 0.5, image.shape)
    except (ValueError, TypeError):
        return
    # The layers' check (`image_and_mask.check_observed_finite`) numbers the
    # samples of one batch; distribute/ does not import layers/, and here the
    # index in the whole stream is what finds the sample.
    bad = np.logical_and(observed, ~np.isfinite(image)).reshape(len(image), -1).any(axis=1)
    if bad.any():
        samples = np.flatnonzero(bad) + first_sample
        raise ValueError(
            f"{where}: sample {int(samples[0])} of the stream holds NaN or Inf at an observed "
            f"entry ({len(samples)} sample(s) of this batch do: {samples[:10].tolist()}). "
            "Observed values must be finite; mark unknown entries as missing in the mask "
            "instead.")
