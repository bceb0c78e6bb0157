"""SparseVAE: a variational auto-encoder trained on observed entries only.

The Keras model itself (construction, `train_step`, config); its imputation
entry points run through `sparselayers.models.sparse_vae_imputation`.
"""

import functools

import numpy as np
import keras
import tensorflow as tf

from sparselayers.layers import image_and_mask
from sparselayers.distribute import multi_worker
from sparselayers.models import sparse_vae_imputation
from sparselayers.models import sparse_vae_loss

__all__ = ["SparseVAE"]

@keras.saving.register_keras_serializable(package="sparselayers")
class SparseVAE(keras.Model):
    """The sparse VAE of the paper (§3.1-3.4): y = f(x) + noise, x ~ N(0, I).

    Trained with `fit` on (image, mask) pairs and no targets (or
    ``(image, mask, scored_mask[, target])`` for self-supervision, see
    `loss_terms`): the loss is the
    negative log-likelihood of the observed entries under N(f(x), sigma^2 I),
    x sampled from the encoder's posterior, plus KL(q || N(0, I)) (eq. 9; see
    `sparselayers.models.sparse_vae_loss`). Metrics: ``loss``,
    ``reconstruction_loss`` and ``kl_loss`` (means per sample).

    Args:
        encoder: Keras model mapping ``[image, mask]`` to ``[mean, log_variance]``,
            each (batch, d).
        decoder: Keras model mapping latents (batch, d) to images of the
            image's shape. Two extensions (`sparse_vae_loss.decode`): a
            conditional decoder takes ``[latent, image, mask]`` (the observed
            entries, missing ones 0), f(x; y_O); a heteroscedastic one returns
            ``[mean, log_scale]``, a per-entry pixel noise sigma(x).
        noise_sigma: sigma > 0, the pixel noise of the model (for a
            heteroscedastic decoder, the fixed sigma its mean is fitted with).
        learn_noise_sigma: if True, sigma is a trained weight (kept positive by
            learning log sigma).
        num_samples: K, posterior samples per image in the loss.

    Call: ``model([image, mask])`` returns the decoded posterior mean f(mu).

    Example:

    >>> model = SparseVAE(encoder, decoder, noise_sigma=0.1)
    >>> model.compile(keras.optimizers.Adam(1e-3))
    >>> model.fit((images, masks), epochs=10)      # no targets
    >>> imputed = model.impute(images, masks, num_samples=10)
    """

    def __init__(self, encoder, decoder, noise_sigma=0.1, learn_noise_sigma=False,
                 num_samples=1, **kwargs):
        super().__init__(**kwargs)
        if not (np.isfinite(noise_sigma) and noise_sigma > 0):
            raise ValueError(
                f"noise_sigma must be finite and > 0; received noise_sigma={noise_sigma}.")
        num_samples = image_and_mask.check_positive_int(num_samples, "num_samples")
        self.encoder = encoder
        self.decoder = decoder
        self.initial_noise_sigma = float(noise_sigma)
        self.learn_noise_sigma = bool(learn_noise_sigma)
        self.num_samples = num_samples
        self.image_shape, self.latent_dim = _check_encoder_decoder(encoder, decoder)
        self.log_noise_sigma = self.add_weight(
            name="log_noise_sigma", shape=(),
            initializer=keras.initializers.Constant(np.log(self.initial_noise_sigma)),
            trainable=self.learn_noise_sigma, autocast=False,
        )
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.reconstruction_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_tracker = keras.metrics.Mean(name="kl_loss")
        # One compiled function per model, reused across batches and calls.
        # functools.partial rather than bound methods or lambdas: TensorFlow
        # counts traces per code object, so several models (each tracing its
        # own function once or twice) would otherwise add up to a false
        # "frequent retracing" warning; a partial object is its own key.
        self._impute_function = tf.function(
            functools.partial(sparse_vae_imputation.impute_batch, self), reduce_retracing=True)
        self._moments_function = tf.function(
            functools.partial(sparse_vae_imputation.moments_batch, self), reduce_retracing=True)
        self._encode_function = tf.function(
            functools.partial(sparse_vae_imputation.encode_batch, self.encoder),
            reduce_retracing=True)
        # The encoder and decoder are built models, so this model is built too
        # (its train_step never calls it, and saving wants it built).
        self.built = True

    @property
    def noise_sigma(self):
        """The current sigma, a float32 scalar tensor."""
        return tf.exp(tf.cast(self.log_noise_sigma, tf.float32))

    @property
    def metrics(self):
        return [self.loss_tracker, self.reconstruction_tracker, self.kl_tracker]

    def call(self, inputs, training=False):
        image, mask = _split(inputs)[:2]
        image, mask = image_and_mask.image_and_mask_tensors([image, mask], "SparseVAE",
                                                             self.compute_dtype)
        observed = image_and_mask.observed_entries(mask, image)
        mean, _ = self.encoder([image_and_mask.zero_missing(image, observed), mask],
                               training=training)
        if not (sparse_vae_loss.is_conditional(self.decoder)
                or sparse_vae_loss.is_heteroscedastic(self.decoder)):
            return self.decoder(mean, training=training)
        decoded, _ = sparse_vae_loss.decode(self.decoder, mean[None], image, mask, training)
        return tf.cast(decoded[0], self.compute_dtype)

    def loss_terms(self, image, mask, training=False, scored_mask=None, target=None):
        """(reconstruction, kl), each (batch,), for a batch of images and masks.

        The encoder sees the observed entries of `mask` (missing ones set to
        0, so NaN never reaches it); the likelihood scores those of
        `scored_mask` if given (self-supervision: entries hidden from the
        encoder but known), else the same; their values are `target`'s if
        given (the input a degraded view of it, e.g. thick slices
        interpolated onto the fine grid), else `image`'s.
        """
        image, mask = tf.convert_to_tensor(image), tf.convert_to_tensor(mask)
        image_and_mask.check_image_and_mask_shapes(
            [tuple(image.shape), tuple(mask.shape)], "SparseVAE")
        image_and_mask.check_batch_sizes(image, mask, "SparseVAE")
        observed = image_and_mask.observed_entries(mask, image)
        mean, log_variance = self.encoder([image_and_mask.zero_missing(image, observed), mask],
                                          training=training)
        return sparse_vae_loss.sparse_vae_loss_terms(
            image, mask, mean, log_variance, self.decoder, self.noise_sigma,
            num_samples=self.num_samples, training=training, scored_mask=scored_mask,
            target=target,
        )

    def fit(self, x=None, y=None, **kwargs):
        """`keras.Model.fit`, with two checks on the training data.

        NumPy ``(image, mask)`` data is checked first: a NaN or Inf at an
        observed entry is a ValueError naming the sample, and an empty
        training set is a ValueError. Datasets are checked batch by batch in
        `train_step` (see there); a run that saw no batch at all is a
        ValueError too.
        """
        arrays = _split(x) if isinstance(x, (list, tuple)) else None
        if arrays is not None and all(isinstance(a, np.ndarray) for a in arrays[:2]):
            image, mask = sparse_vae_imputation.check_arrays(self, arrays[0], arrays[1],
                                                             "SparseVAE.fit")
            if len(image) == 0:
                raise ValueError("SparseVAE.fit: the training set is empty (0 images).")
        history = super().fit(x, y, **kwargs)
        if not history.history and kwargs.get("epochs", 1) > kwargs.get("initial_epoch", 0):
            raise ValueError("SparseVAE.fit: the training data was empty (no batch was seen).")
        return history

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Keras (3.15) first reduces a distributed sample batch with
        # strategy.reduce(), which MultiWorkerMirroredStrategy cannot do for
        # an (image, mask) tuple. A SparseVAE is built at construction and
        # compiles no loss or metric objects, so no sample batch is needed:
        # only the optimizer is built here.
        if all(layer.built for layer in self._flatten_layers()):
            iterator = None
        super()._maybe_symbolic_build(iterator=iterator, data_batch=data_batch)

    def train_step(self, data):
        """One step on a batch; a batch with NaN or Inf at an observed entry
        changes no weight and fails with an InvalidArgumentError naming it
        (without XLA; under XLA, which drops assertions, the weights are
        still left untouched and the reported loss is NaN)."""
        image, mask, scored_mask, target = _split(data)
        image = tf.convert_to_tensor(image)
        observed = image_and_mask.observed_entries(tf.convert_to_tensor(mask), image)
        bad_batch = tf.reduce_any(tf.logical_and(
            observed, tf.logical_not(tf.math.is_finite(tf.cast(image, tf.float32)))))
        if target is not None:   # its scored entries must be finite too
            target = tf.convert_to_tensor(target)
            scored = observed if scored_mask is None else image_and_mask.observed_entries(
                tf.convert_to_tensor(scored_mask), target)
            bad_batch = tf.logical_or(bad_batch, tf.reduce_any(tf.logical_and(
                scored, tf.logical_not(tf.math.is_finite(tf.cast(target, tf.float32))))))
        tf.debugging.Assert(tf.logical_not(bad_batch), [
            "SparseVAE.fit: a batch holds NaN or Inf at an observed entry (or in its target at "
            "a scored entry); observed values must be finite (mark unknown entries as missing "
            "in the mask)."])
        with tf.GradientTape() as tape:
            reconstruction, kl = self.loss_terms(image, mask, training=True,
                                                 scored_mask=scored_mask, target=target)
            loss = tf.reduce_mean(reconstruction + kl)
            if self.losses:
                loss += tf.add_n([tf.cast(l, tf.float32) for l in self.losses])
            # Under tf.distribute, gradients are summed over replicas: scale
            # each replica's mean so that the sum is the global mean.
            replicas = tf.distribute.get_strategy().num_replicas_in_sync
            scaled = self.optimizer.scale_loss(loss / replicas)
        gradients = [
            None if gradient is None else tf.where(bad_batch, tf.zeros_like(gradient), gradient)
            for gradient in tape.gradient(scaled, self.trainable_weights)]
        self.optimizer.apply_gradients(zip(gradients, self.trainable_weights))
        return self._update_metrics(loss, reconstruction, kl)

    def test_step(self, data):
        image, mask, scored_mask, target = _split(data)
        reconstruction, kl = self.loss_terms(image, mask, training=False, scored_mask=scored_mask,
                                             target=target)
        return self._update_metrics(tf.reduce_mean(reconstruction + kl), reconstruction, kl)

    def _update_metrics(self, loss, reconstruction, kl):
        self.loss_tracker.update_state(loss)
        self.reconstruction_tracker.update_state(reconstruction)
        self.kl_tracker.update_state(kl)
        return multi_worker.logs_for_workers({m.name: m.result() for m in self.metrics})

    # -- Imputation (run by `sparselayers.models.sparse_vae_imputation`) -------

    def impute(self, image, mask, num_samples=10, batch_size=None, seed=None, verbose=0):
        """Conditional-mean imputation (eq. 8): mean of f(x_k), x_k ~ q(x|y_O).

        Args:
            image: (n, *shape); missing entries may hold NaN, observed ones
                must be finite (ValueError naming the sample). n may be 0.
            mask: 1 where observed, image's shape or 1 channel.
            num_samples: K >= 1 posterior samples per image.
            batch_size: images per compiled call; None chooses it so that one
                call's widest decoder activation holds at most
                `DECODED_VALUES_PER_CALL` values (memory stays bounded for
                large images and many samples).
            seed: int or None.
            verbose: 1 shows a progress bar over the batches.

        Returns:
            float32 (n, *shape); observed entries exactly as given. Given a
            `tf.data.Dataset` or iterator of ``(image, mask)`` batches (and
            ``mask=None``), a generator of per-batch results
            (`sparselayers.distribute.streaming`).
        """
        return sparse_vae_imputation.impute(self, image, mask, num_samples, batch_size, seed,
                                            verbose)

    def sample_imputations(self, image, mask, n, seed=None, batch_size=None, pixel_noise=True,
                           verbose=0):
        """Multiple imputation (eq. 5): x_k ~ q(x|y_O), y_hat ~ N(f(x_k), sigma^2 I).

        (sigma(x_k)^2 per entry for a heteroscedastic decoder.)

        Returns:
            float32 (n, num_images, *shape); observed entries exactly as given.
            With ``pixel_noise=False``, the imputations are f(x_k) themselves.
            A dataset or iterator of batches gives a generator of per-batch
            results, as `impute`.
        """
        return sparse_vae_imputation.sample_imputations(self, image, mask, n, seed, batch_size,
                                                        pixel_noise, verbose)

    def predictive_moments(self, image, mask, num_samples=10, batch_size=None, seed=None,
                           keep_observed=True):
        """Mean and standard deviation of the posterior predictive, per entry.

        The predictive of a missing entry is f(x)_j + noise, x ~ q(x|y_O):
        its mean is estimated by the mean of f(x_k) over `num_samples`
        draws (as `impute`) and its standard deviation by
        sqrt(var_k f(x_k)_j + mean_k sigma_j(x_k)^2): the posterior draws'
        spread plus the likelihood's own noise (the model's sigma, or the
        heteroscedastic decoder's per entry).

        Args:
            keep_observed: if True, observed entries come back exactly as
                given (std 0); if False, every entry gets the model's
                moments (for a model trained with a `target` that its input
                only degrades, e.g. thick slices: no entry is known exactly).

        Returns:
            (mean, std), float32 (n, *shape) each; observed entries exactly
            as given in `mean` and 0 in `std` (with `keep_observed`).

        Example:

        >>> mean, std = model.predictive_moments(images, masks, num_samples=10)
        """
        return sparse_vae_imputation.predictive_moments(self, image, mask, num_samples,
                                                        batch_size, seed, keep_observed)

    def encode(self, image, mask, batch_size=256):
        """Posterior parameters (mean, log_variance), each (n, d), as arrays.

        n may be 0; observed values must be finite (ValueError naming the sample).
        A dataset or iterator of batches gives a generator of per-batch
        ``(mean, log_variance)``, as `impute`.
        """
        return sparse_vae_imputation.encode(self, image, mask, batch_size)

    def export_imputer(self, path, num_samples=10, seed=0):
        """Writes a SavedModel for TF Serving that imputes by eq. 8.

        The ``serving_default`` signature takes float32 ``image`` and ``mask``
        (batch, *shape) and returns ``imputed`` (observed entries kept, missing
        ones the mean of `num_samples` decoded posterior samples drawn with a
        fixed seed, so the output is deterministic) and ``latent_mean``. No
        TFP or sparselayers import is needed to serve or load it.

        Observed entries come back bit-exact: the mean over samples is taken
        before they are put back.
        """
        sparse_vae_imputation.export_imputer(self, path, num_samples, seed)

    def get_config(self):
        config = super().get_config()
        config.update({
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "noise_sigma": self.initial_noise_sigma,
            "learn_noise_sigma": self.learn_noise_sigma,
            "num_samples": self.num_samples,
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)


def _split(data):
    """(image, mask, scored_mask or None, target or None) from (image, mask[,
    scored_mask[, target]]) or ((...),)."""
    while isinstance(data, (list, tuple)) and len(data) == 1:
        data = data[0]
    if not isinstance(data, (list, tuple)) or len(data) not in (2, 3, 4):
        raise ValueError(
            "SparseVAE expects (image, mask) pairs (or (image, mask, scored_mask[, target]) for "
            "self-supervision) and no targets; received "
            f"{type(data).__name__} of {len(data) if isinstance(data, (list, tuple)) else 1} item(s)."
        )
    data = tuple(data) + (None,) * (4 - len(data))
    return data[0], data[1], data[2], data[3]


def _check_encoder_decoder(encoder, decoder):
    """Static shape checks; returns (image_shape, latent_dim)."""
    for name, model in (("encoder", encoder), ("decoder", decoder)):
        if not isinstance(model, keras.Model):
            raise ValueError(f"The {name} must be a keras.Model; received {type(model).__name__}.")
    try:
        inputs = encoder.inputs
        outputs = encoder.outputs
    except (AttributeError, ValueError):
        raise ValueError("The encoder must be a built model with inputs [image, mask].") from None
    if len(inputs) != 2 or len(outputs) != 2:
        raise ValueError(
            "The encoder must map [image, mask] to [mean, log_variance]; it has "
            f"{len(inputs)} input(s) and {len(outputs)} output(s)."
        )
    image_shape = tuple(inputs[0].shape[1:])
    mean_shape, log_variance_shape = tuple(outputs[0].shape), tuple(outputs[1].shape)
    if len(mean_shape) < 2 or mean_shape != log_variance_shape:
        raise ValueError(
            f"The encoder's mean and log-variance must both be (batch, d) (or one spatial "
            f"shape, (batch, h, w, c)); received {mean_shape} and {log_variance_shape}."
        )
    latent_dim = mean_shape[-1]  # d, or the channels of a spatial latent
    decoder_input = tuple(decoder.inputs[0].shape)
    if len(decoder.inputs) not in (1, 3) or len(decoder.outputs) not in (1, 2):
        raise ValueError(
            f"The decoder must map a latent, or [latent, image, mask], to an image or to "
            f"[mean, log_scale]; it has {len(decoder.inputs)} input(s) and "
            f"{len(decoder.outputs)} output(s).")
    for extra in list(decoder.inputs[1:]) + list(decoder.outputs[1:]):
        if tuple(extra.shape[1:]) != image_shape:
            raise ValueError(f"The decoder's image, mask and log-scale must be (batch,) + "
                             f"{image_shape}; received {tuple(extra.shape)}.")
    decoder_output = tuple(decoder.outputs[0].shape[1:])
    if decoder_input[1:] != mean_shape[1:]:
        raise ValueError(
            f"The decoder takes inputs {decoder_input}, the encoder's latent is "
            f"(batch,) + {mean_shape[1:]}."
        )
    if decoder_output != image_shape:
        raise ValueError(
            f"The decoder returns images (batch,) + {decoder_output}, the encoder takes "
            f"(batch,) + {image_shape}."
        )
    return image_shape, latent_dim
