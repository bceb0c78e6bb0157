"""How much better than interpolation the model is on the user's own scans.

No ground truth exists for a clinical scan's missing slices, but its acquired
slices are fully known 2-D images, degraded during training exactly as the
scan was acquired (`training.sample_patches`). A share of each volume's
acquired slices (`held_out_slices`, evenly spread, never trained on) is
kept aside; after training, each held-out slice is degraded the same way,
along its rows and along its columns, at every row offset (point samples)
or at three sub-row offsets (thick slices), and both the model and linear
interpolation fill it in, the model as a volume is imputed (the mean of the
cut and its mirror image; for thick slices made consistent with the
slices, `slice_profile.project_onto_slices`). Their mean squared errors on the scored voxels
(hidden rows, or every row between the first and last slice centres for
thick slices; voxels above `training.FOREGROUND` only, the head) give the
"expected improvement over interpolation on these scans": per input and
over all of them (every scored voxel counted once).

This estimates the error of a cut through the acquisition axis from in-plane
slices; brains being roughly isotropic, the two are alike (the premise of
the self-supervised training itself). `benchmarks/self_validation.py`
measures how closely the estimate tracks the true improvement.

Example:

>>> held_out = held_out_slices(45, 0.1)          # 4 of 45 acquired slices
>>> result = validate(model, [stack[held_out]], [sampling])
>>> result["overall"]["improvement"]
0.31
"""

import numpy as np

from sparselayers.layers.fill_missing import interpolate_along
from sparselayers.mri import slice_profile
from sparselayers.mri import volume_io
from sparselayers.mri.imputation import cut_predictor
from sparselayers.mri.training import FOREGROUND
from sparselayers.mri.training import row_sampling

__all__ = ["held_out_slices", "validate", "degrade", "summary_line", "write_json", "THICK_OFFSETS",
           "FILE_NAME"]

FILE_NAME = "self_validation.json"

# Sub-row offsets of the first slice centre, as fractions of the spacing.
THICK_OFFSETS = (1 / 6, 1 / 2, 5 / 6)


def held_out_slices(count, share):
    """Indices of the acquired slices kept out of training, evenly spread.

    ``share * count`` of them (rounded half up), at least one when `share` > 0, none
    when that would leave fewer than two slices to train on.

    Args:
        count: the volume's acquired slices.
        share: a float in [0, 0.5].

    Returns:
        int array, sorted.
    """
    if not (isinstance(share, (int, float, np.floating)) and not isinstance(share, bool)
            and 0 <= share <= 0.5):
        raise ValueError(f"--validation-share must be a number in [0, 0.5]; received "
                         f"{share!r}.")
    held = 0 if share == 0 else max(1, int(np.floor(share * count + 0.5)))
    if count - held < 2:
        return np.zeros(0, int)
    return ((np.arange(held) + 0.5) * count / held).astype(int)


def degrade(truth, sampling):
    """(image, mask, scored, baseline, projections): one slice degraded as acquired.

    `truth` (L, W) is degraded along its first axis, at every offset.

    Batches (offsets, L, W); `projections` is None for point samples, else
    per offset the (acquired slices (K, W), forward weights (K, L)) that the
    output is made consistent with, as `imputation.restore_volume` does.
    """
    length = truth.shape[0]
    images, masks, scored, baselines, projections = [], [], [], [], []
    if sampling.profile.kind == "point":
        every = int(sampling.spacing)
        for offset in range(every):
            mask = np.zeros(truth.shape, np.float32)
            mask[offset::every] = 1.0
            images.append(np.where(mask > 0, truth, 0.0))
            masks.append(mask)
            scored.append(mask == 0)
        interpolated = interpolate_along(np.stack(images)[..., None],
                                         np.stack(masks)[..., None] > 0,
                                         axis=1).numpy()[..., 0]
        baselines = list(interpolated)
        projections = None
    else:
        margin = int(np.ceil(sampling.profile.reach() + sampling.spacing))
        for fraction in THICK_OFFSETS:
            upsampled, slices, centres = slice_profile.simulate_rows(
                truth, sampling.profile, sampling.spacing, fraction * sampling.spacing)
            rows = np.arange(length)
            inside = ((rows >= max(centres[0], margin)) & (rows <= min(centres[-1],
                                                                       length - 1 - margin)))
            images.append(upsampled)
            masks.append(np.broadcast_to(slice_profile.row_mask(centres, length)[:, None],
                                         truth.shape))
            scored.append(np.broadcast_to(inside[:, None], truth.shape))
            baselines.append(upsampled)
            projections.append((slices.astype(np.float32),
                                slice_profile.forward_matrix(sampling.profile, centres, length)))
    return (np.stack(images).astype(np.float32), np.stack(masks).astype(np.float32),
            np.stack(scored), np.stack(baselines), projections)


def validate(model, held_out, samplings):
    """The model's and linear interpolation's errors on held-out acquired slices.

    Args:
        model: the trained model, ``[image, mask] -> image``.
        held_out: one (k, P, Q) stack of normalised held-out slices per
            input (k may be 0), resampled as the training slices are.
        samplings: each input's `training.RowSampling` (or n).

    Returns:
        dict with ``"inputs"``: one dict per input (None where nothing was
        held out) and ``"overall"``: each with ``model_mse``, ``linear_mse``,
        ``improvement`` (1 - model / linear), ``slices`` and ``voxels``.
    """
    # Every cut padded to one square size: one trace of the model's call.
    side = max([max(np.shape(stack)[1:]) for stack in held_out if len(stack)] or [1])
    predict = cut_predictor(model, size=(side, side))
    results, model_total, linear_total, voxels_total, slices_total = [], 0.0, 0.0, 0, 0
    for stack, sampling in zip(held_out, samplings):
        sampling = row_sampling(sampling)
        model_error, linear_error, voxels = 0.0, 0.0, 0
        for truth in np.asarray(stack, np.float32):
            for oriented in (truth, truth.T):
                if oriented.shape[0] < 2 * sampling.spacing + 1:
                    continue
                images, masks, scored, baselines, projections = degrade(oriented, sampling)
                # As the volume is imputed: the mean of the cut and its mirror
                # image, and for thick slices consistent with the slices.
                predicted = 0.5 * (predict(images, masks)
                                   + predict(images[:, :, ::-1], masks[:, :, ::-1])[:, :, ::-1])
                if projections is not None:
                    predicted = np.stack([
                        slice_profile.project_onto_slices(cut, slices, weights)
                        for cut, (slices, weights) in zip(predicted, projections)])
                scored = scored & (oriented[None] > FOREGROUND)
                model_error += float(np.sum((predicted - oriented)[scored] ** 2))
                linear_error += float(np.sum((baselines - oriented)[scored] ** 2))
                voxels += int(np.count_nonzero(scored))
        results.append(_scores(model_error, linear_error, voxels, len(stack)))
        model_total += model_error
        linear_total += linear_error
        voxels_total += voxels
        slices_total += len(stack)
    return {"inputs": results,
            "overall": _scores(model_total, linear_total, voxels_total, slices_total)}


def _scores(model_error, linear_error, voxels, slices):
    if voxels == 0:
        return None
    model_mse, linear_mse = model_error / voxels, linear_error / voxels
    return {"model_mse": model_mse, "linear_mse": linear_mse,
            "improvement": 1.0 - model_mse / linear_mse if linear_mse > 0 else 0.0,
            "slices": int(slices), "voxels": int(voxels)}


def summary_line(scores):
    """One line for the log and the report, e.g. ``-31.2% MSE vs linear interpolation``."""
    if scores is None:
        return "no held-out slices (--validation-share 0, or too few acquired slices)"
    return (f"{-100 * scores['improvement']:+.1f}% MSE vs linear interpolation "
            f"({scores['model_mse']:.3g} vs {scores['linear_mse']:.3g}, normalised units; "
            f"{scores['slices']} held-out slices, {scores['voxels']} voxels)")


def write_json(path, result, names, calibrations=None):
    """Writes `validate`'s result, each input under its name, atomically.

    `calibrations`: per input, a sparse VAE's `calibration.Calibration` (or
    None), written under ``"std_calibration"``.
    """
    content = {"method": "held-out acquired slices, degraded as acquired; MSE in normalised "
                         "units on voxels above the foreground threshold",
               "overall": result["overall"],
               "inputs": {str(name): scores for name, scores in zip(names, result["inputs"])}}
    if calibrations is not None and any(c is not None for c in calibrations):
        content["std_calibration"] = {
            str(name): None if calibration is None else calibration.as_dict()
            for name, calibration in zip(names, calibrations)}
    volume_io.write_json(path, content)
