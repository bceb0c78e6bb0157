"""Imputation by ascent along an auto-encoder's vector field (and pseudo-Gibbs).

With r the reconstruction function of a trained auto-encoder, r(x) - x
approximates the gradient of the log-density (times the denoising noise
variance), so the conditionally most probable filling of the missing entries
J of x is approached by the projected ascent (paper §3)

    x_J <- x_J + h [r(x) - x]_J,      observed entries clamped,

from an initial filling (mean, k-NN, noise, zeros or a given array).
Pseudo-Gibbs sampling is the special case h = 1 (paper §4's baseline).

The whole loop is one `tf.function` with a `tf.while_loop`: no Python
unrolling, and no retracing for repeated calls with the same shapes.
"""

import typing
import weakref

import keras
import numpy as np
import tensorflow as tf

from imputers import autoencoder as autoencoder_lib
from imputers import initialization


class AscentResult(typing.NamedTuple):
    """What `vector_field_ascent` returns when asked for more than the images.

    Attributes:
        imputed: (batch, *shape) images, or (num_imputations, batch, *shape).
        steps: int array (batch,) or (num_imputations, batch): updates applied
            to each sample (fewer than max_steps when it stopped by `tol`).
        trajectory: (max_steps + 1, batch, *shape) or with num_imputations
            after the step axis; entry 0 is the initial filling. None unless
            `return_trajectory`. A sample that stopped keeps its last value.
        latent_trajectory: the encoder's outputs along the trajectory, when the
            auto-encoder was given as (encoder, decoder); else None.
    """

    imputed: np.ndarray
    steps: np.ndarray
    trajectory: typing.Optional[np.ndarray] = None
    latent_trajectory: typing.Optional[np.ndarray] = None


class CompiledAscent:
    """The compiled ascent loops for one reconstruction function.

    One `tf.function` per (record trajectory, XLA) choice; step size, number of
    steps and tolerance are tensors, so changing them does not retrace.
    """

    def __init__(self, reconstruct):
        self.reconstruct = reconstruct
        self._functions = {}

    def function(self, record_trajectory=False, jit_compile=False):
        key = (bool(record_trajectory), bool(jit_compile))
        if key not in self._functions:
            self._functions[key] = tf.function(
                lambda x, observed, step_size, max_steps, tol: self._ascent(
                    x, observed, step_size, max_steps, tol, record_trajectory
                ),
                jit_compile=jit_compile,
                reduce_retracing=True,
            )
        return self._functions[key]

    def _ascent(self, x, observed, step_size, max_steps, tol, record_trajectory):
        """x: (B, ...) filled images; observed: bool (B, ...); tol < 0: none."""
        batch = tf.shape(x)[0]
        per_sample = [-1] + [1] * (x.shape.rank - 1)
        trajectory = tf.TensorArray(
            tf.float32, size=max_steps + 1 if record_trajectory else 1,
            element_shape=x.shape,
        )
        trajectory = trajectory.write(0, x)

        def body(step, x, steps, active, trajectory):
            update = tf.where(observed, 0.0, step_size * (self.reconstruct(x) - x))
            largest = tf.reduce_max(tf.abs(tf.reshape(update, [batch, -1])), axis=1)
            moving = tf.logical_and(active, largest >= tol)
            x = tf.where(tf.reshape(moving, per_sample), x + update, x)
            steps += tf.cast(moving, tf.int32)
            if record_trajectory:
                trajectory = trajectory.write(step + 1, x)
            return step + 1, x, steps, moving, trajectory

        step, x, steps, _, trajectory = tf.while_loop(
            lambda step, x, steps, active, trajectory: tf.logical_and(
                step < max_steps, tf.reduce_any(active)
            ),
            body,
            (tf.constant(0), x, tf.zeros([batch], tf.int32), tf.ones([batch], tf.bool),
             trajectory),
        )
        if not record_trajectory:
            return x, steps, tf.zeros([0], tf.float32)
        # All samples stopped early: repeat the final state up to max_steps.
        recorded = trajectory.gather(tf.range(step + 1))
        rest = tf.repeat(x[None], max_steps - step, axis=0)
        return x, steps, tf.concat([recorded, rest], axis=0)


# Compiled loops per auto-encoder, so that the function API does not retrace
# on every call. Keyed weakly by the model (for a pair: by the decoder, then
# by the encoder's id).
_COMPILED = weakref.WeakKeyDictionary()


def compiled_ascent_for(autoencoder):
    """Returns (CompiledAscent, encoder) for an auto-encoder, cached."""
    if isinstance(autoencoder, (tuple, list)) and len(autoencoder) == 2:
        owner, detail = autoencoder[1], id(autoencoder[0])
    else:
        owner, detail = autoencoder, None
    try:
        cache = _COMPILED.setdefault(owner, {})
    except TypeError:  # not weak-referenceable: no caching
        cache = {}
    if detail not in cache:
        reconstruct, encoder = autoencoder_lib.reconstruction_function(autoencoder)
        cache[detail] = (CompiledAscent(reconstruct), encoder)
    return cache[detail]


def check_images_and_mask(x, mask):
    """Float32 images and a bool mask of their shape; ValueError on mismatch."""
    x = np.asarray(x, np.float32)
    mask = np.asarray(mask)
    if x.ndim < 2:
        raise ValueError(f"Images must be a batch (batch, *shape); received shape {x.shape}.")
    fits = mask.ndim == x.ndim and all(
        m == s or (axis == x.ndim - 1 and m == 1)
        for axis, (m, s) in enumerate(zip(mask.shape, x.shape))
    )
    if not fits:
        raise ValueError(
            f"The mask must have the images' shape {x.shape} (or 1 channel); "
            f"received mask shape {mask.shape}."
        )
    observed = mask if mask.dtype == bool else mask > 0.5
    return x, np.broadcast_to(observed, x.shape)


def check_reference(reference, x, k, init):
    if reference is None:
        if isinstance(init, str) and init == "knn":
            raise ValueError("init='knn' needs `reference` images (complete training data).")
        return None
    reference = np.asarray(reference, np.float32)
    if reference.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"Reference images have shape (n,) + {reference.shape[1:]}, the images to "
            f"impute (batch,) + {x.shape[1:]}."
        )
    if isinstance(init, str) and init == "knn" and k > len(reference):
        raise ValueError(f"k={k} is larger than the reference set ({len(reference)} images).")
    if not np.all(np.isfinite(reference)):
        raise ValueError("Reference images must be complete (finite everywhere).")
    return reference


def check_ascent_arguments(step_size, max_steps, tol, k):
    if not step_size > 0:
        raise ValueError(f"step_size must be > 0; received step_size={step_size}.")
    if not isinstance(max_steps, (int, np.integer)) or max_steps < 0:
        raise ValueError(f"max_steps must be an int >= 0; received max_steps={max_steps!r}.")
    if tol is not None and not tol >= 0:
        raise ValueError(f"tol must be >= 0 or None; received tol={tol}.")
    if not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive int; received k={k!r}.")


def run_ascent(compiled, encoder, x, observed, *, step_size, max_steps, tol, init,
               reference, k, seed, num_imputations, return_trajectory, return_steps,
               batch_size, jit_compile, verbose=0):
    """Shared by `vector_field_ascent` and `VectorFieldImputer.impute`."""
    if not isinstance(num_imputations, (int, np.integer)) or num_imputations < 1:
        raise ValueError(f"num_imputations must be an int >= 1; received {num_imputations!r}.")
    autoencoder_lib.check_reconstruction_shape(
        compiled.reconstruct, np.where(observed, x, 0.0)[:1]
    )
    batch = len(x)
    if num_imputations > 1:
        x = np.concatenate([x] * num_imputations)
        observed = np.concatenate([observed] * num_imputations)
        if not isinstance(init, str):
            init = np.concatenate([np.asarray(init, np.float32)] * num_imputations)
    filled = initialization.initial_fill(init, x, observed, reference, k, seed).numpy()

    function = compiled.function(return_trajectory, jit_compile)
    chunk = len(x) if batch_size is None else int(batch_size)
    if chunk <= 0:
        raise ValueError(f"batch_size must be a positive int; received {batch_size}.")
    outputs = []
    progress = keras.utils.Progbar(len(x), unit_name="image") if verbose else None
    for start in range(0, len(x), chunk):
        part = slice(start, start + chunk)
        size = len(filled[part])
        # Pad the last chunk to the chunk size: same shapes, no retracing.
        pad = chunk - size
        part_x = np.concatenate([filled[part]] + [filled[part][-1:]] * pad)
        part_observed = np.concatenate([observed[part]] + [observed[part][-1:]] * pad)
        result = function(
            tf.constant(part_x), tf.constant(part_observed),
            tf.constant(step_size, tf.float32), tf.constant(max_steps, tf.int32),
            tf.constant(-1.0 if tol is None else tol, tf.float32),
        )
        outputs.append([
            result[0].numpy()[:size], result[1].numpy()[:size],
            result[2].numpy()[:, :size] if return_trajectory else None,
        ])
        if progress is not None:
            progress.add(size)
    imputed = np.concatenate([o[0] for o in outputs])
    imputed = np.where(observed, x, imputed)  # observed entries exactly as given
    steps = np.concatenate([o[1] for o in outputs])
    trajectory = np.concatenate([o[2] for o in outputs], axis=1) if return_trajectory else None
    latent = None
    if return_trajectory and encoder is not None:
        latent = np.stack([encoder(tf.constant(state)).numpy() for state in trajectory])

    def split(array, axis=0):
        if array is None or num_imputations == 1:
            return array
        shape = array.shape
        array = array.reshape(shape[:axis] + (num_imputations, batch) + shape[axis + 1:])
        return array

    imputed, steps = split(imputed), split(steps)
    trajectory, latent = split(trajectory, 1), split(latent, 1)
    if return_trajectory or return_steps:
        return AscentResult(imputed, steps, trajectory, latent)
    return imputed


def vector_field_ascent(autoencoder, x, mask, *, step_size=0.1, max_steps=100, tol=None,
                        init="mean", reference=None, k=5, seed=None, num_imputations=1,
                        return_trajectory=False, return_steps=False, batch_size=None,
                        jit_compile=False, verbose=0):
    """Imputes missing entries by ascent along the auto-encoder's vector field.

    Iterates ``x_J <- x_J + step_size * [r(x) - x]_J`` on the missing entries J,
    observed entries clamped, for at most `max_steps` steps.

    Args:
        autoencoder: a trained Keras model (or callable) mapping a batch to its
            reconstruction, or an (encoder, decoder) pair. Never retrained.
        x: images (batch, *shape); missing entries may hold NaN.
        mask: 1 where observed (bool, or float > 0.5), of x's shape or 1 channel.
        step_size: h > 0.
        max_steps: maximum number of steps.
        tol: None, or per-sample stopping: a sample whose largest update is
            below `tol` stops changing while the others continue.
        init: "mean", "knn", "noise", "zeros" or an array of x's shape.
        reference: complete images (n, *shape) for "mean" (their mean; without
            reference, the mean of x's observed values) and "knn".
        k: neighbours for "knn".
        seed: int, for "noise".
        num_imputations: n > 1 returns n imputations per input, shape
            (n, batch, *shape); with init="noise" each starts elsewhere and may
            reach a different attractor (paper §3).
        return_trajectory: also return every step (and, for an (encoder,
            decoder) pair, the latent trajectory), as an `AscentResult`.
        return_steps: return an `AscentResult` with the steps per sample.
        batch_size: process this many images at a time (None: all at once).
        jit_compile: compile the loop with XLA.
        verbose: 1 shows a progress bar over the batches.

    Returns:
        The imputed images (observed entries exactly as given), or an
        `AscentResult` if `return_trajectory` or `return_steps`.

    Example:

    >>> imputed = vector_field_ascent(model, x, mask, step_size=0.1, max_steps=200,
    ...                               init="knn", reference=x_train)
    """
    check_ascent_arguments(step_size, max_steps, tol, k)
    x, observed = check_images_and_mask(x, mask)
    reference = check_reference(reference, x, k, init)
    compiled, encoder = compiled_ascent_for(autoencoder)
    return run_ascent(
        compiled, encoder, x, observed, step_size=step_size, max_steps=max_steps, tol=tol,
        init=init, reference=reference, k=k, seed=seed, num_imputations=num_imputations,
        return_trajectory=return_trajectory, return_steps=return_steps,
        batch_size=batch_size, jit_compile=jit_compile, verbose=verbose,
    )


def pseudo_gibbs(autoencoder, x, mask, **kwargs):
    """Pseudo-Gibbs imputation: missing entries replaced by the reconstruction.

    `vector_field_ascent` with ``step_size=1``; takes the same arguments.
    """
    if "step_size" in kwargs:
        raise ValueError("pseudo_gibbs uses step_size=1; use vector_field_ascent for others.")
    return vector_field_ascent(autoencoder, x, mask, step_size=1.0, **kwargs)
