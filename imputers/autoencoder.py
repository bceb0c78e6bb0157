"""Turning "any trained auto-encoder" into a reconstruction function r(x)."""

import keras
import tensorflow as tf

__all__ = ["reconstruction_function"]


def reconstruction_function(autoencoder):
    """Returns ``(reconstruct, encoder)`` for a model, callable or pair.

    Args:
        autoencoder: a Keras model (Functional, Sequential or subclassed) or any
            callable mapping a batch to its reconstruction of the same shape,
            or a tuple ``(encoder, decoder)`` whose composition is the
            reconstruction. Keras models are called with ``training=False``.

    Returns:
        ``reconstruct``, a function of a float32 batch, and ``encoder`` (the
        first item of a pair, else None), used for latent trajectories.
    """
    if isinstance(autoencoder, (tuple, list)):
        if len(autoencoder) != 2 or not all(callable(part) for part in autoencoder):
            raise ValueError(
                "An auto-encoder given as a tuple must be (encoder, decoder), two "
                f"callables; received {len(autoencoder)} item(s)."
            )
        encoder, decoder = autoencoder
        encode, decode = _as_function(encoder), _as_function(decoder)

        def reconstruct(x):
            return decode(encode(x))

        return reconstruct, encode
    if not callable(autoencoder):
        raise ValueError(
            f"`autoencoder` must be a Keras model, a callable or an (encoder, "
            f"decoder) tuple; received {type(autoencoder).__name__}."
        )
    return _as_function(autoencoder), None


def _as_function(model):
    def call(x):
        if isinstance(model, keras.layers.Layer):
            output = model(x, training=False)
        else:
            output = model(x)
        if isinstance(output, (list, tuple)):  # e.g. an encoder's (mean, log-var)
            output = output[0]
        return tf.cast(output, tf.float32)

    return call


def check_reconstruction_shape(reconstruct, examples):
    """Calls ``reconstruct`` on two examples; ValueError if the shape differs.

    Two, so that a model returning a fixed batch of 1 (which would be
    broadcast over the batch silently) is caught too.
    """
    pair = examples[:2] if len(examples) >= 2 else examples[[0, 0]]
    output = reconstruct(tf.convert_to_tensor(pair, tf.float32))
    if tuple(output.shape) != tuple(pair.shape):
        raise ValueError(
            "The auto-encoder must return a reconstruction of its input's shape, batch "
            f"included; input {tuple(pair.shape)} gave output {tuple(output.shape)}."
        )
