"""The sparse VAE loss (paper eq. 9), on observed entries only, with TFP.

Per sample, with q(x | y_O) = N(mean, diag(exp(log_variance))) the encoder's
approximate posterior, f the decoder and p(x) = N(0, I):

    loss = -E_{x ~ q}[ log N(y_O; f(x)_O, sigma^2 I) ] + KL(q || p),

the expectation estimated with K reparameterised samples (eq. 8-9). Missing
entries contribute nothing, not even through gradients (they are removed with
`tf.where`, never multiplied by the mask, so NaN cannot leak).
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
]

tfd = tfp.distributions

# The encoder's log-variances are clipped to this range before exp(): an
# untrained encoder on unscaled inputs (MRI intensities in the thousands, say)
# can output log-variances of hundreds, whose exp overflows float32 into
# Inf and then NaN samples. Standard deviations stay within [4.5e-5, 2.2e4].
LOG_VARIANCE_BOUND = 20.0


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
        noise_sigma: scalar > 0.

    Returns:
        (..., batch) log-likelihoods.
    """
    image = tf.where(observed, tf.cast(image, tf.float32), 0.0)
    likelihood = tfd.Normal(loc=tf.cast(reconstruction, tf.float32), scale=noise_sigma)
    log_prob = tf.where(observed, likelihood.log_prob(image), 0.0)
    sample_axes = list(range(-(image.shape.rank - 1), 0))
    return tf.reduce_sum(log_prob, axis=sample_axes)


def sparse_vae_loss_terms(image, mask, mean, log_variance, decoder, noise_sigma,
                          num_samples=1, training=False, scored_mask=None):
    """The two terms of eq. 9 per sample: (reconstruction, KL).

    Usable in any Keras model's `train_step` or with `add_loss`.

    Args:
        image: (batch, *shape) images; missing entries may hold NaN.
        mask: 1 where observed (bool, or float > 0.5), image's shape or 1 channel.
        mean, log_variance: (batch, d), or (batch, *latent_shape) for spatial
            latents, the encoder's posterior parameters.
        decoder: callable mapping latents (n, d) to images (n, *shape).
        noise_sigma: sigma > 0 (float or scalar tensor, e.g. a learned weight).
        num_samples: K, samples from q for the expectation.
        training: passed to a Keras decoder.
        scored_mask: the entries of the likelihood, if not `mask`'s (for
            self-supervision: the encoder saw `mask`'s entries, the loss scores
            held-out ones too); same conventions as `mask`.

    Returns:
        reconstruction: (batch,) -E_q[log N(y_O; f(x)_O, sigma^2 I)].
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
    flat = tf.reshape(samples, tf.concat([[-1], tf.shape(mean)[1:]], axis=0))
    decoded = _call(decoder, flat, training)
    decoded = tf.reshape(decoded, tf.concat([[num_samples], tf.shape(image)], axis=0))
    log_likelihood = observed_log_likelihood(image, observed, decoded, noise_sigma)
    reconstruction = -tf.reduce_mean(log_likelihood, axis=0)
    return reconstruction, kl


def _call(model, inputs, training):
    if isinstance(model, keras.layers.Layer):
        return model(inputs, training=training)
    return model(inputs)
