"""Choosing, per image, among several imputations by the auto-encoder's fit to
the observed entries.

The ascent's end point depends on its start: on MNIST's 13x13 patches the
best of four k-NN starts (the means of the 3, 5, 8 and 12 nearest images)
per image would score 0.866 SSIM on validation images where each start alone
scores 0.847-0.848, and this selection 0.852 (`benchmarks/RESULTS.md`, paper
Table 1). Without the truth the auto-encoder itself can tell the candidates
apart: its reconstruction r(x) is a function of the whole image, so a
filling of the missing entries that does not belong with the observed ones
makes the reconstruction of the observed ones worse.
`select_by_observed_fit` keeps, per image, the candidate x whose r(x) is
closest to x on the observed entries -- a choice made by the model alone,
which any user can make. (Choosing by the ascent's own residual |r(x) - x|
on the missing entries, "closest to a mode", chose worse than a single
start there.)
"""

import numpy as np
import tensorflow as tf

from imputers import autoencoder as autoencoder_lib
from imputers import vector_field
from sparselayers.layers.image_and_mask import check_positive_int

__all__ = ["observed_fit", "select_by_observed_fit", "CRITERIA"]

# Per observed entry, the discrepancy of the reconstruction r from the value x.
CRITERIA = ("squared_error", "cross_entropy")

# Keras' epsilon: the reconstruction is clipped to [EPSILON, 1 - EPSILON] for
# the cross-entropy, as `keras.losses.binary_crossentropy` does.
EPSILON = 1e-7


def observed_fit(autoencoder, candidates, mask, *, criterion="squared_error",
                 batch_size=256):
    """The auto-encoder's misfit on the observed entries, per candidate and image.

    Args:
        autoencoder: a trained Keras model, callable or (encoder, decoder)
            pair, as for `vector_field_ascent`.
        candidates: imputations of the same images, (n_candidates, batch,
            *shape) or a list of n_candidates arrays (batch, *shape); finite,
            equal to each other at the observed entries.
        mask: 1 where observed (bool, or float > 0.5), of an image batch's
            shape or with 1 channel.
        criterion: "squared_error" ((r - x)^2) or "cross_entropy" (binary
            cross-entropy of r against x; images in [0, 1], e.g. an
            auto-encoder trained with it and a sigmoid output).
        batch_size: images per call of the auto-encoder.

    Returns:
        float64 (n_candidates, batch): the criterion's mean over each image's
        observed entries (0 for an image with none).

    Example:

    >>> misfit = observed_fit(model, np.stack([imputed_a, imputed_b]), mask)
    """
    candidates, observed = _check(candidates, mask, criterion)
    batch_size = check_positive_int(batch_size, "batch_size")
    reconstruct, _ = autoencoder_lib.reconstruction_function(autoencoder)
    autoencoder_lib.check_reconstruction_shape(reconstruct, candidates[0])
    count = observed.reshape(len(observed), -1).sum(axis=1)           # (batch,)
    misfit = np.zeros(candidates.shape[:2])
    for index, candidate in enumerate(candidates):
        for start in range(0, candidate.shape[0], batch_size):
            part = slice(start, start + batch_size)
            x = candidate[part].astype(np.float64)
            r = reconstruct(tf.constant(candidate[part])).numpy().astype(np.float64)
            if criterion == "cross_entropy":
                r = np.clip(r, EPSILON, 1 - EPSILON)
                loss = -(x * np.log(r) + (1 - x) * np.log(1 - r))
            else:
                loss = (r - x) ** 2
            loss = np.where(observed[part], loss, 0.0).reshape(len(x), -1).sum(axis=1)
            misfit[index, part] = loss / np.maximum(count[part], 1)
    return misfit


def select_by_observed_fit(autoencoder, candidates, mask, *, criterion="squared_error",
                           batch_size=256, return_index=False):
    """Per image, the candidate imputation the auto-encoder fits best where observed.

    Args:
        autoencoder, candidates, mask, criterion, batch_size: as for
            `observed_fit`.
        return_index: also return which candidate was kept per image.

    Returns:
        The kept imputations (batch, *shape), float32, observed entries as in
        the candidates; with `return_index`, ``(imputed, index)``, index int64
        (batch,). Ties (e.g. an image with no observed entry) keep the first.

    Example:

    >>> starts = [vector_field_ascent(model, x, mask, step_size=0.3, max_steps=10,
    ...                               init="knn", reference=x_train, k=k)
    ...           for k in (3, 5, 8, 12)]
    >>> imputed = select_by_observed_fit(model, starts, mask, criterion="cross_entropy")
    """
    misfit = observed_fit(autoencoder, candidates, mask, criterion=criterion,
                          batch_size=batch_size)
    candidates = np.asarray(candidates, np.float32)
    index = np.argmin(misfit, axis=0)
    imputed = candidates[index, np.arange(candidates.shape[1])]
    return (imputed, index) if return_index else imputed


def _check(candidates, mask, criterion):
    """float32 candidates (n, batch, *shape) and a bool observed mask (batch, *shape)."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; received {criterion!r}.")
    if isinstance(candidates, (list, tuple)):
        shapes = {np.shape(candidate) for candidate in candidates}
        if len(shapes) > 1:
            raise ValueError(f"The candidates must have one shape; received shapes "
                             f"{sorted(shapes)}.")
    candidates = np.asarray(candidates, np.float32)
    if candidates.ndim < 3 or candidates.shape[0] == 0:
        raise ValueError("candidates must be (n_candidates >= 1, batch, *shape); received "
                         f"shape {candidates.shape}.")
    shape = candidates.shape[1:]
    _, observed = vector_field.check_images_and_mask(candidates[0], mask,
                                                     "select_by_observed_fit")
    finite = np.isfinite(candidates).reshape(candidates.shape[0], shape[0], -1).all(axis=2)
    if not finite.all():
        candidate, sample = np.argwhere(~finite)[0]
        raise ValueError(f"Candidate {candidate} holds NaN or Inf at sample {sample}: "
                         "candidates are complete imputations.")
    differs = (candidates != candidates[:1]) & observed
    if differs.any():
        candidate, sample = np.argwhere(
            differs.reshape(candidates.shape[0], shape[0], -1).any(axis=2))[0]
        raise ValueError(f"Candidate {candidate} differs from candidate 0 at an observed "
                         f"entry of sample {sample}: candidates must impute the same images.")
    if criterion == "cross_entropy" and (candidates.min() < 0 or candidates.max() > 1):
        raise ValueError("criterion='cross_entropy' needs images in [0, 1]; the candidates "
                         f"range over [{candidates.min():g}, {candidates.max():g}].")
    return candidates, observed
