"""The thick-slice workflow on files: `impute_slices`, the Python form of the command.

Reads a collection of volumes, each acquired every n-th slice (missing slices
stored as zero/constant slices, or thick voxels in the header), trains one
model on all their acquired slices, and writes every input filled in (see
`sparselayers.mri.cli` for the outputs).

Example:

>>> outputs = impute_slices(["scans/"], "imputed/")
>>> outputs["scans/sub-01_T1w.nii.gz"]
'imputed/sub-01_T1w_imputed.nii.gz'
"""

import os

import keras
import numpy as np

from sparselayers import console
from sparselayers.models import variants
from sparselayers.models.sparse_vae import SparseVAE
from sparselayers.mri import imputation
from sparselayers.mri import intensity
from sparselayers.mri import model_checks
from sparselayers.mri import montage as montage_module
from sparselayers.mri import training
from sparselayers.mri import training_backup
from sparselayers.mri import volume_io
from sparselayers.mri.inputs import PreparedVolume
from sparselayers.mri.inputs import SliceStacks
from sparselayers.mri.inputs import check_output_names
from sparselayers.mri.inputs import list_inputs
from sparselayers.mri.inputs import output_paths
from sparselayers.mri.inputs import spread_path
from sparselayers.mri.options import check_options
from sparselayers.mri.options import check_out_folder
from sparselayers.mri.options import check_training

__all__ = ["impute_slices", "train"]

BACKUP_FOLDER = "training_backup"
VARIANTS = ("conv-interp-residual", "conv-interp-residual-vae")


def impute_slices(inputs, out, axis=None, every=None, key=None, model=None, steps=None,
                  steps_per_epoch=100, resume=False, variant="conv-interp-residual", samples=10,
                  filters=32, patch_size=48, batch_size=16,
                  learning_rate=1e-3, seed=0, montage=True, verbose=1, slice_profile=None,
                  slice_thickness=None, resolution=None):
    """Trains on a collection of thick-slice volumes and writes them filled in.

    The Python form of ``sparselayers-impute-slices`` (see the module
    docstring for the outputs); arguments as its options.

    Args:
        inputs: volume files or folders.
        out: output folder (created).
        axis: None (detect), 0/1/2, or "sagittal"/"coronal"/"axial".
        every: n, or None (detect).
        model: a `keras.Model`, a ``.keras`` path, or None (a new `variant`
            with `filters` channels).
        variant: "conv-interp-residual" or "conv-interp-residual-vae".
        samples: posterior draws per cut when the model is a `SparseVAE`.
        steps: training steps; default 3000 for a new model, 0 for a given one.
        seed: of the training patches and, for a new model, of its initial
            weights (`keras.utils.set_random_seed`, which seeds Python's,
            NumPy's and TensorFlow's global generators): the same seed and
            inputs give the same model and output on the same machine.
        resume: continue a stopped training from ``out/training_backup``
            (`training_backup`); it ends as an uninterrupted run would.
        slice_profile: "point", "box" or "gaussian"; None: "box" for thick
            voxels in the header, "point" for missing slices stored as zero
            slices (`sparselayers.mri.slice_profile`).
        slice_thickness: mm (box width or Gaussian FWHM); None: the JSON
            sidecar's ``SliceThickness`` if there is one, else the spacing.
        resolution: mm, the output voxel size along the acquisition axis of
            a thick-slice file with a box or Gaussian profile; None: the
            finest in-plane voxel size.

    Returns:
        dict: input path -> imputed volume path.
    """
    check_options(steps=steps, steps_per_epoch=steps_per_epoch, samples=samples,
                  filters=filters, patch_size=patch_size, batch_size=batch_size,
                  learning_rate=learning_rate, seed=seed, every=every, axis=axis)
    if variant not in VARIANTS:
        raise ValueError(f"--variant must be {' or '.join(VARIANTS)}; received {variant!r}.")
    check_training(model, steps)
    files = list_inputs(inputs)
    out = str(out)
    check_out_folder(out)
    outputs = check_output_names(files, out, montage)
    # Read and check everything before any training.
    prepared = [PreparedVolume(path, axis, every, key, slice_profile, slice_thickness,
                               resolution) for path in files]
    if verbose:
        for p in prepared:
            print(f"{p.path}: {p.shape}, axis {p.axis}, {describe(p)}")
    if model is None:
        keras.utils.set_random_seed(seed)   # the initial weights too: a run is reproducible
        model_name = variant
        model = variants.build_variant(variant, (None, None, 1), latent_dim=8, filters=filters,
                                       noise_sigma=0.05)
        steps = 3000 if steps is None else steps
    else:
        model_name = str(model) if isinstance(model, (str, os.PathLike)) else model.name
        if isinstance(model, (str, os.PathLike)):
            model = model_checks.load_model(model)
        elif not isinstance(model, keras.Model):
            raise ValueError(f"model must be a keras.Model or a .keras path; received "
                             f"{type(model).__name__}.")
        steps = 0 if steps is None else steps
    for p in prepared:  # before training: every volume must fit the model
        model_checks.check_model(model, p, name=model_name)
        if steps and min(p.slice_shape()) < patch_size:
            raise ValueError(f"{p.path}: its acquired slices are {p.slice_shape()[0]} x "
                             f"{p.slice_shape()[1]} voxels, smaller than --patch-size "
                             f"{patch_size}; give a smaller --patch-size.")
    settings = {"inputs": [os.path.abspath(p.path) for p in prepared],
                "samplings": [repr(p.sampling) for p in prepared], "--model": model_name,
                "--filters": filters}
    backup = training_backup.TrainingBackup(
        os.path.join(out, BACKUP_FOLDER),
        training_settings(settings, steps, steps_per_epoch, patch_size, batch_size,
                          learning_rate, seed))
    if steps:
        backup.check(resume)
    os.makedirs(out, exist_ok=True)
    if steps:
        train(model, prepared, out, steps, steps_per_epoch, resume, patch_size,
              batch_size, learning_rate, seed, verbose, backup=backup)
        save_model(model, os.path.join(out, "model.keras"))

    for p in prepared:
        volume, data, affine = p.load()
        scaled, scale = intensity.normalize(data, p.acquisition)
        acquired = p.acquisition.mask(data.shape)
        # A magnitude image (every acquired voxel >= 0) gets no negative voxel.
        magnitude = data[acquired].min() >= 0
        paths = output_paths(p.path, out)
        if p.slice_grid is not None:
            minimum = -scale[0] / (scale[1] - scale[0]) if magnitude else None
            result = imputation.restore_volume(
                model, np.compress(p.acquisition.acquired, scaled, axis=p.axis), p.slice_grid,
                verbose=console.progress_verbosity(not verbose), minimum=minimum)
            result = intensity.denormalize(result, scale)
            if magnitude:   # the bound, kept through the unscaling's rounding
                np.maximum(result, 0, out=result)
            _check_finite(result, outputs[p.path])
            volume_io.write_volume(outputs[p.path], result, volume, affine=affine)
            if montage:
                montage_module.write_thick_montage(paths[1], data, p.acquisition, p.slice_grid,
                                                   result)
            if verbose:
                print(f"wrote {outputs[p.path]}")
            continue
        spread = None
        if isinstance(model, SparseVAE):
            filled, spread = imputation.sample_volume(model, scaled, p.acquisition, samples,
                                                      seed=seed)
            spread *= np.float32(scale[1] - scale[0])
        else:
            filled = imputation.impute_volume(
                model, scaled, p.acquisition, verbose=console.progress_verbosity(not verbose))
        del scaled
        # Back to the input's units in place (memory: data and result only),
        # then the acquired voxels copied exactly.
        result = filled
        result *= np.float32(scale[1] - scale[0])
        result += np.float32(scale[0])
        if magnitude:
            np.maximum(result, 0, out=result)
        np.copyto(result, data, where=acquired)
        _check_finite(result, outputs[p.path])
        if spread is not None:
            _check_finite(spread, spread_path(p.path, out))
            volume_io.write_volume(spread_path(p.path, out), spread, volume, affine=affine)
        volume_io.write_volume(outputs[p.path], result, volume, affine=affine)
        if montage:
            montage_module.write_montage(paths[1], data, acquired, result, p.acquisition)
        if verbose:
            print(f"wrote {outputs[p.path]}")
    # Only now: a run stopped while imputing resumes without training again.
    backup.remove()
    return outputs


def _check_finite(result, path):
    bad = np.count_nonzero(~np.isfinite(result))
    if bad:
        raise ValueError(f"{path}: not written, {bad} voxels would be NaN or Inf (a model that "
                         "diverged or does not map [image, mask] to an image).")


def describe(prepared):
    """One line of how a prepared volume was acquired and how it is restored."""
    grid = prepared.slice_grid
    if grid is None:
        return f"every {prepared.every}" + (" (thick slices: grid refined, point samples)"
                                            if prepared.thick else "")
    voxel = float(prepared.zooms[prepared.axis])
    fine = voxel * grid.source_step
    profile = grid.profile
    return (f"{len(grid.centres)} slices {grid.spacing * fine:.3g} mm apart, {profile.kind} "
            f"profile {profile.thickness * fine:.3g} mm thick -> {grid.size} voxels of "
            f"{fine:.3g} mm")


def train(model, prepared, out, steps, steps_per_epoch, resume, patch_size, batch_size,
          learning_rate, seed, verbose, settings=None, backup=None):
    """Fits `model` on the acquired slices of the prepared volumes, with backups.

    A backup is written after every epoch (`training_backup.TrainingBackup`,
    in ``out/training_backup``); with `resume`, the training continues from
    it, on the batches an uninterrupted training would have seen, so that it
    ends with the same model. The backup is deleted when training completes,
    unless the caller gave it.

    Args:
        settings: a dict of what else determines the training (inputs,
            model), recorded in the backup beside the arguments here.
        backup: a checked `training_backup.TrainingBackup` to use and keep
            (`impute_slices` deletes it once every output is written); None
            makes and checks one in ``out/training_backup``.

    Raises:
        ValueError: if a backup exists without `resume`, if the backup was
            made with other settings (naming the first that differs), or if
            the training diverges (nothing is written; the last good backup
            is kept).
    """
    owned = backup is None
    if owned:
        backup = training_backup.TrainingBackup(
            os.path.join(out, BACKUP_FOLDER),
            training_settings(settings, steps, steps_per_epoch, patch_size, batch_size,
                              learning_rate, seed))
        backup.check(resume)
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05)
    if isinstance(model, SparseVAE):  # its own loss, eq. 9, on triples
        model.compile(keras.optimizers.Adam(schedule))
    else:
        model.compile(keras.optimizers.Adam(schedule), loss="mse")
    initial_epoch = backup.restore(model) if resume else 0
    if verbose and initial_epoch:
        print(f"resuming from {backup.folder}: step {initial_epoch * steps_per_epoch} of {steps}")

    # Each volume's patches are degraded as its own slices were acquired; the
    # stream starts at the first batch not yet trained on.
    dataset = training.training_dataset(SliceStacks(prepared), [p.sampling for p in prepared],
                                        patch_size, batch_size, seed=seed,
                                        start_batch=initial_epoch * steps_per_epoch)
    if isinstance(model, SparseVAE):
        dataset = training.as_sparse_vae_triples(dataset)
    # Exactly `steps` steps: the last epoch stops early (`_StopAfterSteps`).
    epochs = max(1, -(-steps // steps_per_epoch))
    if initial_epoch < epochs:
        model.fit(dataset, epochs=epochs, initial_epoch=initial_epoch,
                  steps_per_epoch=steps_per_epoch, shuffle=False,
                  callbacks=[_StopAfterSteps(steps, steps_per_epoch, learning_rate),
                             backup.callback()],
                  verbose=console.progress_verbosity(not verbose))
    if owned:
        backup.remove()


def training_settings(settings, steps, steps_per_epoch, patch_size, batch_size, learning_rate,
                      seed):
    """`settings` with the training's options, as a backup records them."""
    return {**(settings or {}), "--steps": steps, "--steps-per-epoch": steps_per_epoch,
            "--patch-size": patch_size, "--batch-size": batch_size,
            "--learning-rate": learning_rate, "--seed": seed}


class _StopAfterSteps(keras.callbacks.Callback):
    """Stops training after exactly `steps` steps, and at once on a non-finite loss.

    A diverged step raises a ValueError (naming the learning rate, the likely
    cause) before the epoch's backup is written, so the last backup is the
    last good one, and nothing is imputed or written.
    """

    def __init__(self, steps, steps_per_epoch, learning_rate):
        super().__init__()
        self.steps, self.steps_per_epoch, self.learning_rate = steps, steps_per_epoch, learning_rate
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        step = self.epoch * self.steps_per_epoch + batch + 1
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            raise ValueError(f"training diverged at step {step} (loss {float(loss)}); nothing "
                             f"was written: lower --learning-rate (now {self.learning_rate:g}).")
        if step >= self.steps:
            self.model.stop_training = True


def save_model(model, path):
    """Saves `model` under a temporary name, then renames it: never half-written."""
    temporary = os.path.join(os.path.dirname(path), ".partial." + os.path.basename(path))
    model.save(temporary)
    os.replace(temporary, path)

