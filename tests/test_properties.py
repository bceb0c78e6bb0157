"""Property-based tests (Hypothesis) of the package's contracts (issue 11).

For random shapes, masks (all-missing, all-observed, one pixel, random) and
garbage at the missing entries (NaN, +Inf, -Inf, 1e38):
- every layer's outputs, and gradients with respect to the image and the
  weights, are finite, and do not depend on what the missing entries hold;
- every layer, and every imputer whose statistics come from a reference,
  gives sample i the result it gives sample i alone (batch independence);
- every imputer and served signature returns observed entries bit-exact;
- every malformed argument is a ValueError whose message names it.

The settings profile (`conftest.py`) is derandomised, so a run is
reproducible, and bounded so that this file takes well under a minute.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import imputers
import sparselayers as sl

GARBAGE = st.sampled_from([np.nan, np.inf, -np.inf, 1e38])
MASK_KINDS = st.sampled_from(["random", "all-missing", "all-observed", "one-pixel"])


def _mask(rng, kind, shape, channels_of_mask):
    """A bool mask (batch, *spatial, channels_of_mask); per sample its own kind
    for 'random' (sample 0 all-missing, sample 1 one pixel when batch allows)."""
    mask_shape = shape[:-1] + (channels_of_mask,)
    if kind == "all-missing":
        return np.zeros(mask_shape, bool)
    if kind == "all-observed":
        return np.ones(mask_shape, bool)
    if kind == "one-pixel":
        mask = np.zeros(mask_shape, bool)
        for sample in mask:
            sample.reshape(-1)[rng.integers(sample.size)] = True
        return mask
    mask = rng.random(mask_shape) < rng.uniform(0.1, 0.9)
    mask[0] = False  # mixed batches: one all-missing sample,
    if len(mask) > 1:
        mask[1] = False
        mask[1].reshape(-1)[0] = True  # and a one-pixel sample
    return mask


@st.composite
def layer_cases(draw):
    """(layer factory, image shape with batch, mask channels)."""
    kind = draw(st.sampled_from([
        "WeightedConv1D", "WeightedConv2D", "WeightedConv3D", "SparseDense",
        "LocallyConnectedSparse2D", "LocallyConnectedSparse3D", "FillMissing",
    ]))
    batch = draw(st.integers(1, 3))
    channels = draw(st.integers(1, 2))
    mask_channels = draw(st.sampled_from([1, channels]))
    if kind.startswith("WeightedConv"):
        rank = int(kind[-2])
        sizes = tuple(draw(st.integers(2, 6)) for _ in range(rank))
        kernel = draw(st.integers(1, 3))
        strides = draw(st.integers(1, 2))
        padding = draw(st.sampled_from(["same", "valid"]))
        if padding == "valid" and min(sizes) < kernel:
            padding = "same"
        activation = draw(st.sampled_from([None, "relu", "tanh"]))
        layer_class = getattr(sl, kind)

        def factory():
            return layer_class(draw_filters, kernel, strides=strides, padding=padding,
                               activation=activation)

        draw_filters = draw(st.integers(1, 3))
        return factory, (batch,) + sizes + (channels,), mask_channels
    if kind == "SparseDense":
        sizes = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
        units = draw(st.integers(1, 6))
        regularization = draw(st.sampled_from([0.0, 1e-3, 1.0]))
        return (lambda: sl.SparseDense(units, regularization=regularization),
                (batch,) + sizes + (channels,), mask_channels)
    if kind.startswith("LocallyConnectedSparse"):
        rank = int(kind[-2])
        block = draw(st.integers(1, 2))
        sizes = tuple(block * draw(st.integers(1, 3)) for _ in range(rank))
        units = draw(st.integers(1, 4))
        layer_class = getattr(sl, kind)
        return (lambda: layer_class(units, block, regularization=1e-3),
                (batch,) + sizes + (channels,), mask_channels)
    method = draw(st.sampled_from(["zero", "mean", "interp"]))
    append_mask = draw(st.booleans())
    sizes = (draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    axis = draw(st.sampled_from([1, -2, "both"]))
    return (lambda: sl.FillMissing(method, append_mask, axis=axis),
            (batch,) + sizes + (channels,), mask_channels)


def _outputs(layer, image, mask):
    out = layer([tf.constant(image), tf.constant(mask)])
    return out if isinstance(out, (list, tuple)) else [out]


@given(case=layer_cases(), mask_kind=MASK_KINDS, garbage=GARBAGE, seed=st.integers(0, 2**16))
@settings(max_examples=150)
def test_layers_finite_independent_of_missing_values_and_of_the_batch(case, mask_kind, garbage,
                                                                      seed):
    factory, shape, mask_channels = case
    rng = np.random.default_rng(seed)
    image = rng.normal(size=shape).astype("float32")
    mask = _mask(rng, mask_kind, shape, mask_channels)
    full_mask = np.broadcast_to(mask, shape)
    dirty = np.where(full_mask, image, garbage).astype("float32")
    clean = np.where(full_mask, image, 0.0).astype("float32")
    layer = factory()
    mask_values = mask.astype("float32")

    with tf.GradientTape() as tape:
        image_tensor = tf.constant(dirty)
        tape.watch(image_tensor)
        outputs = _outputs(layer, image_tensor, mask_values)
        total = tf.add_n([tf.reduce_sum(tf.cast(o, tf.float32)) for o in outputs])
    gradients = tape.gradient(total, [image_tensor] + layer.trainable_weights)
    for output in outputs:
        assert np.all(np.isfinite(output.numpy())), "non-finite output"
    for gradient in gradients:
        if gradient is not None:
            assert np.all(np.isfinite(tf.convert_to_tensor(gradient).numpy())), \
                "non-finite gradient"

    # Missing entries never matter: garbage or zeros, bit-identical outputs.
    for with_garbage, with_zeros in zip(outputs, _outputs(layer, clean, mask_values)):
        assert np.array_equal(with_garbage.numpy(), with_zeros.numpy())

    # Sample i in a batch = sample i alone.
    for index in range(shape[0]):
        alone = _outputs(layer, dirty[index:index + 1], mask_values[index:index + 1])
        for batched, single in zip(outputs, alone):
            assert np.array_equal(batched.numpy()[index:index + 1], single.numpy())


SHAPE = (4, 4, 1)
REFERENCE = np.random.default_rng(7).random((12,) + SHAPE).astype("float32") * 3 - 1


def _linear_autoencoder():
    """r(x) = 0.5 x + 0.25 on (4, 4, 1) images: a contraction with a fixed point."""
    return keras.Sequential([keras.Input(SHAPE), keras.layers.Rescaling(0.5, offset=0.25)])


AUTOENCODER = _linear_autoencoder()


@st.composite
def image_batches(draw):
    batch = draw(st.integers(1, 4))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    image = (rng.normal(size=(batch,) + SHAPE) * draw(st.sampled_from([1.0, 1e3]))
             + draw(st.sampled_from([0.0, 1e3]))).astype("float32")
    mask = _mask(rng, draw(MASK_KINDS), (batch,) + SHAPE, 1)
    dirty = np.where(mask, image, draw(GARBAGE)).astype("float32")
    return dirty, mask


def _batched_and_alone(impute, image, mask):
    """The result for the batch, and for each image imputed on its own."""
    result = np.asarray(impute(image, mask))
    alone = [np.asarray(impute(image[i:i + 1], mask[i:i + 1])) for i in range(len(image))]
    return result, np.concatenate(alone)


@given(batch=image_batches(), k=st.integers(1, 5))
@settings(max_examples=50)
def test_fills_with_a_reference(batch, k):
    image, mask = batch
    for fill in (lambda x, m: imputers.knn_fill(x, m, REFERENCE, k=k),
                 lambda x, m: imputers.mean_fill(x, m, REFERENCE)):
        result, alone = _batched_and_alone(fill, image, mask)
        assert np.all(np.isfinite(result))
        assert np.array_equal(result[mask], image[mask])       # observed: bit-exact
        assert np.array_equal(result, alone)                   # each image independent


@given(batch=image_batches(), init=st.sampled_from(["mean", "knn", "zeros"]),
       steps=st.integers(0, 6), step_size=st.sampled_from([0.1, 0.5, 1.0]))
@settings(max_examples=15)
def test_vector_field_ascent(batch, init, steps, step_size):
    image, mask = batch

    def impute(x, m):
        return imputers.vector_field_ascent(AUTOENCODER, x, m, init=init, reference=REFERENCE,
                                            k=2, max_steps=steps, step_size=step_size)

    result, alone = _batched_and_alone(impute, image, mask)
    assert np.all(np.isfinite(result))
    assert np.array_equal(result[mask], image[mask])
    assert np.array_equal(result, alone)


@given(batch=image_batches())
def test_noise_fill_and_batch_statistics_are_finite(batch):
    image, mask = batch
    for fill in (lambda: imputers.noise_fill(image, mask, seed=3),
                 lambda: imputers.mean_fill(image, mask)):
        result = fill().numpy()
        assert np.all(np.isfinite(result))
        assert np.array_equal(result[mask], image[mask])


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A SparseVAE and a VectorFieldImputer, exported once for the module."""
    keras.utils.set_random_seed(0)
    vae = sl.build_variant("conv-zero", (8, 8, 1), 3, filters=4, levels=1)
    path = tmp_path_factory.mktemp("served")
    vae.export_imputer(path / "vae", num_samples=3, seed=1)
    imputer = imputers.VectorFieldImputer(AUTOENCODER, init="knn", k=2, max_steps=4)
    imputer.fit(REFERENCE).export(path / "ascent")
    load = tf.saved_model.load
    return (vae, load(str(path / "vae")).signatures["serving_default"],
            load(str(path / "ascent")).signatures["serving_default"])


@given(batch=st.integers(0, 4), seed=st.integers(0, 2**16), mask_kind=MASK_KINDS,
       garbage=GARBAGE)
@settings(max_examples=15)
def test_served_signatures_keep_observed_entries_bit_exact(served, batch, seed, mask_kind,
                                                           garbage):
    _, serve_vae, serve_ascent = served
    rng = np.random.default_rng(seed)
    for shape, serve in (((batch, 8, 8, 1), serve_vae), ((batch,) + SHAPE, serve_ascent)):
        image = (rng.random(shape) * 1e3).astype("float32")
        mask = _mask(rng, mask_kind, shape, 1) if batch else np.zeros(shape, bool)
        dirty = np.where(mask, image, garbage).astype("float32")
        imputed = serve(image=tf.constant(dirty),
                        mask=tf.constant(mask.astype("float32")))["imputed"].numpy()
        assert imputed.shape == shape
        assert np.all(np.isfinite(imputed))
        assert np.array_equal(imputed[mask], image[mask])


@given(batch=st.integers(0, 3), seed=st.integers(0, 2**16), mask_kind=MASK_KINDS,
       garbage=GARBAGE)
@settings(max_examples=10)
def test_sparse_vae_inference_keeps_observed_entries_bit_exact(served, batch, seed, mask_kind,
                                                               garbage):
    vae = served[0]
    rng = np.random.default_rng(seed)
    shape = (batch, 8, 8, 1)
    image = (rng.random(shape) * 1e3).astype("float32")
    mask = _mask(rng, mask_kind, shape, 1) if batch else np.zeros(shape, bool)
    dirty = np.where(mask, image, garbage).astype("float32")
    for result in (vae.impute(dirty, mask, num_samples=2, seed=0),
                   *vae.sample_imputations(dirty, mask, 2, seed=0)):
        assert result.shape == shape
        assert np.all(np.isfinite(result))
        assert np.array_equal(result[mask], image[mask])


# -- Malformed arguments --------------------------------------------------------

COUNTS = st.sampled_from([0, -1, -7, 2.5, True, np.nan])
POSITIVE_FLOATS = st.sampled_from([0.0, -1.0, np.nan, np.inf, -np.inf])
_X = REFERENCE[:3]
_MASK = np.ones_like(_X, bool)


def _vae():
    return sl.build_variant("conv-zero", (8, 8, 1), 3, filters=4, levels=1)


_VAE_IMAGES = np.zeros((2, 8, 8, 1), np.float32)
_NETWORK = keras.Sequential([keras.Input((2,)), keras.layers.Dense(16),
                             keras.layers.Reshape(SHAPE)])

# (argument name, kind of bad value, call with the bad value)
MALFORMED = [
    ("k", "count", lambda v: imputers.knn_fill(_X, _MASK, REFERENCE, k=v)),
    ("k", "count", lambda v: imputers.vector_field_ascent(AUTOENCODER, _X, _MASK, k=v)),
    ("max_steps", "count0",
     lambda v: imputers.vector_field_ascent(AUTOENCODER, _X, _MASK, max_steps=v)),
    ("step_size", "float",
     lambda v: imputers.vector_field_ascent(AUTOENCODER, _X, _MASK, step_size=v)),
    ("batch_size", "count",
     lambda v: imputers.vector_field_ascent(AUTOENCODER, _X, _MASK, batch_size=v)),
    ("num_imputations", "count",
     lambda v: imputers.vector_field_ascent(AUTOENCODER, _X, _MASK, num_imputations=v)),
    ("steps", "count", lambda v: imputers.fit_dip(_NETWORK, _X, _MASK, steps=v, verbose=0)),
    ("learning_rate", "float",
     lambda v: imputers.fit_dip(_NETWORK, _X, _MASK, steps=1, learning_rate=v, verbose=0)),
    ("num_samples", "count", lambda v: _vae().impute(_VAE_IMAGES, _VAE_IMAGES, num_samples=v)),
    ("batch_size", "count", lambda v: _vae().impute(_VAE_IMAGES, _VAE_IMAGES, batch_size=v)),
    ("batch_size", "count", lambda v: _vae().encode(_VAE_IMAGES, _VAE_IMAGES, batch_size=v)),
    ("n", "count", lambda v: _vae().sample_imputations(_VAE_IMAGES, _VAE_IMAGES, v)),
    ("num_samples", "count", lambda v: _vae().export_imputer("/nonexistent", num_samples=v)),
    ("noise_sigma", "float", lambda v: sl.SparseVAE(_vae().encoder, _vae().decoder,
                                                    noise_sigma=v)),
    ("units", "count", lambda v: sl.SparseDense(v)),
    ("regularization", "float-or-zero", lambda v: sl.SparseDense(2, regularization=v)),
    ("levels", "count", lambda v: sl.build_variant("conv-zero", (8, 8, 1), levels=v)),
    ("latent_dim", "count", lambda v: sl.build_variant("conv-zero", (8, 8, 1), latent_dim=v)),
    ("filters", "count", lambda v: sl.build_variant("conv-zero", (8, 8, 1), filters=v)),
    ("seed", "text", lambda v: imputers.noise_fill(_X, _MASK, seed=v)),
    ("shapes", "shape", lambda v: imputers.metrics.masked_mse(_X, np.zeros(v), _MASK)),
    ("data_range", "float", lambda v: imputers.metrics.psnr(_X, _X, data_range=v)),
    ("data_range", "float", lambda v: imputers.metrics.ssim(
        np.zeros((1, 11, 11)), np.zeros((1, 11, 11)), data_range=v)),
]

BAD_VALUES = {
    "count": COUNTS,
    "count0": st.sampled_from([-1, 2.5, True, np.nan]),  # 0 is a valid max_steps
    "float": POSITIVE_FLOATS,
    "float-or-zero": st.sampled_from([-1.0, np.nan, np.inf, -np.inf]),  # lambda = 0 is valid
    "text": st.sampled_from(["a", "0", b"1"]),
    "shape": st.sampled_from([(3, 4, 4, 2), (2, 4, 4, 1), (3, 16)]),
}


@st.composite
def malformed_calls(draw):
    name, kind, call = draw(st.sampled_from(MALFORMED))
    return name, call, draw(BAD_VALUES[kind])


@given(case=malformed_calls())
@settings(max_examples=80)
def test_malformed_arguments_are_errors_naming_the_argument(case):
    name, call, value = case
    with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
        call(value)
