import json
import os
import shutil
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import sparselayers as sl
from sparselayers.models import sparse_vae_loss
from sparselayers.models import sparse_vae_imputation


def _linear_decoder(latent_dim, dim, rng):
    latent = keras.Input((latent_dim,))
    dense = keras.layers.Dense(dim)
    decoder = keras.Model(latent, dense(latent))
    dense.set_weights([rng.normal(size=(latent_dim, dim)).astype("float32"),
                       rng.normal(size=dim).astype("float32")])
    return decoder, dense


def _small_vae(rng, image_shape=(6, 1), latent_dim=2, **kwargs):
    image = keras.Input(image_shape, name="image")
    mask = keras.Input(image_shape, name="mask")
    mean = sl.SparseDense(latent_dim, name="mean")([image, mask])
    log_variance = sl.SparseDense(latent_dim, name="log_variance")([image, mask])
    encoder = keras.Model([image, mask], [mean, log_variance])
    latent = keras.Input((latent_dim,))
    decoder = keras.Model(latent, keras.layers.Reshape(image_shape)(
        keras.layers.Dense(int(np.prod(image_shape)))(latent)))
    return sl.SparseVAE(encoder, decoder, **kwargs)


def _data(rng, count=32, shape=(6, 1), missing=0.4):
    images = rng.random((count,) + shape).astype("float32")
    mask = (rng.random((count,) + shape) >= missing).astype("float32")
    return np.where(mask > 0, images, np.nan).astype("float32"), mask, images


def test_kl_and_reconstruction_match_closed_forms(rng):
    batch, latent_dim, dim = 4, 3, 7
    decoder, dense = _linear_decoder(latent_dim, dim, rng)
    kernel, bias = (w.astype(np.float64) for w in dense.get_weights())
    mean = rng.normal(size=(batch, latent_dim)).astype("float32")
    log_variance = rng.normal(size=(batch, latent_dim)).astype("float32") - 1.0
    image = rng.normal(size=(batch, dim)).astype("float32")
    mask = rng.random((batch, dim)) < 0.6
    sigma = 0.7
    tf.random.set_seed(0)
    reconstruction, kl = sparse_vae_loss.sparse_vae_loss_terms(
        np.where(mask, image, np.nan), mask, mean, log_variance, decoder, sigma,
        num_samples=40000,
    )
    variance = np.exp(log_variance.astype(np.float64))
    want_kl = 0.5 * np.sum(variance + mean**2 - 1.0 - log_variance, axis=1)
    np.testing.assert_allclose(kl.numpy(), want_kl, rtol=1e-5)
    # E_q (y - W^T x - b)^2 = (y - W^T mu - b)^2 + sum_k W_kj^2 var_k, per entry.
    residual = image - (mean @ kernel + bias)
    expected_square = residual**2 + variance @ kernel**2
    want = np.sum(np.where(mask, expected_square / (2 * sigma**2)
                           + np.log(sigma * np.sqrt(2 * np.pi)), 0.0), axis=1)
    np.testing.assert_allclose(reconstruction.numpy(), want, rtol=2e-2)


def test_missing_entries_contribute_nothing(rng):
    model = _small_vae(rng)
    sparse, mask, images = _data(rng, 8)
    other = np.where(mask > 0, images, 123.0).astype("float32")
    values = []
    for image in (sparse, other):
        tf.random.set_seed(5)
        with tf.GradientTape() as tape:
            reconstruction, kl = model.loss_terms(tf.constant(image), mask)
            loss = tf.reduce_mean(reconstruction + kl)
        gradients = tape.gradient(loss, model.trainable_weights)
        assert all(np.all(np.isfinite(g.numpy())) for g in gradients)
        values.append((loss.numpy(), [g.numpy() for g in gradients]))
    np.testing.assert_allclose(values[0][0], values[1][0], rtol=1e-6)
    for a, b in zip(values[0][1], values[1][1]):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("as_dataset", [False, True])
def test_fit_without_targets_reports_both_terms(rng, as_dataset):
    model = _small_vae(rng, learn_noise_sigma=True)
    model.compile(keras.optimizers.Adam(0.05))
    sparse, mask, _ = _data(rng, 64)
    data = tf.data.Dataset.from_tensor_slices((sparse, mask)).batch(16) if as_dataset else (sparse, mask)
    history = model.fit(data, epochs=5, verbose=0,
                        **({"shuffle": False} if as_dataset else {"batch_size": 16}))
    assert set(history.history) == {"loss", "reconstruction_loss", "kl_loss"}
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    np.testing.assert_allclose(
        np.array(history.history["reconstruction_loss"]) + history.history["kl_loss"], losses, rtol=1e-4
    )
    assert any(w is model.log_noise_sigma for w in model.trainable_weights)
    assert float(model.noise_sigma) > 0 and float(model.noise_sigma) != pytest.approx(0.1)


def test_linear_subspace_impute_is_equation_15(rng):
    model = sl.LinearSubspaceVAE((5, 4, 1), latent_dim=3, regularization=0.2)
    subspace = model.subspace
    kernel = rng.normal(size=(20, 3)).astype("float32")
    mu = rng.normal(size=20).astype("float32")
    subspace.kernel.assign(kernel)
    subspace.bias.assign(mu)
    log_variance = model.encoder.layers[-1].log_variance
    log_variance.assign(np.full(3, -30.0, "float32"))  # q concentrated on its mean
    sparse, mask, images = _data(rng, 6, (5, 4, 1), missing=0.5)
    imputed = model.impute(sparse, mask, num_samples=4, seed=0)
    for image, seen, got in zip(images.reshape(6, -1), mask.reshape(6, -1) > 0, imputed.reshape(6, -1)):
        k_o = kernel[seen].astype(np.float64)
        gram = k_o.T @ k_o
        floor = 1e-5 * np.trace(gram) / 3 + 1e-6
        code = np.linalg.solve(gram + (0.2 + floor) * np.eye(3), k_o.T @ (image[seen] - mu[seen]))
        want = np.where(seen, image, kernel @ code + mu)
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_impute_samples_and_encode(rng):
    model = _small_vae(rng)
    sparse, mask, images = _data(rng, 10)
    imputed = model.impute(sparse, mask, num_samples=5, batch_size=4, seed=1)
    assert imputed.shape == sparse.shape and np.all(np.isfinite(imputed))
    np.testing.assert_array_equal(imputed[mask > 0], images[mask > 0])
    np.testing.assert_array_equal(
        imputed, model.impute(sparse, mask, num_samples=5, batch_size=4, seed=1, verbose=1))
    samples = model.sample_imputations(sparse, mask, 3, seed=2)
    assert samples.shape == (3,) + sparse.shape
    assert not np.allclose(samples[0], samples[1])
    for sample in samples:
        np.testing.assert_array_equal(sample[mask > 0], images[mask > 0])
    mean, log_variance = model.encode(sparse, mask)
    assert mean.shape == (10, 2) and log_variance.shape == (10, 2)
    # Conditional mean (eq. 8) ~ average of many decoded samples.
    draws = model.sample_imputations(sparse, mask, 400, seed=3, pixel_noise=False)
    standard_error = draws.std(axis=0) / np.sqrt(400)
    difference = np.abs(model.impute(sparse, mask, num_samples=400, seed=4) - draws.mean(axis=0))
    assert np.all(difference <= 6 * np.sqrt(2) * standard_error + 1e-5)


def test_all_missing_image_is_finite(rng):
    model = _small_vae(rng)
    sparse, mask, _ = _data(rng, 4)
    mask[1] = 0.0
    sparse[1] = np.nan
    assert np.all(np.isfinite(model.impute(sparse, mask)))
    assert np.all(np.isfinite(model.sample_imputations(sparse, mask, 2, seed=0)))


def test_keras_file_round_trip(rng, tmp_path):
    sparse, mask, _ = _data(rng, 8, (8, 8, 1))
    for model in (sl.build_variant("conv-FC-sparse", (8, 8, 1), 3, filters=4, levels=1),
                  sl.LinearSubspaceVAE((8, 8, 1), 3, noise_sigma=0.3)):
        model.compile(keras.optimizers.Adam(1e-3))
        model.fit((sparse, mask), epochs=1, verbose=0)
        path = str(tmp_path / f"{model.name}.keras")
        model.save(path)
        restored = keras.models.load_model(path)
        assert type(restored) is type(model)
        np.testing.assert_array_equal(
            restored.impute(sparse, mask, seed=0), model.impute(sparse, mask, seed=0)
        )


def test_export_imputer_for_serving(rng, tmp_path):
    model = sl.build_variant("conv-sparse", (8, 8, 1), 3, filters=4, levels=1)
    sparse, mask, _ = _data(rng, 5, (8, 8, 1))
    path = tmp_path / "imputer"
    model.export_imputer(path, num_samples=4, seed=7)
    image = np.nan_to_num(sparse)
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "mask.npy", mask)
    script = textwrap.dedent(f"""
        import json, sys, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(path)!r})
        out = loaded.signatures["serving_default"](
            image=tf.constant(np.load({str(tmp_path / 'image.npy')!r})),
            mask=tf.constant(np.load({str(tmp_path / 'mask.npy')!r})))
        assert "sparselayers" not in sys.modules and "tensorflow_probability" not in sys.modules
        print(json.dumps({{k: v.numpy().tolist() for k, v in out.items()}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert sorted(served) == ["imputed", "latent_mean"]
    imputed, latent = sparse_vae_imputation.impute_batch(
        model, tf.constant(image), tf.constant(mask), tf.constant(4), tf.constant([7, 0]), False)
    np.testing.assert_allclose(served["imputed"], imputed.numpy().mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served["latent_mean"], latent.numpy(), rtol=1e-5, atol=1e-6)

    cli = shutil.which("saved_model_cli", path=os.path.dirname(sys.executable))
    assert cli is not None
    result = subprocess.run(
        [cli, "run", "--dir", str(path), "--tag_set", "serve", "--signature_def",
         "serving_default", "--inputs",
         f"image={tmp_path / 'image.npy'};mask={tmp_path / 'mask.npy'}"],
        capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "imputed" in result.stdout and "latent_mean" in result.stdout


def test_mirrored_strategy_matches_single_device(rng):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")][:2]
    # ReductionToOneDevice: collective all-reduce keys of several strategies in
    # one process can collide (a TF limitation); real jobs use one strategy.
    strategy = tf.distribute.MirroredStrategy(
        devices, cross_device_ops=tf.distribute.ReductionToOneDevice()
    )
    sparse, mask, _ = _data(rng, 64, (8, 8, 1))
    keras.utils.set_random_seed(0)
    single = sl.build_variant("conv-sparse", (8, 8, 1), 3, filters=4, levels=1, num_samples=64)
    weights = single.get_weights()
    with strategy.scope():
        mirrored = sl.build_variant("conv-sparse", (8, 8, 1), 3, filters=4, levels=1, num_samples=64)
        mirrored.set_weights(weights)
        mirrored.compile(keras.optimizers.SGD(1e-4))
    single.compile(keras.optimizers.SGD(1e-4))
    # 64 posterior samples per image: the Monte Carlo noise of the loss is
    # well below the tolerance, so equal losses mean equal computations.
    evaluated = [m.evaluate((sparse, mask), batch_size=32, verbose=0, return_dict=True)
                 for m in (single, mirrored)]
    np.testing.assert_allclose(evaluated[0]["kl_loss"], evaluated[1]["kl_loss"], rtol=1e-4)
    np.testing.assert_allclose(evaluated[0]["loss"], evaluated[1]["loss"], rtol=2e-2)
    fitted = [m.fit((sparse, mask), batch_size=32, epochs=2, shuffle=False, verbose=0).history
              for m in (single, mirrored)]
    np.testing.assert_allclose(fitted[0]["loss"], fitted[1]["loss"], rtol=2e-2)
    for a, b in zip(single.get_weights(), mirrored.get_weights()):
        np.testing.assert_allclose(a, b, rtol=0.05, atol=2e-4)


def test_bad_encoder_decoder_and_inputs(rng):
    image = keras.Input((6, 1))
    mask = keras.Input((6, 1))
    mean = sl.SparseDense(2)([image, mask])
    latent = keras.Input((2,))
    good_decoder = keras.Model(latent, keras.layers.Reshape((6, 1))(keras.layers.Dense(6)(latent)))
    wrong_image = keras.Model(latent, keras.layers.Dense(5)(latent))
    with pytest.raises(ValueError, match=r"decoder returns images \(batch,\) \+ \(5,\), the encoder takes \(batch,\) \+ \(6, 1\)"):
        sl.SparseVAE(keras.Model([image, mask], [mean, mean]), wrong_image)
    with pytest.raises(ValueError, match="3 output"):
        sl.SparseVAE(keras.Model([image, mask], [mean, mean, mean]), wrong_image)
    latent3 = keras.Input((3,))
    with pytest.raises(ValueError, match=r"decoder takes inputs \(None, 3\)"):
        sl.SparseVAE(keras.Model([image, mask], [mean, mean]),
                     keras.Model(latent3, keras.layers.Reshape((6, 1))(keras.layers.Dense(6)(latent3))))
    with pytest.raises(ValueError, match="noise_sigma must be finite and > 0"):
        sl.SparseVAE(keras.Model([image, mask], [mean, mean]), good_decoder, noise_sigma=0.0)
    model = _small_vae(rng)
    with pytest.raises(ValueError, match=r"\(batch,\) \+ \(7, 1\) do not fit"):
        model.impute(np.zeros((2, 7, 1), "float32"), np.ones((2, 7, 1), "float32"))
    with pytest.raises(ValueError, match="no targets"):
        model.train_step((1, 2, 3, 4, 5))
    with pytest.raises(ValueError, match=r"mask must have 1 channel or the image's 1|differ on axis 1"):
        model.impute(np.zeros((2, 6, 1), "float32"), np.ones((2, 5, 1), "float32"))
    with pytest.raises(ValueError, match="differ on axis 1"):
        model.loss_terms(np.zeros((2, 6, 1), "float32"), np.ones((2, 5, 1), "float32"))


@pytest.mark.parametrize("name", [v for v in sl.VARIANTS if v != "conv-interp-residual"])
def test_each_variant_trains_a_few_steps(rng, name):
    shape = (8, 8, 8, 1) if name == "volumetric" else (8, 8, 1)
    sparse, mask, images = _data(rng, 16, shape, missing=0.6)
    kwargs = dict(block_size=4, block_units=3) if name == "volumetric" else dict(filters=4, levels=2)
    model = sl.build_variant(name, shape, 3, **kwargs)
    if name == "conv-mean":
        model.encoder.get_layer("fill").adapt(sparse, mask)
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit((sparse, mask), batch_size=8, epochs=5, verbose=0).history
    assert np.all(np.isfinite(history["loss"])) and history["loss"][-1] < history["loss"][0]
    imputed = model.impute(sparse, mask, num_samples=2)
    assert np.all(np.isfinite(imputed))
    np.testing.assert_array_equal(imputed[mask > 0], images[mask > 0])


def _spatial_vae(channels=2):
    """A fully convolutional sparse VAE with a spatial latent (h, w, c) = (H, W, 2)."""
    image = keras.Input((None, None, 1))
    mask = keras.Input((None, None, 1))
    filled = sl.FillMissing("interp", append_mask=True, axis=1)([image, mask])
    mean = keras.layers.Conv2D(channels, 3, padding="same")(filled)
    log_variance = keras.layers.Conv2D(channels, 3, padding="same")(filled)
    latent = keras.Input((None, None, channels))
    decoded = keras.layers.Conv2D(1, 3, padding="same")(latent)
    return sl.SparseVAE(keras.Model([image, mask], [mean, log_variance]),
                        keras.Model(latent, decoded), noise_sigma=0.5, num_samples=3)


def test_spatial_latent_kl_and_likelihood_match_closed_forms(rng):
    batch, height, width, channels = 2, 5, 4, 2
    mean = rng.normal(size=(batch, height, width, channels)).astype("float32")
    log_variance = rng.normal(size=mean.shape).astype("float32") - 1.0
    image = rng.normal(size=(batch, height, width, 1)).astype("float32")
    mask = (rng.random(image.shape) < 0.5).astype("float32")
    scored = (rng.random(image.shape) < 0.7).astype("float32")
    kernel = rng.normal(size=(1, 1, channels, 1)).astype("float32")
    latent = keras.Input((None, None, channels))
    conv = keras.layers.Conv2D(1, 1, use_bias=False)
    decoder = keras.Model(latent, conv(latent))
    conv.set_weights([kernel])
    sigma = 0.7
    reconstruction, kl = sparse_vae_loss.sparse_vae_loss_terms(
        image, mask, mean, log_variance, decoder, sigma, num_samples=20000,
        scored_mask=scored)
    variance = np.exp(log_variance)
    want_kl = 0.5 * np.sum(variance + mean ** 2 - 1 - log_variance, axis=(1, 2, 3))
    np.testing.assert_allclose(kl.numpy(), want_kl, rtol=1e-5)
    # E_q[-log N(y; W x, sigma^2)] over the scored entries, in closed form:
    # the decoded entry is Gaussian with mean W mu and variance sum W^2 var.
    decoded_mean = mean @ kernel[0, 0]
    decoded_variance = variance @ (kernel[0, 0] ** 2)
    per_entry = (0.5 * np.log(2 * np.pi * sigma ** 2)
                 + ((image - decoded_mean) ** 2 + decoded_variance) / (2 * sigma ** 2))
    want = np.sum(np.where(scored > 0.5, per_entry, 0.0), axis=(1, 2, 3))
    np.testing.assert_allclose(reconstruction.numpy(), want, rtol=0.02)


def test_spatial_latent_vae_fits_self_supervised_and_imputes(rng):
    """Any image size; (image, mask, scored_mask) triples; NaN never reaches the weights."""
    model = _spatial_vae()
    truth = rng.random((8, 9, 6, 1)).astype("float32")
    mask = np.zeros_like(truth)
    mask[:, ::3] = 1.0
    sparse = np.where(mask > 0, truth, np.nan).astype("float32")
    scored = np.ones_like(truth)  # the whole image is known: score the hidden rows too
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit((np.where(mask > 0, truth, truth), mask, scored), batch_size=4,
                        epochs=3, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    # Plain pairs with NaN at missing entries: finite loss and weights.
    model.fit((sparse, mask), batch_size=4, epochs=1, verbose=0)
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    imputed = model.impute(sparse, mask, num_samples=4, seed=0)
    assert imputed.shape == truth.shape and np.all(np.isfinite(imputed))
    np.testing.assert_array_equal(imputed[mask > 0], truth[mask > 0])
    other = rng.random((2, 12, 5, 1)).astype("float32")  # another size works too
    draws = model.sample_imputations(other, np.ones_like(other), 3, seed=0)
    assert draws.shape == (3, 2, 12, 5, 1)


def test_fit_never_passes_nan_to_the_encoder(rng):
    """A plain custom encoder (no masked layer) trains on NaN-holding images."""
    image = keras.Input((6, 1))
    mask = keras.Input((6, 1))
    flat = keras.layers.Flatten()(image)
    encoder = keras.Model([image, mask], [keras.layers.Dense(2)(flat), keras.layers.Dense(2)(flat)])
    latent = keras.Input((2,))
    decoder = keras.Model(latent, keras.layers.Reshape((6, 1))(keras.layers.Dense(6)(latent)))
    model = sl.SparseVAE(encoder, decoder)
    sparse, mask_values, _ = _data(rng, 16, (6, 1), missing=0.4)
    assert np.isnan(sparse).any()
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit((sparse, mask_values), batch_size=8, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert np.all(np.isfinite(model([sparse, mask_values]).numpy()))


def test_impute_bounds_memory_by_default(rng, monkeypatch):
    """The default batch keeps one call's decoder activations within the bound."""
    from sparselayers.models import sparse_vae_imputation

    model = sl.build_variant("conv-zero", (16, 16, 1), 3, filters=8, levels=2)
    widest = 16 * 16 * 16  # the decoder upsamples 16 channels to 16 x 16
    assert sparse_vae_imputation.widest_activation(model.decoder, (16, 16, 1)) == widest
    monkeypatch.setattr(sparse_vae_imputation, "DECODED_VALUES_PER_CALL", 5 * widest * 10)
    assert (sparse_vae_imputation.images_per_call(model, None, 10) == 5
            and sparse_vae_imputation.images_per_call(model, 7, 10) == 7)
    calls = []
    original = model._impute_function
    monkeypatch.setattr(model, "_impute_function",
                        lambda image, *args: calls.append(len(image)) or original(image, *args))
    sparse, mask, images = _data(rng, 12, (16, 16, 1), missing=0.5)
    imputed = model.impute(sparse, mask, num_samples=10, seed=0)
    assert calls == [5, 5, 2]
    np.testing.assert_array_equal(imputed[mask > 0], images[mask > 0])
    # The mean kept per batch equals the mean of the samples themselves.
    samples = model.sample_imputations(sparse, mask, 10, seed=0, pixel_noise=False)
    np.testing.assert_allclose(imputed, samples.mean(axis=0), rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="batch_size must be"):
        model.impute(sparse, mask, batch_size=0)


def test_unknown_variant():
    with pytest.raises(ValueError, match="Unknown variant 'conv-magic'"):
        sl.build_variant("conv-magic", (8, 8, 1))
    with pytest.raises(ValueError, match="multiple of 2\\*\\*levels"):
        sl.build_variant("conv-zero", (10, 10, 1), levels=2)


def test_mixed_float16_training_is_finite(rng):
    keras.mixed_precision.set_global_policy("mixed_float16")
    sparse, mask, images = _data(rng, 16, (8, 8, 1), missing=0.6)
    model = sl.build_variant("conv-FC-sparse", (8, 8, 1), 3, filters=4, levels=1)
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit((sparse, mask), batch_size=8, epochs=2, verbose=0).history
    assert np.all(np.isfinite(history["loss"]))
    imputed = model.impute(sparse, mask)
    assert imputed.dtype == np.float32 and np.all(np.isfinite(imputed))
    np.testing.assert_array_equal(imputed[mask > 0], images[mask > 0])


def test_several_models_impute_without_retracing_warnings(rng, caplog):
    """Each model compiles one imputation function; six models imputing
    batches of two sizes must not add up to TensorFlow's frequent-retracing
    warning (which counts traces per code object, across models)."""
    sparse, mask, _ = _data(rng, 12, (8, 8, 1))
    with caplog.at_level("WARNING", logger="tensorflow"):
        for _ in range(6):
            model = sl.build_variant("conv-zero", (8, 8, 1), 2, filters=4, levels=1)
            model.impute(sparse, mask, num_samples=2, batch_size=8)   # batches of 8 and 4
            model.encode(sparse, mask, batch_size=8)
    retracing = [r for r in caplog.records if "retracing" in r.getMessage()]
    assert not retracing, retracing[0].getMessage()


def test_a_target_is_what_the_likelihood_scores_and_the_decoder_sees_the_input(rng):
    """(image, mask, scored_mask, target): the encoder and a conditional decoder see the
    image, the likelihood scores the target (closed form: a decoder returning twice its
    image input, so f = 2 y_O); `keep_observed=False` gives every entry the model's
    moments; NaN in the target at a scored entry fails the step."""
    shape = (4, 5, 1)
    image_in, mask_in = keras.Input(shape), keras.Input(shape)
    flat = keras.layers.Flatten()(image_in)
    encoder = keras.Model([image_in, mask_in], [keras.layers.Dense(2)(flat),
                                                keras.layers.Dense(2)(flat)])
    latent, image_d, mask_d = keras.Input((2,)), keras.Input(shape), keras.Input(shape)
    twice = keras.layers.Lambda(lambda t: 2.0 * t[1] + 0.0 * keras.ops.sum(t[0]))(
        [latent, image_d])
    model = sl.SparseVAE(encoder, keras.Model([latent, image_d, mask_d], twice),
                         noise_sigma=0.3)
    image = rng.normal(size=(3,) + shape).astype("float32")
    mask = (rng.random(image.shape) < 0.6).astype("float32")
    target = rng.normal(size=image.shape).astype("float32")
    scored = np.ones_like(image)
    reconstruction, _ = model.loss_terms(image, mask, scored_mask=scored, target=target)
    decoded = 2.0 * np.where(mask > 0.5, image, 0.0)
    want = np.sum(0.5 * np.log(2 * np.pi * 0.3**2) + (target - decoded) ** 2 / (2 * 0.3**2),
                  axis=(1, 2, 3))
    np.testing.assert_allclose(reconstruction.numpy(), want, rtol=1e-5)
    ones = np.ones_like(image)
    kept, _ = model.predictive_moments(image, ones, num_samples=2, seed=0)
    np.testing.assert_array_equal(kept, image)
    mean, std = model.predictive_moments(image, ones, num_samples=2, seed=0,
                                         keep_observed=False)
    np.testing.assert_allclose(mean, 2.0 * image, rtol=1e-6)
    np.testing.assert_allclose(std, 0.3, rtol=1e-5)
    model.compile(keras.optimizers.Adam(1e-2))
    history = model.fit((image, mask, scored, target), batch_size=3, epochs=1, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    bad = target.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(tf.errors.InvalidArgumentError, match="NaN or Inf"):
        model.fit((image, mask, scored, bad), batch_size=3, epochs=1, verbose=0)
