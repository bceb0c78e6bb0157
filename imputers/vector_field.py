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
from sparselayers.layers.image_and_mask import check_observed_finite
from sparselayers.layers.image_and_mask import check_positive_int
from sparselayers.distribute import streaming

__all__ = ["AscentResult", "AscentDivergedError", "vector_field_ascent", "pseudo_gibbs"]


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


class AscentDivergedError(FloatingPointError):
    """The ascent reached a non-finite state (NaN or Inf) for some samples.

    Raised instead of returning results: a diverged sample has no imputation.
    Usually the step size is too large for the auto-encoder (h * |r'(x) - 1|
    above 2 makes the iteration grow), or the auto-encoder itself returns NaN.

    Attributes:
        samples: int array, the indices (into the batch given) of the samples
            that diverged.
        imputed: the images at the last finite state of every sample (the
            diverged ones stopped there), observed entries as given; shaped
            as the result would have been.
        steps: the updates applied to each sample before it stopped.
    """

    def __init__(self, samples, imputed, steps, step_size):
        self.samples = np.asarray(samples)
        self.imputed = imputed
        self.steps = steps
        shown = ", ".join(str(int(i)) for i in self.samples[:20])
        more = f" and {len(self.samples) - 20} more" if len(self.samples) > 20 else ""
        super().__init__(
            f"The ascent diverged (a NaN or Inf state) for sample(s) [{shown}]{more} with "
            f"step_size={step_size}: try a smaller step_size, and check that the "
            "auto-encoder returns finite values on these inputs. The last finite states "
            "are in this error's `imputed` attribute."
        )


class CompiledAscent:
    """The compiled ascent loops for one reconstruction function.

    One `tf.function` per (record trajectory, XLA) choice; step size, number of
    steps and tolerance are tensors, so changing them does not retrace.

    The loop returns ``(x, steps, trajectory, diverged)``: a sample whose next
    state would hold a NaN or Inf stops at its last finite state and is
    flagged in ``diverged`` (bool, (batch,)).
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
        batch = x.shape[0] or tf.shape(x)[0]  # static when known: the loop keeps shapes
        per_sample = [-1] + [1] * (x.shape.rank - 1)
        trajectory = tf.TensorArray(
            tf.float32, size=max_steps + 1 if record_trajectory else 1,
            element_shape=x.shape,
        )
        trajectory = trajectory.write(0, x)

        def body(step, x, steps, active, diverged, trajectory):
            # ensure_shape: a model's output may lose the static batch size
            # (the loop needs it fixed), and must not change it at run time.
            reconstruction = tf.ensure_shape(self.reconstruct(x), x.shape)
            update = tf.where(observed, 0.0, step_size * (reconstruction - x))
            candidate = x + update
            finite = tf.reduce_all(
                tf.math.is_finite(tf.reshape(candidate, [batch, -1])), axis=1)
            largest = tf.reduce_max(tf.abs(tf.reshape(update, [batch, -1])), axis=1)
            diverged = tf.logical_or(diverged, tf.logical_and(active, tf.logical_not(finite)))
            moving = tf.logical_and(tf.logical_and(active, finite), largest >= tol)
            next_x = tf.where(tf.reshape(moving, per_sample), candidate, x)
            next_x.set_shape(x.shape)  # the loop needs the static shape kept
            x = next_x
            steps += tf.cast(moving, tf.int32)
            if record_trajectory:
                trajectory = trajectory.write(step + 1, x)
            return step + 1, x, steps, moving, diverged, trajectory

        step, x, steps, _, diverged, trajectory = tf.while_loop(
            lambda step, x, steps, active, diverged, trajectory: tf.logical_and(
                step < max_steps, tf.reduce_any(active)
            ),
            body,
            (tf.constant(0), x, tf.zeros([batch], tf.int32), tf.ones([batch], tf.bool),
             tf.zeros([batch], tf.bool), trajectory),
        )
        # An initial filling that is not finite (e.g. Inf observed) is divergence too.
        diverged = tf.logical_or(diverged, tf.logical_not(tf.reduce_all(
            tf.math.is_finite(tf.reshape(x, [batch, -1])), axis=1)))
        if not record_trajectory:
            return x, steps, tf.zeros([0], tf.float32), diverged
        # All samples stopped early: repeat the final state up to max_steps.
        recorded = trajectory.gather(tf.range(step + 1))
        rest = tf.repeat(x[None], max_steps - step, axis=0)
        return x, steps, tf.concat([recorded, rest], axis=0), diverged


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


def check_images_and_mask(x, mask, caller="imputation"):
    """Float32 images and a bool mask of their shape.

    Raises:
        ValueError: on a shape mismatch, or naming the first sample holding
            NaN or Inf at an observed entry.
    """
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
    observed = np.broadcast_to(mask if mask.dtype == bool else mask > 0.5, x.shape)
    check_observed_finite(x, observed, caller)
    return x, observed


def check_reference(reference, x, k, init):
    if reference is None:
        if isinstance(init, str) and init == "knn":
            raise ValueError("init='knn' needs `reference` images (complete training data).")
        return None
    reference = initialization.check_reference_images(reference, "reference")
    if reference.shape[1:] != x.shape[1:]:
        raise ValueError(
            f"Reference images have shape (n,) + {reference.shape[1:]}, the images to "
            f"impute (batch,) + {x.shape[1:]}."
        )
    if isinstance(init, str) and init == "knn" and k > len(reference):
        raise ValueError(f"k={k} is larger than the reference set ({len(reference)} images).")
    return reference


def check_ascent_arguments(step_size, max_steps, tol, k, batch_size=None):
    if not (np.isfinite(step_size) and step_size > 0):
        raise ValueError(f"step_size must be finite and > 0; received step_size={step_size}.")
    if isinstance(max_steps, (bool, np.bool_)) or not isinstance(max_steps, (int, np.integer)) \
            or max_steps < 0:
        raise ValueError(f"max_steps must be an int >= 0; received max_steps={max_steps!r}.")
    if tol is not None and not tol >= 0:
        raise ValueError(f"tol must be >= 0 or None; received tol={tol}.")
    check_positive_int(k, "k")
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size")


def run_ascent(compiled, encoder, x, observed, *, step_size, max_steps, tol, init,
               reference, k, seed, num_imputations, return_trajectory, return_steps,
               batch_size, jit_compile, verbose=0):
    """Shared by `vector_field_ascent` and `VectorFieldImputer.impute`."""
    num_imputations = check_positive_int(num_imputations, "num_imputations")
    if batch_size is not None:
        check_positive_int(batch_size, "batch_size")
    batch = len(x)
    if batch == 0:
        return _empty_result(x, num_imputations, max_steps, return_trajectory, return_steps,
                             encoder)
    autoencoder_lib.check_reconstruction_shape(compiled.reconstruct, np.where(observed, x, 0.0))
    if num_imputations > 1:
        x = np.concatenate([x] * num_imputations)
        observed = np.concatenate([observed] * num_imputations)
        if not isinstance(init, str):
            init = np.concatenate([np.asarray(init, np.float32)] * num_imputations)
    filled = initialization.initial_fill(init, x, observed, reference, k, seed).numpy()

    function = compiled.function(return_trajectory, jit_compile)
    chunk = len(x) if batch_size is None else int(batch_size)
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
            result[3].numpy()[:size],
        ])
        if progress is not None:
            progress.add(size)
    imputed = np.concatenate([o[0] for o in outputs])
    imputed = np.where(observed, x, imputed)  # observed entries exactly as given
    steps = np.concatenate([o[1] for o in outputs])
    diverged = np.concatenate([o[3] for o in outputs])
    trajectory = np.concatenate([o[2] for o in outputs], axis=1) if return_trajectory else None

    def split(array, axis=0):
        if array is None or num_imputations == 1:
            return array
        shape = array.shape
        array = array.reshape(shape[:axis] + (num_imputations, batch) + shape[axis + 1:])
        return array

    if diverged.any():
        samples = np.unique(np.flatnonzero(diverged) % batch)
        raise AscentDivergedError(samples, split(imputed), split(steps), step_size)
    latent = None
    if return_trajectory and encoder is not None:
        latent = np.stack([encoder(tf.constant(state)).numpy() for state in trajectory])
    imputed, steps = split(imputed), split(steps)
    trajectory, latent = split(trajectory, 1), split(latent, 1)
    if return_trajectory or return_steps:
        return AscentResult(imputed, steps, trajectory, latent)
    return imputed


def _empty_result(x, num_imputations, max_steps, return_trajectory, return_steps, encoder):
    """The result of imputing an empty batch: arrays with a batch axis of 0."""
    lead = (num_imputations,) if num_imputations > 1 else ()
    imputed = np.zeros(lead + x.shape, np.float32)
    if not (return_trajectory or return_steps):
        return imputed
    steps = np.zeros(lead + (0,), np.int32)
    trajectory = np.zeros((max_steps + 1,) + lead + x.shape, np.float32) \
        if return_trajectory else None
    latent = None
    if return_trajectory and encoder is not None:
        code_shape = tuple(encoder(tf.zeros((1,) + x.shape[1:])).shape[1:])
        latent = np.zeros((max_steps + 1,) + lead + (0,) + code_shape, np.float32)
    return AscentResult(imputed, steps, trajectory, latent)


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
        x: images (batch, *shape); missing entries may hold NaN or Inf,
            observed ones must be finite (ValueError naming the sample).
        mask: 1 where observed (bool, or float > 0.5), of x's shape or 1 channel.
        step_size: h > 0, finite.
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
        `AscentResult` if `return_trajectory` or `return_steps`. An empty
        batch gives empty arrays. Given a `tf.data.Dataset` or iterator of
        ``(image, mask)`` batches as `x` (and ``mask=None``), a generator of
        those results batch by batch (`sparselayers.distribute.streaming`).

    Raises:
        AscentDivergedError: when a sample's state became NaN or Inf (too
            large a step size, or an auto-encoder returning NaN); the error
            names the samples and holds the last finite states.

    Example:

    >>> imputed = vector_field_ascent(model, x, mask, step_size=0.1, max_steps=200,
    ...                               init="knn", reference=x_train)
    """
    check_ascent_arguments(step_size, max_steps, tol, k, batch_size)
    if streaming.is_stream(x, "vector_field_ascent"):
        settings = dict(step_size=step_size, max_steps=max_steps, tol=tol, init=init,
                        reference=reference, k=k, num_imputations=num_imputations,
                        return_trajectory=return_trajectory, return_steps=return_steps,
                        batch_size=batch_size, jit_compile=jit_compile, verbose=verbose)
        return streaming.map_batches(
            lambda images, masks, batch_seed: vector_field_ascent(
                autoencoder, images, masks, seed=batch_seed, **settings),
            x, mask, "vector_field_ascent", seed)
    x, observed = check_images_and_mask(x, mask, "vector_field_ascent")
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
