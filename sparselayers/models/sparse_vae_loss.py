"""The sparse VAE loss (paper eq. 9), on observed entries only, with TFP.

Per sample, with q(x | y_O) = N(mean, diag(exp(log_variance))) the encoder's
approximate posterior, f the decoder and p(x) = N(0, I):

    loss = -E_{x ~ q}[ log N(y_O; f(x)_O, sigma^2 I) ] + KL(q || p),

the expectation estimated with K reparameterised samples (eq. 8-9). Missing
entries contribute nothing, not even through gradients (they are removed with
`tf.where`, never multiplied by the mask, so NaN cannot leak).

Two decoder forms extend the paper's f(x) (`decode`):

* conditional: the decoder takes ``[latent, image, mask]`` (the observed
  entries, missing ones 0), f(x; y_O), e.g. a correction to interpolation;
* heteroscedastic: the decoder returns ``[mean, log_scale]``, a per-entry
  noise scale sigma(x) instead of one sigma. Its loss is decoupled: the mean
  is fitted by the likelihood with the model's fixed sigma (as the
  homoscedastic model), the scale by the likelihood N(y; stop_gradient(mean),
  sigma(x)^2), so that learning the variance cannot trade the mean's accuracy
  on hard entries for a larger variance there (the known failure of a plain
  Gaussian negative log-likelihood; Seitzer et al., "On the pitfalls of
  heteroscedastic uncertainty estimation", ICLR 2022).
"""

import keras
import tensorflow as tf
import tensorflow_probability as tfp

__all__ = [
    "sparse_vae_loss_terms",
    "observed_log_likelihood",
    "posterior",
    "standard_normal_prior",
    "bounded_log_variance",
    "decode",
    "LOG_SCALE_BOUNDS",
]

tfd = tfp.distributions

# The encoder's log-variances are clipped to this range before exp(): an
# untrained encoder on unscaled inputs (MRI intensities in the thousands, say)
# can output log-variances of hundreds, whose exp overflows float32 into
# Inf and then NaN samples. Standard deviations stay within [4.5e-5, 2.2e4].
LOG_VARIANCE_BOUND = 20.0


# A heteroscedastic decoder's log-scale is clipped to this range: scales
# from 1e-4 to 20 (data normalised to about [0, 1]).
LOG_SCALE_BOUNDS = (-9.2, 3.0)


def bounded_log_variance(log_variance):
    """float32 log-variance clipped to [-LOG_VARIANCE_BOUND, LOG_VARIANCE_BOUND]."""
    return tf.clip_by_value(tf.cast(log_variance, tf.float32), -LOG_VARIANCE_BOUND,
                            LOG_VARIANCE_BOUND)


def posterior(mean, log_variance):
    """The approximate posterior q(x | y_O), a diagonal Gaussian per sample.

    A `tfd.MultivariateNormalDiag` for vector latents (batch, d); for spatial
    latents (batch, h, w, c) the same distribution over all h*w*c entries, as
    a `tfd.Independent` of `tfd.Normal`s (event shape (h, w, c)). The
    log-variance is clipped to +-`LOG_VARIANCE_BOUND` first.
    """
    mean = tf.cast(mean, tf.float32)
    scale = tf.exp(0.5 * bounded_log_variance(log_variance))
    if mean.shape.rank == 2:
        return tfd.MultivariateNormalDiag(loc=mean, scale_diag=scale)
    return tfd.Independent(tfd.Normal(loc=mean, scale=scale),
                           reinterpreted_batch_ndims=mean.shape.rank - 1)


def prior_like(mean):
    """p(x) = N(0, I) over latents of `mean`'s shape (event: all but the batch axis)."""
    mean = tf.convert_to_tensor(mean)
    if mean.shape.rank == 2:
        return standard_normal_prior(mean.shape[-1])
    zeros = tf.zeros(tf.shape(mean), tf.float32)
    return tfd.Independent(tfd.Normal(loc=zeros, scale=tf.ones_like(zeros)),
                           reinterpreted_batch_ndims=mean.shape.rank - 1)


def standard_normal_prior(latent_dim):
    """The prior p(x) = N(0, I_d)."""
    return tfd.MultivariateNormalDiag(loc=tf.zeros([latent_dim]), scale_diag=tf.ones([latent_dim]))


def observed_log_likelihood(image, observed, reconstruction, noise_sigma):
    """sum_{j in O} log N(y_j; f_j, sigma^2), per sample.

    Args:
        image: (batch, *shape); missing entries may hold NaN.
        observed: bool, image's shape.
        reconstruction: (..., batch, *shape), f(x) (leading sample axes allowed).
        noise_sigma: scalar > 0, or per-entry scales of `reconstruction`'s shape.

    Returns:
        (..., batch) log-likelihoods.
    """
    image = tf.where(observed, tf.cast(image, tf.float32), 0.0)
    likelihood = tfd.Normal(loc=tf.cast(reconstruction, tf.float32), scale=noise_sigma)
    log_prob = tf.where(observed, likelihood.log_prob(image), 0.0)
    sample_axes = list(range(-(image.shape.rank - 1), 0))
    return tf.reduce_sum(log_prob, axis=sample_axes)


def decode(decoder, latents, image=None, mask=None, training=False):
    """The decoder's (mean, scale) for latents (K, batch, *latent_shape).

    Args:
        decoder: a Keras model from latents (n, *latent_shape), or from
            ``[latents, image, mask]`` (conditional; three inputs), to an
            image (n, *shape), or to ``[mean, log_scale]`` (heteroscedastic;
            two outputs).
        latents: (K, batch, *latent_shape) samples.
        image, mask: (batch, *shape), for a conditional decoder: the observed
            entries (missing ones may hold anything; they are set to 0) and
            the mask, repeated for the K samples.
        training: passed to the decoder.

    Returns:
        mean: float32 (K, batch, *shape).
        scale: float32 (K, batch, *shape) for a heteroscedastic decoder
            (exp of the log-scale clipped to `LOG_SCALE_BOUNDS`), else None.
    """
    latents = tf.convert_to_tensor(latents)
    samples = tf.shape(latents)[0]
    flat = tf.reshape(latents, tf.concat([[-1], tf.shape(latents)[2:]], axis=0))
    if is_conditional(decoder):
        image, mask = tf.convert_to_tensor(image), tf.convert_to_tensor(mask)
        mask = tf.cast(tf.broadcast_to(mask, tf.shape(image)), image.dtype)
        image = tf.where(mask > 0.5, image, tf.zeros_like(image))
        repeat = tf.concat([[samples], tf.ones([image.shape.rank - 1], tf.int32)], axis=0)
        inputs = [flat, tf.tile(image, repeat), tf.tile(mask, repeat)]
    else:
        inputs = flat
    decoded = _call(decoder, inputs, training)
    log_scale = None
    if isinstance(decoded, (list, tuple)):
        decoded, log_scale = decoded
    shape = tf.concat([[samples, -1], tf.shape(decoded)[1:]], axis=0)
    mean = tf.reshape(tf.cast(decoded, tf.float32), shape)
    if log_scale is None:
        return mean, None
    log_scale = tf.clip_by_value(tf.cast(log_scale, tf.float32), *LOG_SCALE_BOUNDS)
    return mean, tf.reshape(tf.exp(log_scale), shape)


def is_conditional(decoder):
    """True for a decoder taking ``[latent, image, mask]``."""
    return len(getattr(decoder, "inputs", None) or []) == 3


def is_heteroscedastic(decoder):
    """True for a decoder returning ``[mean, log_scale]``."""
    return len(getattr(decoder, "outputs", None) or []) == 2


def sparse_vae_loss_terms(image, mask, mean, log_variance, decoder, noise_sigma,
                          num_samples=1, training=False, scored_mask=None, target=None):
    """The two terms of eq. 9 per sample: (reconstruction, KL).

    Usable in any Keras model's `train_step` or with `add_loss`.

    Args:
        image: (batch, *shape) images; missing entries may hold NaN.
        mask: 1 where observed (bool, or float > 0.5), image's shape or 1 channel.
        mean, log_variance: (batch, d), or (batch, *latent_shape) for spatial
            latents, the encoder's posterior parameters.
        decoder: callable mapping latents (n, d) to images (n, *shape), or
            a conditional and/or heteroscedastic Keras decoder (`decode`).
        noise_sigma: sigma > 0 (float or scalar tensor, e.g. a learned
            weight); for a heteroscedastic decoder, the fixed sigma of the
            mean's term.
        num_samples: K, samples from q for the expectation.
        training: passed to a Keras decoder.
        scored_mask: the entries of the likelihood, if not `mask`'s (for
            self-supervision: the encoder saw `mask`'s entries, the loss scores
            held-out ones too); same conventions as `mask`.
        target: the values the likelihood scores, if not `image`'s (image's
            shape): for an input that is a degraded view of the data, e.g.
            thick slices interpolated onto a fine grid, whose target is the
            fine tissue. The encoder and a conditional decoder see `image`.

    Returns:
        reconstruction: (batch,) -E_q[log N(y_O; f(x)_O, sigma^2 I)] (for a
            heteroscedastic decoder, plus -E_q[log N(y_O; [f(x)]_O,
            sigma(x)_O^2)], [.] a stop-gradient).
        kl: (batch,) KL(q(x|y_O) || N(0, I)), from `tfd.kl_divergence`.
    """
    observed = tf.convert_to_tensor(mask)
    if observed.dtype != tf.bool:
        observed = observed > tf.cast(0.5, observed.dtype)
    observed = tf.broadcast_to(observed, tf.shape(image))
    if scored_mask is not None:
        observed = tf.convert_to_tensor(scored_mask)
        if observed.dtype != tf.bool:
            observed = observed > tf.cast(0.5, observed.dtype)
        observed = tf.broadcast_to(observed, tf.shape(image))
    q = posterior(mean, log_variance)
    kl = tfd.kl_divergence(q, prior_like(mean))
    samples = q.sample(num_samples)  # (K, batch, *latent_shape), reparameterised
    if isinstance(decoder, keras.Model):
        # The encoder saw `mask`'s entries: so does a conditional decoder.
        decoded, scale = decode(decoder, samples, image, mask, training)
    else:
        flat = tf.reshape(samples, tf.concat([[-1], tf.shape(mean)[1:]], axis=0))
        decoded, scale = _call(decoder, flat, training), None
    decoded = tf.reshape(decoded, tf.concat([[num_samples], tf.shape(image)], axis=0))
    target = image if target is None else tf.convert_to_tensor(target)
    log_likelihood = observed_log_likelihood(target, observed, decoded, noise_sigma)
    if scale is not None:
        log_likelihood += observed_log_likelihood(target, observed,
                                                  tf.stop_gradient(decoded), scale)
    reconstruction = -tf.reduce_mean(log_likelihood, axis=0)
    return reconstruction, kl


def _call(model, inputs, training):
    if isinstance(model, keras.layers.Layer):
        return model(inputs, training=training)
    return model(inputs)
