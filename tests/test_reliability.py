"""Regression tests of issue 11: no silent wrong result, clear errors.

Each test names the defect it guards; each failed on the code before the fix
(a NaN, an Inf, another sample's data, a wrong neighbour, or a raw
TensorFlow error instead of a message naming the argument).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import imputers
import sparselayers as sl
from imputers import initialization
from imputers import metrics

SHAPE = (4, 4, 1)


def _identity_autoencoder(shape=SHAPE):
    return keras.Sequential([keras.Input(shape), keras.layers.Identity()])


def _shrinking_autoencoder(shape=SHAPE, factor=0.5):
    """r(x) = factor * x: the ascent converges to 0 on missing entries for h <= 1."""
    return keras.Sequential([keras.Input(shape), keras.layers.Rescaling(factor)])


def _problem(rng, count=4, shape=SHAPE, missing=0.5):
    x = rng.normal(size=(count,) + shape).astype("float32")
    observed = rng.random((count,) + shape) >= missing
    observed.reshape(count, -1)[:, 0] = True  # one observed entry at least
    return x, observed


def _small_vae(image_shape=(8, 8, 1)):
    return sl.build_variant("conv-zero", image_shape, 3, filters=4, levels=1)


# -- 2. Served signatures return observed entries bit-exact ------------------

def test_served_sparse_vae_keeps_observed_entries_bit_exact(rng, tmp_path):
    model = _small_vae()
    image = rng.random((6, 8, 8, 1)).astype("float32") * 3.7 + 0.1
    mask = (rng.random(image.shape) > 0.5).astype("float32")
    model.export_imputer(tmp_path / "vae", num_samples=5, seed=3)
    serve = tf.saved_model.load(str(tmp_path / "vae")).signatures["serving_default"]
    served = serve(image=tf.constant(image), mask=tf.constant(mask))["imputed"].numpy()
    observed = mask > 0.5
    assert np.array_equal(served[observed], image[observed])
    assert np.all(np.isfinite(served))
    in_process = model.impute(image, mask, num_samples=5, seed=3)
    assert np.array_equal(in_process[observed], image[observed])


@pytest.mark.parametrize("num_samples", [0, -1, 2.5])
def test_export_imputer_rejects_bad_num_samples(tmp_path, num_samples):
    with pytest.raises(ValueError, match=f"num_samples.*{num_samples}"):
        _small_vae().export_imputer(tmp_path / "vae", num_samples=num_samples)


def test_served_vector_field_imputer_keeps_observed_entries_bit_exact(rng, tmp_path):
    x, observed = _problem(rng)
    x = x * 1000.0 + 3.3
    imputer = imputers.VectorFieldImputer(_shrinking_autoencoder(), step_size=0.3, max_steps=5)
    imputer.fit(x + 1.0).export(tmp_path / "ascent")
    serve = tf.saved_model.load(str(tmp_path / "ascent")).signatures["serving_default"]
    served = serve(image=tf.constant(x), mask=tf.constant(observed.astype("float32")))
    served = served["imputed"].numpy()
    assert np.array_equal(served[observed], x[observed])


# -- 3. One sample's bad value stays in that sample -------------------------

@pytest.mark.parametrize("fill", ["noise", "mean"])
def test_inf_in_one_sample_does_not_reach_the_others(rng, fill):
    x, observed = _problem(rng, count=5)
    poisoned = x.copy()
    poisoned[0][observed[0]] = np.inf
    if fill == "noise":
        result = initialization.noise_fill(poisoned, observed, seed=1).numpy()
    else:
        result = initialization.mean_fill(poisoned, observed).numpy()
    assert np.all(np.isfinite(result[1:]))
    assert np.all(np.isfinite(result[0][~observed[0]]))


def test_numpy_entry_points_name_the_sample_with_a_bad_observed_value(rng):
    x, observed = _problem(rng, count=5)
    x[3][observed[3]] = np.nan
    with pytest.raises(ValueError, match="sample 3"):
        imputers.vector_field_ascent(_identity_autoencoder(), x, observed, max_steps=2)
    model = _small_vae()
    image = rng.random((5, 8, 8, 1)).astype("float32")
    mask = np.ones_like(image)
    image[2, 0, 0, 0] = np.inf
    for call in (lambda: model.impute(image, mask), lambda: model.encode(image, mask),
                 lambda: model.sample_imputations(image, mask, 2)):
        with pytest.raises(ValueError, match="sample 2"):
            call()
    model.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="sample 2"):
        model.fit((image, mask), epochs=1, verbose=0)


def test_training_on_a_dataset_with_a_bad_observed_value_never_writes_nan_weights(rng):
    model = _small_vae()
    model.compile(keras.optimizers.Adam(1e-2))
    image = rng.random((8, 8, 8, 1)).astype("float32")
    mask = np.ones_like(image)
    image[5, 3, 3, 0] = np.inf
    dataset = tf.data.Dataset.from_tensor_slices((image, mask)).batch(4)
    raised = False
    try:
        model.fit(dataset, epochs=1, verbose=0, shuffle=False)
    except tf.errors.InvalidArgumentError as error:
        assert "NaN or Inf at an observed entry" in str(error)
        raised = True
    # Without XLA the batch is refused with the message; XLA drops assertions,
    # and then the weights must still be untouched by that batch.
    assert raised or model.jit_compile
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


# -- 4. k-NN on data with an offset, k, NaN references, all-missing queries --

def _brute_force_knn(x, observed, reference, k):
    flat_x = x.reshape(len(x), -1).astype(np.float64)
    flat_seen = observed.reshape(len(x), -1)
    flat_reference = reference.reshape(len(reference), -1).astype(np.float64)
    out = []
    for query, seen in zip(flat_x, flat_seen):
        distances = ((flat_reference[:, seen] - query[seen]) ** 2).sum(axis=1)
        nearest = np.argsort(distances, kind="stable")[:k]
        out.append(np.where(seen, query, flat_reference[nearest].mean(axis=0)))
    return np.asarray(out).reshape(x.shape)


@pytest.mark.parametrize("offset, spread", [(0.0, 1.0), (500.0, 3500.0), (1000.0, 1.0),
                                            (1e4, 1.0)])
def test_knn_fill_picks_the_true_neighbours_on_data_with_an_offset(rng, offset, spread):
    reference = (offset + spread * rng.random((60, 8, 8, 1))).astype("float32")
    queries = reference[:20] + (spread * 1e-3 * rng.normal(size=(20, 8, 8, 1))).astype("float32")
    observed = rng.random(queries.shape) > 0.4
    want = _brute_force_knn(queries, observed, reference, k=1)
    got = imputers.knn_fill(queries, observed, reference, k=1).numpy()
    assert np.array_equal(got, want.astype("float32"))


def test_knn_fill_exact_duplicate_beats_a_near_neighbour_at_an_offset(rng):
    reference = (1e4 + 0.5 * rng.random((50, 64))).astype("float32")
    query = reference[17:18].copy()
    observed = rng.random(query.shape) > 0.3
    filled = imputers.knn_fill(query, observed, reference, k=1).numpy()
    assert np.array_equal(filled, reference[17:18])


def test_knn_fill_orders_near_ties_below_float32_round_off(rng):
    """Ten references closer to the query than float32 products can tell
    apart (distances 2**-32 apart at squared norms near 200), each marked by
    its own value at a missing entry: the exact pass picks them in the order
    of their float64 distances."""
    query = rng.random((1, 784)).astype("float32")
    observed = rng.random(query.shape) > 0.2
    observed[0, :2] = [True, False]
    others = rng.random((200, 784)).astype("float32")
    near = np.repeat(query, 10, axis=0)
    steps = rng.permutation(10)
    near[:, 0] += (1 + steps) * 2.0 ** -16  # observed: distances steps**2 * 2**-32, exact
    near[:, 1] = np.arange(10) / 10  # missing: the fill tells which was picked
    reference = np.concatenate([others[:100], near, others[100:]])
    for k in (1, 3):
        got = imputers.knn_fill(query, observed, reference, k=k).numpy()
        want = _brute_force_knn(query, observed, reference, k=k)
        assert np.array_equal(got[observed], query[observed])
        np.testing.assert_allclose(got, want, rtol=1e-6)
        picked = np.argsort(steps)[:k]
        np.testing.assert_allclose(got[0, 1], np.mean(picked / 10), rtol=1e-6)


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_knn_fill_rejects_bad_k(rng, k):
    x, observed = _problem(rng)
    with pytest.raises(ValueError, match="k must be a positive int"):
        imputers.knn_fill(x, observed, x, k=k)


@pytest.mark.parametrize("weights, match", [
    (np.full((2, 3), 1.0), "do not match"),
    (-1.0, "finite and >= 0 .* sample 0"),
    (np.inf, "finite and >= 0"),
])
def test_knn_fill_rejects_bad_distance_weights(rng, weights, match):
    x, observed = _problem(rng)
    with pytest.raises(ValueError, match=match):
        imputers.knn_fill(x, observed, x, k=2, distance_weights=weights)


@pytest.mark.parametrize("kwargs, match", [
    (dict(width=0), "width must be a positive int"),
    (dict(far_weight=-0.1), "far_weight must be a finite number >= 0"),
    (dict(far_weight=float("nan")), "far_weight"),
])
def test_border_weights_reject_bad_arguments(rng, kwargs, match):
    _, observed = _problem(rng)
    with pytest.raises(ValueError, match=match):
        imputers.border_weights(observed, **kwargs)


def test_border_weights_reject_a_mask_that_is_not_images():
    with pytest.raises(ValueError, match=r"received shape \(3, 16\)"):
        imputers.border_weights(np.ones((3, 16), bool))


def test_border_weights_need_the_number_of_channels():
    weights = tf.function(imputers.border_weights,
                          input_signature=[tf.TensorSpec((None, None, None, None), tf.bool)])
    with pytest.raises(ValueError, match="number of channels to be known"):
        weights.get_concrete_function()


def test_knn_fill_rejects_non_finite_references(rng):
    x, observed = _problem(rng)
    reference = rng.random((6,) + SHAPE).astype("float32")
    reference[4, 1, 1, 0] = np.nan
    with pytest.raises(ValueError, match="reference image 4"):
        imputers.knn_fill(x, observed, reference, k=2)


def test_knn_fill_all_missing_query_gets_the_reference_mean(rng):
    x, observed = _problem(rng, count=3)
    observed[1] = False
    x[1] = np.nan
    reference = rng.random((7,) + SHAPE).astype("float32")
    filled = imputers.knn_fill(x, observed, reference, k=2).numpy()
    np.testing.assert_allclose(filled[1], reference.mean(axis=0), rtol=1e-6)


# -- 6. Divergence is detected and reported per sample ----------------------

def test_diverging_ascent_is_reported_not_returned(rng):
    x, observed = _problem(rng)
    growing = _shrinking_autoencoder(factor=2.0)
    with pytest.raises(imputers.AscentDivergedError) as caught:
        imputers.vector_field_ascent(growing, x, observed, step_size=10.0, max_steps=200)
    error = caught.value
    assert list(error.samples) == [0, 1, 2, 3]
    assert "step_size" in str(error)
    assert np.all(np.isfinite(error.imputed))


def test_nan_from_one_sample_is_reported_for_that_sample(rng):
    x, observed = _problem(rng)

    def reconstruct(batch):  # NaN reconstruction for sample 2 only
        poison = tf.reshape(tf.one_hot(2, tf.shape(batch)[0]), [-1, 1, 1, 1]) > 0
        return tf.where(poison, np.nan, 0.5 * batch)

    with pytest.raises(imputers.AscentDivergedError, match=r"sample\(s\) \[2\]") as caught:
        imputers.vector_field_ascent(reconstruct, x, observed, step_size=0.5, max_steps=5)
    assert list(caught.value.samples) == [2]


@pytest.mark.parametrize("step_size", [np.inf, np.nan, -1.0])
def test_non_finite_step_size_is_rejected(rng, step_size):
    x, observed = _problem(rng)
    with pytest.raises(ValueError, match="step_size"):
        imputers.vector_field_ascent(_identity_autoencoder(), x, observed, step_size=step_size)


def test_autoencoder_that_changes_the_batch_size_is_rejected(rng):
    x, observed = _problem(rng)

    def first_only(batch):
        return batch[:1]

    with pytest.raises(ValueError, match="batch"):
        imputers.vector_field_ascent(first_only, x, observed, max_steps=2)


# -- 7. Degenerate arguments ---------------------------------------------------

def test_degenerate_arguments_are_value_errors(rng):
    x, observed = _problem(rng)
    empty = np.zeros((0,) + SHAPE, np.float32)
    model = _identity_autoencoder()
    with pytest.raises(ValueError, match="reference"):
        imputers.vector_field_ascent(model, x, observed, init="mean", reference=empty)
    with pytest.raises(ValueError, match="reference"):
        imputers.mean_fill(x, observed, reference=empty)
    with pytest.raises(ValueError, match="reference"):
        imputers.VectorFieldImputer(model).fit(empty)
    with pytest.raises(ValueError, match="regularization"):
        sl.SparseDense(3, regularization=np.inf)
    with pytest.raises(ValueError, match="noise_sigma"):
        _sparse_vae_with(noise_sigma=np.inf)
    with pytest.raises(ValueError, match="levels"):
        sl.build_variant("conv-zero", (8, 8, 1), 3, levels=0)
    network = keras.Sequential([keras.Input((2,)), keras.layers.Dense(16),
                                keras.layers.Reshape(SHAPE)])
    with pytest.raises(ValueError, match="learning_rate"):
        imputers.fit_dip(network, x, observed, steps=2, learning_rate=np.nan, verbose=0)
    with pytest.raises(ValueError, match="steps"):
        imputers.fit_dip(network, x, observed, steps=2.5, verbose=0)
    with pytest.raises(ValueError, match="k must be a positive int"):
        imputers.vector_field_ascent(model, x, observed, init="knn", reference=x, k=-1)
    with pytest.raises(ValueError, match="batch_size"):
        imputers.vector_field_ascent(model, x, observed, batch_size=0)


def _sparse_vae_with(**kwargs):
    vae = _small_vae()
    return sl.SparseVAE(vae.encoder, vae.decoder, **kwargs)


@pytest.mark.parametrize("num_samples", [0, -1, 1.5])
def test_sparse_vae_impute_rejects_bad_sample_counts(rng, num_samples):
    model = _small_vae()
    image = rng.random((3, 8, 8, 1)).astype("float32")
    with pytest.raises(ValueError, match="num_samples"):
        model.impute(image, np.ones_like(image), num_samples=num_samples)
    with pytest.raises(ValueError, match=r"\bn\b"):
        model.sample_imputations(image, np.ones_like(image), num_samples)


@pytest.mark.parametrize("batch_size", [0, -2, 1.5])
def test_sparse_vae_rejects_bad_batch_sizes(rng, batch_size):
    model = _small_vae()
    image = rng.random((3, 8, 8, 1)).astype("float32")
    for call in (lambda: model.impute(image, np.ones_like(image), batch_size=batch_size),
                 lambda: model.encode(image, np.ones_like(image), batch_size=batch_size)):
        with pytest.raises(ValueError, match="batch_size"):
            call()


# -- 8. FillMissing("interp") never interpolates across samples -------------

def test_fill_missing_interp_on_flat_features_stays_within_each_sample():
    image = np.array([[1.0, np.nan, 3.0], [10.0, 20.0, 30.0], [np.nan, 5.0, np.nan]], np.float32)
    mask = np.isfinite(image).astype("float32")
    layer = sl.FillMissing("interp", axis=-1)
    filled = layer([image, mask]).numpy()
    np.testing.assert_array_equal(filled, [[1, 2, 3], [10, 20, 30], [5, 5, 5]])
    with pytest.raises(ValueError, match="batch axis"):
        sl.FillMissing("interp")([image, mask])


# -- 9. Batch sizes of image and mask are checked ---------------------------

@pytest.mark.parametrize("layer", [
    lambda: sl.WeightedConv2D(2, 3), lambda: sl.SparseDense(2), lambda: sl.FillMissing("zero"),
    lambda: sl.LocallyConnectedSparse2D(2, 2),
])
@pytest.mark.parametrize("mask_batch", [1, 3])
def test_layers_check_the_mask_batch(rng, layer, mask_batch):
    image = rng.random((2, 4, 4, 1)).astype("float32")
    mask = np.ones((mask_batch, 4, 4, 1), np.float32)
    with pytest.raises(ValueError, match=r"batch.*\(2, 4, 4, 1\).*\(" + str(mask_batch)):
        layer()([image, mask])


# -- 10. Empty batches --------------------------------------------------------

def test_empty_batches_give_empty_results(rng):
    empty = np.zeros((0,) + SHAPE, np.float32)
    reference = rng.random((5,) + SHAPE).astype("float32")
    model = _shrinking_autoencoder()
    assert imputers.vector_field_ascent(model, empty, empty, max_steps=3).shape == empty.shape
    assert imputers.knn_fill(empty, empty > 0, reference, k=2).shape == empty.shape
    imputer = imputers.VectorFieldImputer(model, init="knn", k=2).fit(reference)
    assert imputer.impute(empty, empty).shape == empty.shape
    vae = _small_vae()
    no_images = np.zeros((0, 8, 8, 1), np.float32)
    assert vae.impute(no_images, no_images).shape == no_images.shape
    mean, log_variance = vae.encode(no_images, no_images)
    assert mean.shape[0] == 0 and log_variance.shape[0] == 0
    assert vae.sample_imputations(no_images, no_images, 3).shape == (3, 0, 8, 8, 1)
    network = keras.Sequential([keras.Input((2,)), keras.layers.Dense(16),
                                keras.layers.Reshape(SHAPE)])
    assert imputers.fit_dip(network, empty, empty, steps=2, verbose=0).shape == empty.shape
    vae.compile(keras.optimizers.Adam(1e-3))
    with pytest.raises(ValueError, match="empty"):
        vae.fit((no_images, no_images), epochs=1, verbose=0)


def test_served_knn_signature_on_an_empty_batch(rng, tmp_path):
    reference = rng.random((5,) + SHAPE).astype("float32")
    imputer = imputers.VectorFieldImputer(_shrinking_autoencoder(), init="knn", k=2,
                                          max_steps=3)
    imputer.fit(reference).export(tmp_path / "knn")
    serve = tf.saved_model.load(str(tmp_path / "knn")).signatures["serving_default"]
    empty = tf.zeros((0,) + SHAPE)
    assert serve(image=empty, mask=empty)["imputed"].shape == (0,) + SHAPE


# -- 11. Clear messages --------------------------------------------------------

def test_ssim_on_images_smaller_than_its_window(rng):
    small = rng.random((2, 8, 8)).astype("float32")
    with pytest.raises(ValueError, match=r"11.*\(2, 8, 8"):
        metrics.ssim(small, small)


def test_psnr_rejects_a_non_positive_data_range(rng):
    images = rng.random((2, 8, 8)).astype("float32")
    for data_range in (0.0, -1.0, np.nan):
        with pytest.raises(ValueError, match="data_range"):
            metrics.psnr(images, images + 0.1, data_range=data_range)
    assert np.all(metrics.psnr(images, images) == np.inf)  # documented: identical images


def test_masked_mse_treats_a_nan_mask_entry_as_missing():
    a = np.array([[0.0, 0.0]])
    b = np.array([[1.0, 3.0]])
    mask = np.array([[1.0, np.nan]])
    assert metrics.masked_mse(a, b, mask) == 9.0


@pytest.mark.parametrize("layer", [lambda: sl.WeightedConv2D(2, 3),
                                   lambda: sl.FillMissing("interp", axis=1),
                                   lambda: sl.SparseDense(2)])
def test_integer_images_are_taken_as_floats(rng, layer):
    image = rng.integers(0, 10, (2, 4, 4, 1)).astype("int32")
    mask = np.ones_like(image)
    as_float = layer()
    out_int = as_float([image, mask])
    out_float = as_float([image.astype("float32"), mask])
    first = out_int[0] if isinstance(out_int, list) else out_int
    second = out_float[0] if isinstance(out_float, list) else out_float
    np.testing.assert_array_equal(np.asarray(first), np.asarray(second))


def test_sparse_dense_called_on_another_image_shape():
    layer = sl.SparseDense(2)
    layer([np.zeros((1, 4, 4, 1), np.float32), np.ones((1, 4, 4, 1), np.float32)])
    with pytest.raises(ValueError, match=r"built for images \(batch,\) \+ \(4, 4, 1\).*\(5, 5, 1\)"):
        layer([np.zeros((1, 5, 5, 1), np.float32), np.ones((1, 5, 5, 1), np.float32)])


def test_untrained_model_on_large_inputs_gives_finite_imputations(rng):
    model = sl.build_variant("conv-FC-sparse", (8, 8, 1), 3, filters=4, levels=1)
    image = (1000.0 + 100.0 * rng.random((4, 8, 8, 1))).astype("float32")
    mask = (rng.random(image.shape) > 0.5).astype("float32")
    imputed = model.impute(image, mask, num_samples=3, seed=0)
    assert np.all(np.isfinite(imputed))
    samples = model.sample_imputations(image, mask, 2, seed=0)
    assert np.all(np.isfinite(samples))


def test_served_sparse_dense_model_on_an_empty_batch(tmp_path):
    """The empty-batch answer runs the model on one blank image of static
    batch 1, which the SparseDense Gram loop must take (its loop variable kept
    a static batch while the loop body's did not)."""
    model = sl.build_variant("conv-FC-sparse", (8, 8, 1), 3, filters=4, levels=1)
    model.export_imputer(tmp_path / "vae", num_samples=2)
    serve = tf.saved_model.load(str(tmp_path / "vae")).signatures["serving_default"]
    empty = tf.zeros((0, 8, 8, 1))
    outputs = serve(image=empty, mask=empty)
    assert outputs["imputed"].shape == (0, 8, 8, 1)
    assert outputs["latent_mean"].shape == (0, 3)
    layer = sl.SparseDense(3)
    solve = tf.function(lambda image, mask: layer([image, mask]))
    assert solve(tf.ones((1, 6)), tf.ones((1, 6))).shape == (1, 3)


# -- Issue 21: initial fillings stay finite ----------------------------------

def test_mean_fill_of_huge_finite_values_is_finite():
    # float32 sums of values near 3e38 overflow; the means do not.
    x = np.full((4, 3), 3e38, np.float32)
    x[:, 2] = np.float32(-3e38)
    observed = np.ones_like(x, bool)
    observed[0] = False
    filled = imputers.mean_fill(x, observed).numpy()
    np.testing.assert_array_equal(filled[0], x[1])   # the mean of equal values is the value
    assert np.all(np.isfinite(filled))
    mean = imputers.initialization.pixel_mean(x[1:]).numpy()
    np.testing.assert_allclose(mean[0], x[1:].astype(np.float64).mean(axis=0), rtol=1e-6)


def test_a_non_finite_init_array_is_refused_naming_the_sample(rng):
    x, observed = _problem(rng)
    init = np.zeros_like(x)
    init[2] = np.nan
    with pytest.raises(ValueError, match=r"init array must be finite .*sample 2 "):
        imputers.vector_field_ascent(_shrinking_autoencoder(), x, observed, init=init)
    # NaN only where entries are observed is no fault: those are replaced.
    init = np.where(observed, np.nan, 0.0).astype(np.float32)
    imputed = imputers.vector_field_ascent(_shrinking_autoencoder(), x, observed, init=init)
    assert np.all(np.isfinite(imputed))


def test_knn_fill_checks_distance_weights_inside_a_graph(rng):
    x, observed = _problem(rng)

    @tf.function
    def fill(weights):
        return imputers.knn_fill(x, observed, x, k=2, distance_weights=weights)

    good = np.ones(x.shape, np.float32)
    np.testing.assert_allclose(fill(good), imputers.knn_fill(x, observed, x, k=2), rtol=1e-6)
    for bad in (-1.0, np.inf):
        weights = good.copy()
        weights[np.nonzero(observed)] = bad
        with pytest.raises(tf.errors.InvalidArgumentError, match="distance_weights must be"):
            fill(weights)


def test_knn_fill_with_constant_weights_and_a_graph_mask(rng):
    x, observed = _problem(rng)
    weights = np.where(observed, 2.0, 0.0).astype(np.float32)

    @tf.function
    def fill(mask):
        return imputers.knn_fill(x, mask, x, k=2, distance_weights=weights)

    np.testing.assert_allclose(fill(observed), imputers.knn_fill(x, observed, x, k=2), rtol=1e-6)
