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


def is_stream(data):
    """True for a `tf.data.Dataset` or an iterator (a generator, say) of batches."""
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
        for number, batch in enumerate(data):
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError(
                    f"{caller}: batch {number} of the stream is not an (image, mask) pair; "
                    f"received {type(batch).__name__}.")
            image, batch_mask = (np.asarray(part) for part in batch)
            batch_seed = None if seeds is None else int(seeds.integers(2**31 - 1))
            yield function(image, batch_mask, batch_seed)

    return results()
