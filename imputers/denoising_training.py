"""A training recipe that makes an auto-encoder's vector field useful from any start.

The ascent of `vector_field_ascent` follows r(x) - x, which approximates
sigma^2 times the gradient of the log-density only where the auto-encoder was
trained (paper §3): an auto-encoder that never saw a hole filled with noise
has nothing to say about one, and an ascent started from noise drifts to the
attractor of another image. `train_denoising_autoencoder` trains a user's
own Keras auto-encoder to reconstruct clean images from the states an ascent
starts from and passes through:

* a hole (a square of random side and place) filled as each initialisation
  fills it: uniform noise over the data's range (``init="noise"``), the
  per-pixel mean (``init="mean"``), or fills the user computed beforehand,
  e.g. k-NN fills (``init="knn"``, see `train_denoising_autoencoder`'s
  ``prefilled``);
* the hole's clean content plus Gaussian noise of a scale drawn
  log-uniformly from ``noise_scales`` (the states between a start and the
  data: as in noise-conditional score models, several scales make the field
  informative far from the data as well as near it);
* the hole set to zero or blurred;

then Gaussian noise of std ``noise`` everywhere, the classical denoising
corruption. The loss compares the reconstruction of the corrupted image
with the clean image on every entry.
"""

import itertools
import numbers

import keras
import numpy as np
import tensorflow as tf

from sparselayers.distribute import streaming
from sparselayers.layers.image_and_mask import check_positive_int

__all__ = ["HoleCorruption", "random_squares", "train_denoising_autoencoder", "DEFAULT_FILLS"]

# The share of training samples whose hole gets each fill (normalised over the
# fills used: without prefilled images, the other five). Chosen on MNIST's
# held-out validation images (benchmarks/RESULTS.md, Table 1).
DEFAULT_FILLS = {"noise": 0.35, "mean": 0.1, "noisy": 0.2, "zero": 0.05, "blur": 0.05,
                 "prefilled": 0.25}
_FILL_NAMES = ("noise", "mean", "noisy", "zero", "blur", "prefilled")


def random_squares(batch, height, width, smallest, largest, seed=None):
    """bool (batch, height, width, 1): True inside a square of random side and place.

    The side is uniform in [smallest, largest] (clipped to the image), the
    place uniform over the positions where the square fits.

    Args:
        batch: the number of images (an int or a scalar tensor).
        height, width: the image's size.
        smallest, largest: the range of sides, ints >= 1.
        seed: None, a `keras.random.SeedGenerator` or a `tf.random.Generator`
            (reproducible draws; the latter inside `tf.data` pipelines).
    """
    if isinstance(seed, tf.random.Generator):
        def uniform(shape):
            return seed.uniform(shape)
    else:
        def uniform(shape):
            return keras.random.uniform(shape, seed=seed)
    shape = [batch, 1, 1, 1]
    side = smallest + tf.cast(uniform(shape) * (largest - smallest + 1), tf.int32)
    side = tf.minimum(side, min(height, width))
    top = tf.cast(uniform(shape) * tf.cast(height - side + 1, tf.float32), tf.int32)
    left = tf.cast(uniform(shape) * tf.cast(width - side + 1, tf.float32), tf.int32)
    rows = tf.range(height)[None, :, None, None]
    cols = tf.range(width)[None, None, :, None]
    return (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)


def _gaussian_kernel(channels, sigma=1.5, radius=3):
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = np.outer(taps, taps) / np.outer(taps, taps).sum()
    # Depthwise: (7, 7, channels, 1), each channel blurred on its own.
    return np.repeat(kernel[:, :, None, None], channels, axis=2).astype("float32")


@keras.saving.register_keras_serializable(package="imputers")
class HoleCorruption(keras.layers.Layer):
    """The training-time corruption of `train_denoising_autoencoder`.

    Takes clean images (batch, height, width, channels), or a pair ``(clean,
    prefilled)`` where ``prefilled`` holds the same images with a hole
    already filled by the user (k-NN fills, say). At training time each
    sample gets a hole (a square, side uniform in `hole_sides`) filled by
    one of `fills` (a dict name -> weight), then Gaussian noise of std
    `noise` everywhere. Without ``training`` it returns the clean images.

    Fills: ``noise`` (uniform over [low, high], `value_range` or the batch's
    range, as `noise_fill`), ``mean`` (the per-pixel mean of the batch's
    clean images, an estimate of the training mean `mean_fill` uses),
    ``noisy`` (the clean content plus Gaussian noise, the scale drawn
    log-uniformly in `noise_scales` per sample), ``zero``, ``blur`` (a
    Gaussian blur, sigma 1.5, of the clean content), ``prefilled`` (the
    given image as it is: its own hole and fill).
    """

    def __init__(self, fills=None, hole_sides=(5, 15), noise_scales=(0.02, 0.5), noise=0.05,
                 value_range=None, seed=None, **kwargs):
        super().__init__(**kwargs)
        self.fills = _check_fills(DEFAULT_FILLS if fills is None else fills)
        self.hole_sides = _check_range(hole_sides, "hole_sides", integer=True)
        self.noise_scales = _check_range(noise_scales, "noise_scales")
        self.noise = _check_rate(noise, "noise", allow_zero=True)
        self.value_range = (None if value_range is None
                            else _check_range(value_range, "value_range", positive=False))
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        if isinstance(inputs, (list, tuple)):
            clean, prefilled = inputs
        else:
            clean, prefilled = inputs, None
        clean = tf.cast(clean, tf.float32)
        if not training:
            return clean
        if clean.shape.rank != 4:
            raise ValueError("HoleCorruption takes images (batch, height, width, channels); "
                             f"received shape {clean.shape}.")
        batch = tf.shape(clean)[0]
        height, width, channels = clean.shape[1], clean.shape[2], clean.shape[3]
        names = [name for name in _FILL_NAMES if self.fills.get(name, 0) > 0]
        if prefilled is None:
            names = [name for name in names if name != "prefilled"]
        weights = np.array([self.fills[name] for name in names], np.float64)
        bounds = tf.constant(np.cumsum(weights / weights.sum())[:-1], tf.float32)
        pick = tf.searchsorted(bounds, keras.random.uniform([batch], seed=self.seed_generator),
                               side="right")  # (batch,): index into names
        pick = tf.reshape(pick, [-1, 1, 1, 1])

        low, high = self.value_range or (tf.reduce_min(clean), tf.reduce_max(clean))
        candidates = {
            "noise": low + (high - low) * keras.random.uniform(tf.shape(clean),
                                                               seed=self.seed_generator),
            "mean": tf.broadcast_to(tf.reduce_mean(clean, 0, keepdims=True), tf.shape(clean)),
            "zero": tf.zeros_like(clean),
        }
        if "noisy" in names:
            low_scale, high_scale = np.log(self.noise_scales)
            scale = tf.exp(keras.random.uniform([batch, 1, 1, 1], low_scale, high_scale,
                                                seed=self.seed_generator))
            candidates["noisy"] = clean + scale * keras.random.normal(
                tf.shape(clean), seed=self.seed_generator)
        if "blur" in names:
            candidates["blur"] = tf.nn.depthwise_conv2d(
                clean, _gaussian_kernel(channels), [1, 1, 1, 1], "SAME")
        inside = random_squares(batch, height, width, *self.hole_sides, seed=self.seed_generator)
        corrupted = clean
        for index, name in enumerate(names):
            if name == "prefilled":
                chosen = tf.cast(prefilled, tf.float32)
            else:
                chosen = tf.where(inside, candidates[name], clean)
            corrupted = tf.where(tf.equal(pick, index), chosen, corrupted)
        if self.noise > 0:
            corrupted = corrupted + self.noise * keras.random.normal(tf.shape(clean),
                                                                     seed=self.seed_generator)
        return corrupted

    def compute_output_shape(self, input_shape):
        return input_shape[0] if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)) else input_shape

    def get_config(self):
        config = super().get_config()
        config.update(fills=dict(self.fills), hole_sides=self.hole_sides,
                      noise_scales=self.noise_scales, noise=self.noise,
                      value_range=self.value_range, seed=self.seed)
        return config


def _check_fills(fills):
    if not isinstance(fills, dict) or not fills:
        raise ValueError(f"fills must be a non-empty dict of fill name -> weight; received {fills!r}.")
    for name, weight in fills.items():
        if name not in _FILL_NAMES:
            raise ValueError(f"Unknown fill {name!r}; the fills are {', '.join(_FILL_NAMES)}.")
        if (isinstance(weight, bool) or not isinstance(weight, numbers.Real)
                or not np.isfinite(weight) or weight < 0):
            raise ValueError(f"fills[{name!r}] must be a finite weight >= 0; received {weight!r}.")
    if sum(fills.values()) <= 0:
        raise ValueError(f"fills must give some fill a positive weight; received {fills!r}.")
    return {name: float(weight) for name, weight in fills.items()}


def _check_rate(value, name, allow_zero=False):
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value)
            or value < 0 or (value == 0 and not allow_zero)):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}; received {value!r}.")
    return float(value)


def _check_range(pair, name, integer=False, positive=True):
    """A (low, high) pair with low <= high (ints >= 1, or finite > 0 unless not `positive`)."""
    if not isinstance(pair, (list, tuple)) or len(pair) != 2:
        raise ValueError(f"{name} must be a (low, high) pair; received {pair!r}.")
    for value in pair:
        if integer:
            check_positive_int(value, name)
        elif positive:
            _check_rate(value, name)
        elif (isinstance(value, bool) or not isinstance(value, numbers.Real)
              or not np.isfinite(value)):
            raise ValueError(f"{name} must hold finite numbers; received {pair!r}.")
    if pair[0] > pair[1] or (not positive and pair[0] == pair[1]):
        raise ValueError(f"{name} must be (low, high) with low < high; received {pair!r}.")
    return (int(pair[0]), int(pair[1])) if integer else (float(pair[0]), float(pair[1]))


def _training_batches(images, prefilled, batch_size, seed):
    """(dataset of (inputs, clean) batches, its length in batches or None)."""
    if streaming.is_stream(images, "train_denoising_autoencoder"):
        if prefilled is not None:
            raise ValueError("train_denoising_autoencoder: with a stream of batches, give the "
                             "prefilled images in the stream, as (clean, prefilled) pairs.")
        if not isinstance(images, tf.data.Dataset):  # an iterator of batches: read once
            batches = images
            first = next(batches)
            signature = tf.nest.map_structure(
                lambda part: tf.TensorSpec((None,) + np.shape(part)[1:], tf.float32), first)
            images = tf.data.Dataset.from_generator(
                lambda: itertools.chain([first], batches), output_signature=signature)
        length = int(images.cardinality())  # < 0: endless or unknown
        return images.map(_pair_with_target), (length if length > 0 else None)
    images = np.asarray(images, np.float32)
    if images.ndim != 4 or len(images) == 0:
        raise ValueError("train_denoising_autoencoder: images must be a batch (n, height, width, "
                         f"channels); received shape {images.shape}.")
    finite = np.isfinite(images.reshape(len(images), -1)).all(axis=1)
    if not finite.all():
        raise ValueError(f"train_denoising_autoencoder: training image {int(np.argmin(finite))} "
                         "holds NaN or Inf; training images must be complete.")
    tensors = images
    if prefilled is not None:
        prefilled = np.asarray(prefilled, np.float32)
        if prefilled.shape != images.shape:
            raise ValueError(f"prefilled has shape {prefilled.shape}; it must match the images' "
                             f"{images.shape}.")
        finite = np.isfinite(prefilled.reshape(len(prefilled), -1)).all(axis=1)
        if not finite.all():
            raise ValueError(f"prefilled image {int(np.argmin(finite))} holds NaN or Inf.")
        tensors = (images, prefilled)
    dataset = tf.data.Dataset.from_tensor_slices(tensors).shuffle(
        min(len(images), 1 << 16), seed=seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).map(_pair_with_target).prefetch(2), -(-len(images) // batch_size)


def _pair_with_target(*parts):
    """(inputs, target): the inputs as given (clean, or (clean, prefilled)), the clean images."""
    return (parts if len(parts) > 1 else parts[0]), parts[0]


def train_denoising_autoencoder(model, images, prefilled=None, epochs=10, batch_size=128,
                                steps_per_epoch=None, fills=None, hole_sides=(5, 15),
                                noise_scales=(0.02, 0.5), noise=0.05, value_range=None,
                                loss="mse", learning_rate=1e-3, final_learning_rate=1e-4,
                                seed=0, verbose=1):
    """Trains `model` as a denoising auto-encoder whose ascent works from any start.

    The model learns to return the clean image from a corrupted one (see the
    module docstring and `HoleCorruption`): holes filled with noise, the
    mean, the user's own fills (e.g. k-NN), the clean content plus noise at
    several scales, zero or a blur; then light Gaussian noise everywhere.
    Adam, the learning rate decaying exponentially from `learning_rate` to
    `final_learning_rate` over the run. The model's weights are trained in
    place; its own compile state is left as it was.

    Args:
        model: a Keras model mapping (batch, height, width, channels) images
            to reconstructions of the same shape.
        images: complete training images, an array (n, height, width,
            channels), or a `tf.data.Dataset` of batches of them (or of
            ``(clean, prefilled)`` batch pairs), streamed.
        prefilled: None, or an array of the images with a hole filled as an
            initialisation would fill it (k-NN fills of a random patch, say);
            used for the ``prefilled`` share of samples.
        epochs: passes over `images` (or over `steps_per_epoch` batches).
        batch_size: for arrays.
        steps_per_epoch: batches per epoch; needed for a dataset of unknown
            length (an endless one).
        fills: dict of fill name -> weight (`DEFAULT_FILLS`); names:
            ``noise``, ``mean``, ``noisy``, ``zero``, ``blur``, ``prefilled``.
        hole_sides: (smallest, largest) side of the square holes; cover the
            holes you will impute.
        noise_scales: (smallest, largest) std of the ``noisy`` fill's noise.
        noise: std of the Gaussian noise added everywhere (0: none).
        value_range: (low, high) of the ``noise`` fill; default the batch's.
        loss: a Keras loss (``"mse"``; ``"binary_crossentropy"`` for a
            sigmoid output and images in [0, 1]).
        learning_rate, final_learning_rate: Adam's first and last rate.
        seed: of the corruptions and the shuffling.
        verbose: 1 shows Keras' progress bar, 2 one line per epoch, 0 nothing.

    Returns:
        The Keras `History` of the training.

    Example:

    ```python
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(64, activation="sigmoid"),
                              keras.layers.Reshape((8, 8, 1))])
    imputers.train_denoising_autoencoder(model, images, epochs=20, hole_sides=(2, 4),
                                         loss="binary_crossentropy", verbose=0)
    imputed = imputers.vector_field_ascent(model, sparse, mask, init="noise")
    ```
    """
    if not isinstance(model, keras.Model):
        raise ValueError(f"train_denoising_autoencoder trains a Keras model; received "
                         f"{type(model).__name__}.")
    check_positive_int(epochs, "epochs")
    check_positive_int(batch_size, "batch_size")
    if steps_per_epoch is not None:
        check_positive_int(steps_per_epoch, "steps_per_epoch")
    _check_rate(learning_rate, "learning_rate")
    _check_rate(final_learning_rate, "final_learning_rate")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an int >= 0; received {seed!r}.")
    corruption = HoleCorruption(fills, hole_sides, noise_scales, noise, value_range, int(seed))
    dataset, length = _training_batches(images, prefilled, batch_size, int(seed))
    steps = steps_per_epoch or length
    if steps is None:
        raise ValueError("train_denoising_autoencoder: give steps_per_epoch for a dataset "
                         "(its length is unknown).")
    inputs_spec = dataset.element_spec[0]
    if (fills is not None and corruption.fills.get("prefilled", 0) > 0
            and not isinstance(inputs_spec, tuple)):
        raise ValueError("fills gives 'prefilled' a weight, but no prefilled images were given.")
    if isinstance(inputs_spec, tuple):
        inputs = [keras.Input(spec.shape[1:]) for spec in inputs_spec]
    else:
        inputs = keras.Input(inputs_spec.shape[1:])
    corrupted = corruption(inputs)
    trainer = keras.Model(inputs, model(corrupted), name="denoising_trainer")
    schedule = keras.optimizers.schedules.ExponentialDecay(
        learning_rate, max(1, epochs * steps), final_learning_rate / learning_rate)
    trainer.compile(keras.optimizers.Adam(schedule), loss)
    return trainer.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch,
                       verbose=verbose, shuffle=False)
