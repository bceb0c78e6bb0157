"""Batch-by-batch imputation: datasets and iterators in, generators out."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import imputers
import sparselayers as sl

SHAPE = (8, 8, 1)


def _data(rng, count=20):
    images = rng.random((count,) + SHAPE).astype("float32")
    masks = (rng.random(images.shape) > 0.5).astype("float32")
    return np.where(masks > 0, images, np.nan).astype("float32"), masks, images


def _counting_batches(images, masks, size, pulled):
    """A plain Python generator of batches that records how many were taken."""
    for start in range(0, len(images), size):
        pulled.append(start)
        yield images[start:start + size], masks[start:start + size]


def _autoencoder():
    image = keras.Input(SHAPE)
    return keras.Model(image, keras.layers.Dense(1)(image))


def test_sparse_vae_streams_batch_by_batch(rng):
    model = sl.build_variant("conv-zero", SHAPE, 3, filters=4, levels=1)
    sparse, masks, images = _data(rng)
    dataset = tf.data.Dataset.from_tensor_slices((sparse, masks)).batch(8)

    streamed = list(model.encode(dataset, None))
    assert [len(mean) for mean, _ in streamed] == [8, 8, 4]
    mean, log_variance = model.encode(sparse, masks)
    assert np.array_equal(np.concatenate([m for m, _ in streamed]), mean)
    assert np.array_equal(np.concatenate([v for _, v in streamed]), log_variance)

    first = list(model.impute(dataset, None, num_samples=3, seed=5))
    again = list(model.impute(dataset, None, num_samples=3, seed=5))
    imputed = np.concatenate(first)
    assert imputed.shape == images.shape
    assert np.array_equal(imputed, np.concatenate(again))           # the seed fixes every batch
    assert np.array_equal(imputed[masks > 0], images[masks > 0])
    draws = list(model.sample_imputations(dataset, None, 2, seed=0))
    assert [d.shape for d in draws] == [(2, 8) + SHAPE, (2, 8) + SHAPE, (2, 4) + SHAPE]

    pulled = []
    results = model.impute(_counting_batches(sparse, masks, 5, pulled), None, num_samples=2)
    assert pulled == []                      # nothing is read before the first result is asked
    assert next(results).shape == (5,) + SHAPE
    assert pulled == [0]                     # one batch in memory at a time


def test_ascent_and_imputer_stream_with_the_numpy_results(rng):
    sparse, masks, _ = _data(rng)
    reference = rng.random((30,) + SHAPE).astype("float32")
    model = keras.Sequential([keras.Input(SHAPE), keras.layers.Rescaling(0.5, offset=0.25)])
    settings = dict(step_size=0.3, max_steps=10, init="knn", reference=reference, k=3)
    whole = imputers.vector_field_ascent(model, sparse, masks, **settings)
    dataset = tf.data.Dataset.from_tensor_slices((sparse, masks)).batch(6)
    streamed = np.concatenate(list(imputers.vector_field_ascent(model, dataset, None, **settings)))
    assert np.array_equal(streamed, whole)

    imputer = imputers.VectorFieldImputer(model, step_size=0.3, max_steps=10, init="knn", k=3)
    imputer.fit(reference)
    batches = iter([(sparse[:7], masks[:7]), (sparse[7:], masks[7:])])
    streamed = np.concatenate(list(imputer.impute(batches, None)))
    assert np.array_equal(streamed, whole)


def test_knn_fill_maps_over_a_dataset(rng):
    sparse, masks, _ = _data(rng)
    reference = rng.random((30,) + SHAPE).astype("float32")
    dataset = tf.data.Dataset.from_tensor_slices((sparse, masks)).batch(6)
    mapped = dataset.map(lambda x, m: imputers.knn_fill(x, m, reference, k=3))
    streamed = np.concatenate([batch.numpy() for batch in mapped])
    assert np.array_equal(streamed, imputers.knn_fill(sparse, masks, reference, k=3).numpy())


def test_stream_errors_are_clear(rng):
    sparse, masks, _ = _data(rng)
    model = sl.build_variant("conv-zero", SHAPE, 3, filters=4, levels=1)
    dataset = tf.data.Dataset.from_tensor_slices((sparse, masks)).batch(8)
    with pytest.raises(ValueError, match="give no separate mask"):
        model.impute(dataset, masks)                  # raised at the call, not at iteration
    images_only = tf.data.Dataset.from_tensor_slices(sparse).batch(8)
    with pytest.raises(ValueError, match=r"batch 0 .* not an \(image, mask\) pair"):
        next(model.impute(images_only, None))
    # Issue 21: a NaN at an observed entry of the second batch was "sample 1"
    # (its index in the batch); it is sample 9 of the stream, in batch 1.
    bad = sparse.copy()
    bad[9][masks[9] > 0.5] = np.nan
    stream = tf.data.Dataset.from_tensor_slices((bad, masks)).batch(8)
    for results in (model.impute(stream, None), imputers.vector_field_ascent(
            _autoencoder(), iter([(bad[:8], masks[:8]), (bad[8:16], masks[8:16])]), None)):
        with pytest.raises(ValueError, match=r"batch 1 of the stream: sample 9 of the stream "
                                             r"holds NaN"):
            list(results)
    # A list of (image, mask) pairs is not one array of images.
    pairs = [(sparse[i:i + 4], masks[i:i + 4]) for i in range(0, 12, 4)]
    with pytest.raises(ValueError, match=r"list of 3 \(image, mask\) pairs; pass iter\(pairs\)"):
        model.impute(pairs, None)
    with pytest.raises(ValueError, match=r"vector_field_ascent: received a list of 3"):
        imputers.vector_field_ascent(_autoencoder(), pairs, None)
