"""Deep Image Prior fitting on the observed pixels of each image.

For each image y, a generator network g with fresh weights phi is fitted to
the image's observed entries only from a fixed random input z (paper §3.5.3):

    phi_hat = argmin_phi || g_phi(z)_O - y_O ||^2 / |O|,     y_hat = g_phi_hat(z),

and the missing entries are read from y_hat (observed entries are kept).
Every image gets its own freshly initialised copy of the network; with
`batched=True` the copies are trained together as one stacked model
(`imputers.stacked_network`), each seeing only its own image.
"""

import keras
import numpy as np
import tensorflow as tf

from imputers.stacked_network import stack_networks
from imputers.vector_field import check_images_and_mask
from sparselayers.layers.image_and_mask import check_positive_int

__all__ = ["fit_dip"]


def _observed_losses(outputs, images, observed):
    """The observed-entry MSE of each image: (n, *shape) -> (n,)."""
    axes = list(range(1, len(images.shape)))
    squared = tf.where(observed, tf.square(outputs - images), 0.0)
    count = tf.reduce_sum(tf.cast(observed, tf.float32), axes)
    return tf.reduce_sum(squared, axes) / tf.maximum(count, 1.0)


def _fit_group(network, inputs, images, observed, steps, learning_rate, reg_noise_std,
               seed, progress, progress_offset):
    """Fits a fresh copy of `network` to each of `images`, all in one compiled step."""
    networks = [keras.models.clone_model(network) for _ in range(len(images))]
    # One model whose copy g holds networks[g]'s weights and sees only inputs[g].
    stacked = stack_networks(networks)
    variables = stacked.trainable_variables
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build(variables)
    generator = tf.random.Generator.from_seed(seed)

    @tf.function
    def train_step():
        with tf.GradientTape() as tape:
            jitter = generator.normal(tf.shape(inputs), stddev=reg_noise_std)
            outputs = tf.cast(stacked(inputs + jitter, training=True), tf.float32)
            losses = _observed_losses(outputs, images, observed)
            # Each image's loss depends on its own copy only: the gradient of
            # the sum is every copy's own gradient, and Adam is per weight.
            total = tf.reduce_sum(losses)
        optimizer.apply_gradients(zip(tape.gradient(total, variables), variables))
        return losses

    # Losses are read back (a device sync) only about 100 times per fit.
    history = []
    record_every = max(1, steps // 100)
    for step in range(steps):
        losses = train_step()
        if step == 0 or (step + 1) % record_every == 0 or step + 1 == steps:
            history.append(losses.numpy())
            if progress is not None:
                progress.update(progress_offset + step + 1,
                                values=[("observed_mse", float(np.mean(history[-1])))])
    outputs = tf.cast(stacked(inputs, training=True), tf.float32).numpy()
    return outputs, np.stack(history)


def fit_dip(network, y, mask, *, steps=1000, learning_rate=0.01, input_noise_std=0.1,
            reg_noise_std=0.03, seed=None, batched=True, verbose=1, return_history=False):
    """Imputes images by fitting a Deep Image Prior to each one's observed pixels.

    Args:
        network: a Keras model mapping a random input of its input shape to one
            image of y's shape (e.g. the decoder of an auto-encoder). It must be
            clonable by `keras.models.clone_model`; it is not modified: each
            image gets a clone with freshly initialised weights. Its BatchNorm
            layers run in training mode.
        y: images (n, *shape); missing entries may hold NaN, observed ones
            must be finite. An empty batch gives an empty result.
        mask: 1 where observed (bool, or float > 0.5), of y's shape or 1 channel.
        steps: optimisation steps per image, an int >= 1 (the paper reports 1000).
        learning_rate: Adam learning rate, finite and > 0.
        input_noise_std: standard deviation of the fixed Gaussian input z.
        reg_noise_std: standard deviation of the noise added to z at each step
            (DIP's input regularisation; 0 disables it).
        seed: int or None, for the inputs, the weights and the jitter.
        batched: if True, fit all images at once in one compiled training
            step: the n networks, each with its own weights, run as one model
            whose layers process all n at once (`stack_networks`: Dense,
            Conv1D/2D and their transposes, BatchNormalization and layers
            without weights are vectorised; other layers with weights run
            copy by copy in the same graph). If False, one image after another.
        verbose: 1 shows a Keras progress bar, 0 nothing.
        return_history: also return the observed-entry MSE of each image,
            recorded at the first step and then about 100 times.

    Returns:
        float32 array (n, *shape): the images with missing entries imputed;
        with `return_history`, also an array (records, n) of losses.

    Example:

    >>> imputed = fit_dip(decoder, y, mask, steps=1000, seed=0)
    """
    steps = check_positive_int(steps, "steps")
    if not (np.isfinite(learning_rate) and learning_rate > 0):
        raise ValueError(f"learning_rate must be finite and > 0; received {learning_rate}.")
    if not (np.isfinite(input_noise_std) and input_noise_std >= 0):
        raise ValueError(f"input_noise_std must be finite and >= 0; received {input_noise_std}.")
    if not (np.isfinite(reg_noise_std) and reg_noise_std >= 0):
        raise ValueError(f"reg_noise_std must be finite and >= 0; received {reg_noise_std}.")
    y, observed = check_images_and_mask(y, mask, "fit_dip")
    if not isinstance(network, keras.Model):
        raise ValueError(f"`network` must be a keras.Model; received {type(network).__name__}.")
    output_shape = tuple(network.output_shape[1:])
    if output_shape != y.shape[1:]:
        raise ValueError(
            f"The network's output shape (batch,) + {output_shape} differs from the "
            f"images' (batch,) + {y.shape[1:]}."
        )
    if len(y) == 0:
        imputed = np.zeros(y.shape, np.float32)
        return (imputed, np.zeros((0, 0), np.float32)) if return_history else imputed
    rng = np.random.default_rng(seed)
    base_seed = int(rng.integers(2**31 - 1))
    if seed is not None:
        keras.utils.set_random_seed(base_seed)
    input_shape = tuple(network.input_shape[1:])
    inputs = rng.normal(0.0, input_noise_std, (len(y),) + input_shape).astype(np.float32)
    images = np.where(observed, y, 0.0).astype(np.float32)
    groups = [list(range(len(y)))] if batched else [[i] for i in range(len(y))]
    total_steps = steps * len(groups)
    progress = keras.utils.Progbar(total_steps, verbose=verbose) if verbose else None
    outputs, histories = [], []
    for number, group in enumerate(groups):
        fitted, history = _fit_group(
            network, tf.constant(inputs[group]), tf.constant(images[group]),
            tf.constant(observed[group]), steps, learning_rate, reg_noise_std,
            base_seed + number, progress, number * steps,
        )
        outputs.append(fitted)
        histories.append(history)
    imputed = np.where(observed, y, np.concatenate(outputs)).astype(np.float32)
    if return_history:
        return imputed, np.concatenate(histories, axis=1)
    return imputed
