"""VectorFieldImputer: an auto-encoder, reference data and settings, kept together."""

import keras
import numpy as np
import tensorflow as tf

from imputers import initialization
from imputers import vector_field as ascent_lib
from sparselayers.distribute import streaming

__all__ = ["VectorFieldImputer"]


class VectorFieldImputer:
    """Holds an auto-encoder and reference data for repeated imputation.

    Args:
        autoencoder: a trained Keras model (or callable), or (encoder, decoder).
        step_size, max_steps, tol, init, k, jit_compile: as in
            `imputers.vector_field_ascent`.

    Example:

    >>> imputer = VectorFieldImputer(model, step_size=0.1, max_steps=200, init="knn")
    >>> imputer.fit(x_train)
    >>> imputed = imputer.impute(x_test, mask_test)
    >>> imputer.export("imputer_savedmodel")   # serving signature: image, mask -> imputed
    """

    def __init__(self, autoencoder, *, step_size=0.1, max_steps=100, tol=None, init="mean",
                 k=5, jit_compile=False):
        ascent_lib.check_ascent_arguments(step_size, max_steps, tol, k)
        self.autoencoder = autoencoder
        self.step_size = float(step_size)
        self.max_steps = int(max_steps)
        self.tol = tol
        self.init = init
        self.k = int(k)
        self.jit_compile = jit_compile
        self.reference = None
        self._compiled, self._encoder = ascent_lib.compiled_ascent_for(autoencoder)

    def fit(self, reference):
        """Stores complete reference images (n, *shape) for mean and k-NN init.

        Returns:
            self.
        """
        reference = initialization.check_reference_images(reference, "VectorFieldImputer.fit")
        if isinstance(self.init, str) and self.init == "knn" and self.k > len(reference):
            raise ValueError(f"k={self.k} is larger than the reference set ({len(reference)}).")
        self.reference = reference
        return self

    def impute(self, x, mask, *, seed=None, num_imputations=1, return_trajectory=False,
               return_steps=False, batch_size=None, verbose=0):
        """Imputes x's missing entries; see `imputers.vector_field_ascent`.

        `x` may be a `tf.data.Dataset` or iterator of ``(image, mask)``
        batches (with ``mask=None``): the result is then a generator of
        per-batch results.
        """
        if streaming.is_stream(x, "VectorFieldImputer.impute"):
            return streaming.map_batches(
                lambda images, masks, batch_seed: self.impute(
                    images, masks, seed=batch_seed, num_imputations=num_imputations,
                    return_trajectory=return_trajectory, return_steps=return_steps,
                    batch_size=batch_size, verbose=verbose),
                x, mask, "VectorFieldImputer.impute", seed)
        x, observed = ascent_lib.check_images_and_mask(x, mask, "VectorFieldImputer.impute")
        reference = ascent_lib.check_reference(self.reference, x, self.k, self.init)
        return ascent_lib.run_ascent(
            self._compiled, self._encoder, x, observed, step_size=self.step_size,
            max_steps=self.max_steps, tol=self.tol, init=self.init, reference=reference,
            k=self.k, seed=seed, num_imputations=num_imputations,
            return_trajectory=return_trajectory, return_steps=return_steps,
            batch_size=batch_size, jit_compile=self.jit_compile, verbose=verbose,
        )

    def export(self, path, image_shape=None, seed=0):
        """Writes a SavedModel whose serving signature runs the whole ascent.

        The ``serving_default`` signature takes float32 inputs ``image``
        (batch, *shape) and ``mask`` (same shape, 1 = observed) and returns
        ``imputed`` (observed entries bit-exact) and ``diverged`` (bool,
        (batch,): True where the ascent reached NaN or Inf; such a sample's
        ``imputed`` is its last finite state). Mean and k-NN initialisation use the fitted reference
        (stored in the SavedModel as a constant; without one, "mean" uses the
        request batch's observed mean); "noise" uses `seed`. The loop
        is exported without XLA (TF Serving's GPU build rejects XLA functions).
        Load with `tf.saved_model.load(path)` alone: no project import needed.

        Args:
            path: output directory.
            image_shape: shape of one image; default: the reference's, else the
                model's input shape.
            seed: seed of the noise initialisation.
        """
        models = self.autoencoder if isinstance(self.autoencoder, (tuple, list)) else [
            self.autoencoder
        ]
        if not all(isinstance(model, keras.layers.Layer) for model in models):
            raise ValueError("export() needs Keras models (or an (encoder, decoder) pair of them).")
        if image_shape is None:
            if self.reference is not None:
                image_shape = self.reference.shape[1:]
            else:
                image_shape = tuple(models[0].input_shape[1:])
        image_shape = tuple(image_shape)
        if not isinstance(self.init, str):
            raise ValueError("export() supports init 'mean', 'knn', 'noise' or 'zeros'.")
        if self.init == "knn" and self.reference is None:
            raise ValueError("export() with init='knn' needs fit(reference) first.")
        reference = None if self.reference is None else tf.constant(self.reference)
        init, k = self.init, self.k
        settings = (
            tf.constant(self.step_size, tf.float32), tf.constant(self.max_steps, tf.int32),
            tf.constant(-1.0 if self.tol is None else self.tol, tf.float32),
        )
        ascent = self._compiled.function(record_trajectory=False, jit_compile=False)

        def serve(image, mask):
            observed = mask > 0.5
            filled = initialization.initial_fill(init, image, observed, reference, k, seed)
            imputed, _, _, diverged = ascent(filled, observed, *settings)
            return {"imputed": tf.where(observed, image, imputed), "diverged": diverged}

        archive = keras.export.ExportArchive()
        for model in models:
            archive.track(model)
        archive.add_endpoint(
            name="serve",
            fn=serve,
            input_signature=[
                tf.TensorSpec((None,) + image_shape, tf.float32, name="image"),
                tf.TensorSpec((None,) + image_shape, tf.float32, name="mask"),
            ],
        )
        archive.write_out(str(path), verbose=False)
