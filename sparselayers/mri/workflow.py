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
import shutil

import keras
import numpy as np

from sparselayers import console
from sparselayers.models import variants
from sparselayers.models.sparse_vae import SparseVAE
from sparselayers.mri import imputation
from sparselayers.mri import intensity
from sparselayers.mri import montage as montage_module
from sparselayers.mri import training
from sparselayers.mri import volume_io
from sparselayers.mri.inputs import PreparedVolume
from sparselayers.mri.inputs import SliceStacks
from sparselayers.mri.inputs import list_inputs
from sparselayers.mri.inputs import output_paths

__all__ = ["impute_slices", "train"]

BACKUP_FOLDER = "training_backup"


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
                  learning_rate=learning_rate, seed=seed)
    files = list_inputs(inputs)
    out = str(out)
    _check_out_folder(out)
    outputs = {}
    for path in files:
        imputed_path, montage_path = output_paths(path, out)
        for target in (imputed_path, montage_path):
            if os.path.abspath(target) in map(os.path.abspath, files):
                raise ValueError(f"{target}: an output would overwrite an input; choose another "
                                 "--out.")
        if imputed_path in outputs.values():
            raise ValueError(f"{path}: two inputs would write {imputed_path}.")
        outputs[path] = imputed_path
    # Read and check everything before any training.
    prepared = [PreparedVolume(path, axis, every, key, slice_profile, slice_thickness,
                               resolution) for path in files]
    if verbose:
        for p in prepared:
            print(f"{p.path}: {p.shape}, axis {p.axis}, {describe(p)}")

    os.makedirs(out, exist_ok=True)
    if model is None:
        if variant not in ("conv-interp-residual", "conv-interp-residual-vae"):
            raise ValueError(f"variant must be conv-interp-residual or conv-interp-residual-vae; "
                             f"received {variant!r}.")
        model = variants.build_variant(variant, (None, None, 1), latent_dim=8, filters=filters,
                                       noise_sigma=0.05)
        steps = 3000 if steps is None else steps
    else:
        if isinstance(model, (str, os.PathLike)):
            model = keras.saving.load_model(str(model))
        steps = 0 if steps is None else steps
    for p in prepared:  # before training: every volume must fit a fixed-size model
        imputation.check_cuts_fit(model, p.fine_shape(), p.acquisition, name=p.path)
        if isinstance(model, SparseVAE) and p.slice_grid is not None:
            raise ValueError(f"{p.path}: the sparse VAE form imputes point samples only; use "
                             "the deterministic model for box or Gaussian slice profiles (or "
                             "--slice-profile point).")
    if steps:
        train(model, prepared, out, steps, steps_per_epoch, resume, patch_size,
              batch_size, learning_rate, seed, verbose)
        save_model(model, os.path.join(out, "model.keras"))

    for p in prepared:
        volume, data, affine = p.load()
        scaled, scale = intensity.normalize(data, p.acquisition)
        acquired = p.acquisition.mask(data.shape)
        if p.slice_grid is not None:
            result = imputation.restore_volume(
                model, np.compress(p.acquisition.acquired, scaled, axis=p.axis), p.slice_grid,
                verbose=console.progress_verbosity(not verbose))
            result = intensity.denormalize(result, scale)
            _check_finite(result, outputs[p.path])
            volume_io.write_volume(outputs[p.path], result, volume, affine=affine)
            if montage:
                montage_module.write_thick_montage(output_paths(p.path, out)[1], data,
                                                   p.acquisition, p.slice_grid, result)
            if verbose:
                print(f"wrote {outputs[p.path]}")
            continue
        if isinstance(model, SparseVAE):
            filled, spread = imputation.sample_volume(model, scaled, p.acquisition, samples,
                                                      seed=seed)
            std_path = outputs[p.path].replace("_imputed", "_std", 1)
            volume_io.write_volume(std_path, spread * np.float32(scale[1] - scale[0]), volume,
                                   affine=affine)
        else:
            filled = imputation.impute_volume(
                model, scaled, p.acquisition, verbose=console.progress_verbosity(not verbose))
        del scaled
        # Back to the input's units in place (memory: data and result only),
        # then the acquired voxels copied exactly.
        result = filled
        result *= np.float32(scale[1] - scale[0])
        result += np.float32(scale[0])
        np.copyto(result, data, where=acquired)
        _check_finite(result, outputs[p.path])
        volume_io.write_volume(outputs[p.path], result, volume, affine=affine)
        if montage:
            montage_module.write_montage(output_paths(p.path, out)[1], data, acquired, result,
                                         p.acquisition)
        if verbose:
            print(f"wrote {outputs[p.path]}")
    return outputs


def _check_out_folder(out):
    """ValueError unless `out` is, or can be made, a writable folder."""
    existing = os.path.abspath(out)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{out}: --out names a file ({existing}), not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{out}: --out cannot be written (no permission on {existing}).")


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
          learning_rate, seed, verbose):
    """Fits `model` on the acquired slices of the prepared volumes, with backups."""
    backup = os.path.join(out, BACKUP_FOLDER)
    if os.path.exists(backup) and not resume:
        raise ValueError(f"{backup} holds a stopped run's backup: pass --resume to continue it, "
                         "or delete the folder.")

    # Each volume's patches are degraded as its own slices were acquired.
    dataset = training.training_dataset(SliceStacks(prepared), [p.sampling for p in prepared],
                                        patch_size, batch_size, seed=seed)
    # Exactly `steps` steps: the last epoch stops early (`_StopAfterSteps`).
    epochs = max(1, -(-steps // steps_per_epoch))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, steps, alpha=0.05)
    if isinstance(model, SparseVAE):  # its own loss, eq. 9, on triples
        dataset = training.as_sparse_vae_triples(dataset)
        model.compile(keras.optimizers.Adam(schedule))
    else:
        model.compile(keras.optimizers.Adam(schedule), loss="mse")
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
              callbacks=[_StopAfterSteps(steps, steps_per_epoch, learning_rate),
                         keras.callbacks.BackupAndRestore(backup)],
              verbose=console.progress_verbosity(not verbose))
    shutil.rmtree(backup, ignore_errors=True)


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


def check_options(**options):
    """ValueError naming the option (as the command line spells it) at fault.

    Counts (`steps_per_epoch`, `samples`, `filters`, `patch_size`,
    `batch_size`) are positive ints, `steps` an int >= 0 or None, `seed` an
    int >= 0, `learning_rate` a finite number > 0.
    """
    def flag(name):
        return "--" + name.replace("_", "-")

    for name, value in options.items():
        if name in ("steps", "seed"):
            if value is None and name == "steps":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{flag(name)} must be an int >= 0; received {value!r}.")
        elif name == "learning_rate":
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                    or not np.isfinite(value) or value <= 0):
                raise ValueError(f"{flag(name)} must be a finite number > 0; received "
                                 f"{value!r}.")
        elif isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{flag(name)} must be a positive int; received {value!r}.")


def save_model(model, path):
    """Saves `model` under a temporary name, then renames it: never half-written."""
    temporary = os.path.join(os.path.dirname(path), ".partial." + os.path.basename(path))
    model.save(temporary)
    os.replace(temporary, path)

