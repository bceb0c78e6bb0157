"""The linear subspace model (paper §3.5.1, eqs. 13-15) as a SparseVAE."""

import keras
import tensorflow as tf

from sparselayers.layers.sparse_dense import SparseDense
from sparselayers.models.sparse_vae import SparseVAE

__all__ = ["LinearSubspaceVAE"]


@keras.saving.register_keras_serializable(package="sparselayers")
class TiedSubspaceDecoder(keras.layers.Layer):
    """Decoder x -> W x + mu sharing the weights of a `SparseDense` encoder layer."""

    def __init__(self, subspace, **kwargs):
        super().__init__(**kwargs)
        self.subspace = subspace

    def call(self, latent):
        return self.subspace.decode(latent)

    def compute_output_shape(self, input_shape):
        return (input_shape[0],) + tuple(self.subspace.image_shape)


@keras.saving.register_keras_serializable(package="sparselayers")
class LearnedLogVariance(keras.layers.Layer):
    """A learned log-variance vector (d,), broadcast to the batch of its input."""

    def build(self, input_shape):
        self.log_variance = self.add_weight(
            name="log_variance", shape=(input_shape[-1],), initializer="zeros"
        )

    def call(self, mean):
        return tf.zeros_like(mean) + tf.cast(self.log_variance, mean.dtype)


@keras.saving.register_keras_serializable(package="sparselayers")
class LinearSubspaceVAE(SparseVAE):
    """y = W x + mu + noise: one `SparseDense` layer encodes and decodes.

    The posterior mean is the SparseDense response (eqs. 10, 14):
    ``(W_O^T W_O + lambda I)^-1 W_O^T (y_O - mu_O)``, with lambda playing the
    role of sigma^2 in eq. 15; the decoder is the same layer's ``W x + mu``
    (tied weights). The posterior variance is a learned diagonal, shared by
    all samples: a diagonal simplification of eq. 14's sigma^2 (W_O^T W_O)^-1.
    Conditional-mean imputation (`impute`) then follows eq. 15.

    Args:
        image_shape: shape of one image, e.g. (28, 28, 1).
        latent_dim: d, the subspace size.
        regularization: lambda of the SparseDense layer; default sigma^2, which
            makes the posterior mean exact for the linear Gaussian model (eq. 15)
            and keeps the KL term from being evaded by scaling W up.
        trainable_regularization: learn lambda (kept >= 0).
        Other arguments: as `SparseVAE`.
    """

    def __init__(self, image_shape, latent_dim, regularization=None,
                 trainable_regularization=False, noise_sigma=0.1, learn_noise_sigma=False,
                 num_samples=1, **kwargs):
        image_shape = tuple(image_shape)
        if regularization is None:
            regularization = float(noise_sigma) ** 2  # eq. 15: lambda = sigma^2
        image = keras.Input(image_shape, name="image")
        mask = keras.Input(image_shape, name="mask")
        subspace = SparseDense(latent_dim, regularization=regularization,
                               trainable_regularization=trainable_regularization, name="subspace")
        mean = subspace([image, mask])
        encoder = keras.Model([image, mask], [mean, LearnedLogVariance()(mean)], name="encoder")
        latent = keras.Input((latent_dim,), name="latent")
        decoder = keras.Model(latent, TiedSubspaceDecoder(subspace)(latent), name="decoder")
        super().__init__(encoder, decoder, noise_sigma=noise_sigma,
                         learn_noise_sigma=learn_noise_sigma, num_samples=num_samples, **kwargs)
        self.subspace = subspace
        self.regularization = regularization
        self.trainable_regularization = trainable_regularization

    def get_config(self):
        # The encoder and decoder are rebuilt from these arguments (their tied
        # layer cannot be described by two separate model configs).
        config = {"name": self.name, "trainable": self.trainable}
        config.update({
            "noise_sigma": self.initial_noise_sigma,
            "learn_noise_sigma": self.learn_noise_sigma,
            "num_samples": self.num_samples,
            "image_shape": tuple(self.image_shape), "latent_dim": self.latent_dim,
            "regularization": self.regularization,
            "trainable_regularization": self.trainable_regularization,
        })
        return config

    @classmethod
    def from_config(cls, config):
        return cls(**config)
