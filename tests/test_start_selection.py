"""`imputers.select_by_observed_fit`: per image, the candidate whose reconstruction
fits the observed entries best; against NumPy loops and a model with a known answer."""

import numpy as np
import pytest
import tensorflow as tf

import imputers
from imputers import start_selection


def _dense_sigmoid_autoencoder(size, seed):
    """A fixed callable r(x) = sigmoid(x W + b) on flattened images, and its NumPy twin."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 0.5, (size, size)).astype(np.float32)
    bias = rng.normal(0, 0.1, size).astype(np.float32)

    def model(x):
        flat = tf.reshape(x, [tf.shape(x)[0], -1])
        return tf.reshape(tf.sigmoid(flat @ weights + bias), tf.shape(x))

    def reference(image):
        return 1 / (1 + np.exp(-(image.reshape(-1).astype(np.float64) @ weights + bias)))

    return model, reference


@pytest.mark.parametrize("criterion", start_selection.CRITERIA)
def test_misfit_and_choice_equal_numpy_loops(criterion):
    rng = np.random.default_rng(3)
    batch, shape = 7, (4, 5, 1)
    model, reference = _dense_sigmoid_autoencoder(20, seed=4)
    truth = rng.uniform(0, 1, (batch,) + shape).astype(np.float32)
    mask = (rng.uniform(size=(batch,) + shape) < 0.6).astype(np.float32)
    mask[2] = 0.0   # an image with no observed entry: misfit 0, the first candidate kept
    candidates = np.stack([np.where(mask > 0, truth, rng.uniform(0, 1, truth.shape))
                           for _ in range(4)]).astype(np.float32)

    misfit = imputers.start_selection.observed_fit(model, candidates, mask,
                                                   criterion=criterion, batch_size=3)
    imputed, index = imputers.select_by_observed_fit(
        model, list(candidates), mask, criterion=criterion, batch_size=3, return_index=True)

    expected = np.zeros((4, batch))
    for c in range(4):
        for i in range(batch):
            x = candidates[c, i].reshape(-1).astype(np.float64)
            r = reference(candidates[c, i])
            seen = mask[i].reshape(-1) > 0
            total = 0.0
            for value, recon in zip(x[seen], r[seen]):
                if criterion == "cross_entropy":
                    recon = min(max(recon, 1e-7), 1 - 1e-7)
                    total += -(value * np.log(recon) + (1 - value) * np.log(1 - recon))
                else:
                    total += (recon - value) ** 2
            expected[c, i] = total / max(seen.sum(), 1)
    np.testing.assert_allclose(misfit, expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(index, np.argmin(expected, axis=0))
    assert index[2] == 0
    for i in range(batch):
        assert np.array_equal(imputed[i], candidates[index[i], i])
    assert imputed.dtype == np.float32 and imputed.shape == (batch,) + shape


def _soft_projection_onto(patterns, temperature=0.5):
    """r(x): the patterns averaged with weights softmax(-|x - p|^2 / temperature)."""
    flat_patterns = patterns.reshape(len(patterns), -1)

    def model(x):
        flat = tf.reshape(x, [tf.shape(x)[0], 1, -1])
        distance = tf.reduce_sum((flat - flat_patterns[None]) ** 2, axis=2)
        weights = tf.nn.softmax(-distance / temperature, axis=1)
        return tf.reshape(weights @ flat_patterns, tf.shape(x))

    return model


@pytest.mark.parametrize("criterion", start_selection.CRITERIA)
def test_the_filling_that_belongs_with_the_observed_half_is_kept(criterion):
    """Images are one of 3 patterns, the right half missing; candidate c fills it with
    pattern c's right half. Only the true pattern's filling is reconstructed as is:
    every other gives a mixed reconstruction, wrong on the observed half too."""
    rng = np.random.default_rng(11)
    patterns = (rng.uniform(size=(3, 8, 8, 1)) < 0.5).astype(np.float32)
    labels = rng.integers(0, 3, 30)
    truth = patterns[labels]
    mask = np.zeros((30, 8, 8, 1), np.float32)
    mask[:, :, :4] = 1.0
    candidates = np.stack([np.where(mask > 0, truth, patterns[c][None]) for c in range(3)])

    imputed, index = imputers.select_by_observed_fit(
        _soft_projection_onto(patterns), candidates, mask, criterion=criterion,
        return_index=True)

    np.testing.assert_array_equal(index, labels)
    np.testing.assert_array_equal(imputed, truth)


def test_mistakes_are_named():
    rng = np.random.default_rng(0)
    model, _ = _dense_sigmoid_autoencoder(16, seed=1)
    x = rng.uniform(size=(3, 4, 4, 1)).astype(np.float32)
    mask = np.ones((3, 4, 4, 1), np.float32)
    mask[:, :2] = 0
    with pytest.raises(ValueError, match="criterion must be one of"):
        imputers.select_by_observed_fit(model, [x, x], mask, criterion="l1")
    with pytest.raises(ValueError, match="one shape"):
        imputers.select_by_observed_fit(model, [x, x[:2]], mask)
    with pytest.raises(ValueError, match=r"n_candidates >= 1"):
        imputers.select_by_observed_fit(model, np.zeros((0, 3, 4, 4, 1)), mask)
    with pytest.raises(ValueError, match="mask must have the images' shape"):
        imputers.select_by_observed_fit(model, [x, x], mask[:, :3])
    broken = x.copy()
    broken[1, 0, 0, 0] = np.nan   # a missing entry still NaN: not an imputation
    with pytest.raises(ValueError, match="Candidate 1 holds NaN or Inf at sample 1"):
        imputers.select_by_observed_fit(model, [x, broken], mask)
    other = x.copy()
    other[2, 3, 3, 0] += 0.25     # an observed entry changed
    with pytest.raises(ValueError, match="Candidate 1 differs .* of sample 2"):
        imputers.select_by_observed_fit(model, [x, other], mask)
    with pytest.raises(ValueError, match=r"needs images in \[0, 1\]"):
        imputers.select_by_observed_fit(model, [x * 3, x * 3], mask, criterion="cross_entropy")
    with pytest.raises(ValueError, match="batch_size"):
        imputers.select_by_observed_fit(model, [x, x], mask, batch_size=0)
