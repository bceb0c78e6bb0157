"""The sparse VAE's imputation entry points, batched: what `SparseVAE` runs.

`SparseVAE.impute`, `sample_imputations`, `encode` and `export_imputer` are
thin methods over the functions here, which take the model as first argument:
the argument checks (`check_arrays`), the choice of images per compiled call
so that memory stays bounded (`images_per_call`, `widest_activation`), the
batched loop (`run_batches`) and the compiled batch itself (`impute_batch`).
So `sparse_vae.py` reads as a Keras model (build, train_step, config).

Example:

>>> imputed = impute(model, images, masks, num_samples=10)   # = model.impute(...)
"""

import keras
import numpy as np
import tensorflow as tf

from sparselayers.distribute import streaming
from sparselayers.layers import image_and_mask
from sparselayers.models import sparse_vae_loss

__all__ = ["impute", "sample_imputations", "predictive_moments", "encode", "export_imputer", "widest_activation",
           "DECODED_VALUES_PER_CALL"]

# Default bound on one imputation call's widest decoder activation, all
# samples together: 2**26 float32 values (256 MB), whatever the image size
# and number of samples.
DECODED_VALUES_PER_CALL = 2**26


def impute_batch(model, image, mask, num_samples, seed, pixel_noise):
    """Returns (imputed (K, B, ...) or mean, latent mean) for one batch."""
    observed = tf.broadcast_to(mask > 0.5, tf.shape(image))
    mean, log_variance = model.encoder([tf.where(observed, image, 0.0), mask], training=False)
    mean = tf.cast(mean, tf.float32)
    noise = tf.random.stateless_normal(
        tf.concat([[num_samples], tf.shape(mean)], axis=0), seed=seed
    )
    log_variance = sparse_vae_loss.bounded_log_variance(log_variance)
    samples = mean + tf.exp(0.5 * log_variance) * noise
    decoded, scale = sparse_vae_loss.decode(model.decoder, samples, image, mask)
    decoded = tf.reshape(decoded, tf.concat([[num_samples], tf.shape(image)], axis=0))
    if pixel_noise:
        scale = model.noise_sigma if scale is None else tf.reshape(scale, tf.shape(decoded))
        decoded += scale * tf.random.stateless_normal(tf.shape(decoded), seed=seed + 1)
    return tf.where(observed, image, decoded), mean


def moments_batch(model, image, mask, num_samples, seed):
    """(mean, std) of the posterior predictive for one batch, each image's shape.

    Over `num_samples` posterior draws x_k: the mean of f(x_k), and the
    standard deviation of f(x_k) + noise, i.e. sqrt(var_k f(x_k) +
    mean_k sigma(x_k)^2) (sigma the model's, or the heteroscedastic
    decoder's, per entry).
    """
    observed = tf.broadcast_to(mask > 0.5, tf.shape(image))
    mean, log_variance = model.encoder([tf.where(observed, image, 0.0), mask], training=False)
    mean = tf.cast(mean, tf.float32)
    noise = tf.random.stateless_normal(tf.concat([[num_samples], tf.shape(mean)], axis=0),
                                       seed=seed)
    samples = mean + tf.exp(0.5 * sparse_vae_loss.bounded_log_variance(log_variance)) * noise
    decoded, scale = sparse_vae_loss.decode(model.decoder, samples, image, mask)
    decoded = tf.reshape(decoded, tf.concat([[num_samples], tf.shape(image)], axis=0))
    noise_variance = (tf.square(model.noise_sigma) if scale is None else
                      tf.reduce_mean(tf.square(tf.reshape(scale, tf.shape(decoded))), axis=0))
    average = tf.reduce_mean(decoded, axis=0)
    spread = tf.reduce_mean(tf.square(decoded - average), axis=0)
    return average, tf.sqrt(spread + noise_variance)


def check_arrays(model, image, mask, caller="SparseVAE"):
    """Float32 image and full-shape mask arrays; ValueError on bad shapes
    and on NaN or Inf at an observed entry (naming the sample)."""
    image = np.asarray(image, np.float32)
    mask = np.asarray(mask, np.float32)
    if len(image.shape[1:]) != len(model.image_shape) or any(
            want is not None and size != want
            for size, want in zip(image.shape[1:], model.image_shape)):
        raise ValueError(
            f"Images of shape (batch,) + {image.shape[1:]} do not fit the model's "
            f"(batch,) + {tuple(model.image_shape)}."
        )
    image_and_mask.check_image_and_mask_shapes([image.shape, mask.shape], "SparseVAE")
    if mask.shape[0] != image.shape[0]:
        raise ValueError(f"{image.shape[0]} images but {mask.shape[0]} masks.")
    mask = np.broadcast_to(mask, image.shape)
    image_and_mask.check_observed_finite(image, mask > 0.5, caller)
    return image, mask


def images_per_call(model, batch_size, num_samples, image_shape=None):
    """Images per call: `batch_size` if given, else as many (1 to 256) as
    keep the decoder's widest layer output, times the samples per image,
    within `DECODED_VALUES_PER_CALL` values. (A fixed 256 images x 10
    samples of 160 x 160 cuts took about 15 GB.)"""
    if batch_size is not None:
        return image_and_mask.check_positive_int(batch_size, "batch_size")
    per_image = max(1, int(num_samples)) * widest_activation(
        model.decoder, model.image_shape if image_shape is None else image_shape)
    return int(np.clip(DECODED_VALUES_PER_CALL // per_image, 1, 256))


def run_batches(model, image, mask, num_samples, seed, pixel_noise, batch_size, verbose,
                mean_only=False, caller="SparseVAE"):
    image, mask = check_arrays(model, image, mask, caller)
    batch_size = images_per_call(model, batch_size, num_samples, image.shape[1:])
    if len(image) == 0:
        latent = latent_shape(model, image.shape[1:])
        samples = 1 if mean_only else num_samples
        return (np.zeros((samples,) + image.shape, np.float32),
                np.zeros((0,) + latent, np.float32))
    rng = np.random.default_rng(seed)
    outputs, means = [], []
    progress = keras.utils.Progbar(len(image), unit_name="image") if verbose else None
    for start in range(0, len(image), batch_size):
        batch_seed = tf.constant(rng.integers(0, 2**31 - 1, size=2), tf.int32)
        imputed, mean = model._impute_function(
            tf.constant(image[start:start + batch_size]),
            tf.constant(mask[start:start + batch_size]),
            tf.constant(num_samples, tf.int32), batch_seed, pixel_noise,
        )
        imputed = imputed.numpy()
        # Keep the mean only when that is all the caller needs: memory of
        # one batch's samples, not the dataset's.
        outputs.append(imputed.mean(axis=0, keepdims=True) if mean_only else imputed)
        means.append(mean.numpy())
        if progress is not None:
            progress.add(len(mean))
    return np.concatenate(outputs, axis=1), np.concatenate(means)


def latent_shape(model, image_shape):
    """The latent's shape (no batch) for images of `image_shape`, from one
    all-missing image (TensorFlow's kernels do not all take empty batches)."""
    blank = tf.zeros((1,) + tuple(image_shape))
    mean, _ = model._encode_function(blank, blank)
    return tuple(mean.shape[1:])


def impute(model, image, mask, num_samples=10, batch_size=None, seed=None, verbose=0):
    """`SparseVAE.impute` of `model` (see there)."""
    num_samples = image_and_mask.check_positive_int(num_samples, "num_samples")
    if streaming.is_stream(image, "SparseVAE.impute"):
        return streaming.map_batches(
            lambda x, m, s: impute(model, x, m, num_samples, batch_size, s), image, mask,
            "SparseVAE.impute", seed)
    mean, _ = run_batches(model, image, mask, num_samples, seed, False, batch_size, verbose,
                          mean_only=True, caller="SparseVAE.impute")
    image, mask = check_arrays(model, image, mask, "SparseVAE.impute")
    return np.where(mask > 0.5, image, mean[0])


def sample_imputations(model, image, mask, n, seed=None, batch_size=None, pixel_noise=True,
                       verbose=0):
    """`SparseVAE.sample_imputations` of `model` (see there)."""
    n = image_and_mask.check_positive_int(n, "n")
    if streaming.is_stream(image, "SparseVAE.sample_imputations"):
        return streaming.map_batches(
            lambda x, m, s: sample_imputations(model, x, m, n, s, batch_size, pixel_noise),
            image, mask, "SparseVAE.sample_imputations", seed)
    samples, _ = run_batches(model, image, mask, n, seed, bool(pixel_noise), batch_size,
                             verbose, caller="SparseVAE.sample_imputations")
    return samples


def predictive_moments(model, image, mask, num_samples=10, batch_size=None, seed=None,
                       keep_observed=True):
    """`SparseVAE.predictive_moments` of `model` (see there)."""
    num_samples = image_and_mask.check_positive_int(num_samples, "num_samples")
    image, mask = check_arrays(model, image, mask, "SparseVAE.predictive_moments")
    batch_size = images_per_call(model, batch_size, num_samples, image.shape[1:])
    rng = np.random.default_rng(seed)
    means, stds = [], []
    for start in range(0, len(image), batch_size):
        part = slice(start, start + batch_size)
        batch_seed = tf.constant(rng.integers(0, 2**31 - 1, size=2), tf.int32)
        mean, std = model._moments_function(tf.constant(image[part]), tf.constant(mask[part]),
                                            tf.constant(num_samples, tf.int32), batch_seed)
        means.append(mean.numpy())
        stds.append(std.numpy())
    if not means:
        return image.copy(), np.zeros_like(image)
    if not keep_observed:
        return np.concatenate(means), np.concatenate(stds)
    observed = mask > 0.5
    return (np.where(observed, image, np.concatenate(means)),
            np.where(observed, 0.0, np.concatenate(stds)).astype(np.float32))


def encode(model, image, mask, batch_size=256):
    """`SparseVAE.encode` of `model` (see there)."""
    batch_size = image_and_mask.check_positive_int(batch_size, "batch_size")
    if streaming.is_stream(image, "SparseVAE.encode"):
        return streaming.map_batches(lambda x, m, _: encode(model, x, m, batch_size), image,
                                     mask, "SparseVAE.encode")
    image, mask = check_arrays(model, image, mask, "SparseVAE.encode")
    if len(image) == 0:
        empty = np.zeros((0,) + latent_shape(model, image.shape[1:]), np.float32)
        return empty, empty.copy()
    image = np.where(mask > 0.5, image, 0.0).astype(np.float32)
    means, log_variances = [], []
    for start in range(0, len(image), batch_size):
        part = slice(start, start + batch_size)
        mean, log_variance = model._encode_function(
            tf.constant(image[part]), tf.constant(mask[part]))
        means.append(mean.numpy().astype(np.float32))
        log_variances.append(log_variance.numpy().astype(np.float32))
    return np.concatenate(means), np.concatenate(log_variances)


def export_imputer(model, path, num_samples=10, seed=0):
    """`SparseVAE.export_imputer` of `model` (see there)."""
    num_samples = image_and_mask.check_positive_int(num_samples, "num_samples")
    seed_tensor = tf.constant([seed, 0], tf.int32)
    samples = tf.constant(num_samples, tf.int32)

    def impute(image, mask):
        imputed, mean = impute_batch(model, image, mask, samples, seed_tensor, False)
        observed = tf.broadcast_to(mask > 0.5, tf.shape(image))
        return tf.where(observed, image, tf.reduce_mean(imputed, axis=0)), mean

    def serve(image, mask):
        # Not every TensorFlow kernel takes an empty batch: one of them is
        # answered from a blank image's shapes, sliced to 0.
        def blank_sliced():
            blank = tf.zeros(tf.concat([[1], tf.shape(image)[1:]], axis=0))
            return tuple(tensor[:0] for tensor in impute(blank, blank))

        imputed, mean = tf.cond(tf.shape(image)[0] > 0, lambda: impute(image, mask),
                                blank_sliced)
        return {"imputed": imputed, "latent_mean": mean}

    spec = (None,) + tuple(model.image_shape)
    archive = keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint(
        name="serve", fn=serve,
        input_signature=[tf.TensorSpec(spec, tf.float32, name="image"),
                         tf.TensorSpec(spec, tf.float32, name="mask")],
    )
    archive.write_out(str(path), verbose=False)


def widest_activation(model, image_shape):
    """Values per sample of the model's largest layer output (at least the image's).

    Nested models are walked through. `image_shape` is the images' actual
    shape; outputs of unknown spatial size (fully convolutional models)
    count as the image's pixels times their channels. Used to bound the
    memory of a batched call.
    """
    pixels = int(np.prod(image_shape[:-1]))
    widest = int(np.prod(image_shape))
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            widest = max(widest, widest_activation(layer, image_shape))
            continue
        try:
            shape = tuple(layer.output.shape)
        except (AttributeError, ValueError):
            continue
        if len(shape) < 2 or not isinstance(shape[-1], int):
            continue
        if all(isinstance(size, int) for size in shape[1:]):
            widest = max(widest, int(np.prod(shape[1:])))
        else:
            widest = max(widest, pixels * shape[-1])
    return widest


def encode_batch(encoder, image, mask):
    return encoder([image, mask], training=False)
