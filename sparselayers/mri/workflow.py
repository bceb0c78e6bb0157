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
import zipfile
import keras
import numpy as np

from sparselayers import console
from sparselayers.models import variants
from sparselayers.models.sparse_vae import SparseVAE
from sparselayers.mri import imputation
from sparselayers.mri import intensity
from sparselayers.mri import montage as montage_module
from sparselayers.mri import training
from sparselayers.mri import training_backup
from sparselayers.mri import volume_io
from sparselayers.mri.inputs import PreparedVolume
from sparselayers.mri.inputs import SliceStacks
from sparselayers.mri.inputs import list_inputs
from sparselayers.mri.inputs import output_paths

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
    if variant not in VARIANTS:
        raise ValueError(f"--variant must be {' or '.join(VARIANTS)}; received {variant!r}.")
    if model is None and steps == 0:
        raise ValueError("--steps 0 without --model would write an untrained model's output; "
                         "give a trained --model, or train (--steps > 0).")
    files = list_inputs(inputs)
    out = str(out)
    _check_out_folder(out)
    outputs = _check_output_names(files, out, montage)
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
            model = load_model(model)
        elif not isinstance(model, keras.Model):
            raise ValueError(f"model must be a keras.Model or a .keras path; received "
                             f"{type(model).__name__}.")
        steps = 0 if steps is None else steps
    for p in prepared:  # before training: every volume must fit the model
        check_model(model, p, name=model_name)
        if steps and min(p.slice_shape()) < patch_size:
            raise ValueError(f"{p.path}: its acquired slices are {p.slice_shape()[0]} x "
                             f"{p.slice_shape()[1]} voxels, smaller than --patch-size "
                             f"{patch_size}; give a smaller --patch-size.")
    settings = {"inputs": [os.path.abspath(p.path) for p in prepared],
                "samplings": [repr(p.sampling) for p in prepared], "--model": model_name,
                "--filters": filters}
    if steps:
        training_backup.TrainingBackup(
            os.path.join(out, BACKUP_FOLDER),
            training_settings(settings, steps, steps_per_epoch, patch_size, batch_size,
                              learning_rate, seed)).check(resume)
    os.makedirs(out, exist_ok=True)
    if steps:
        train(model, prepared, out, steps, steps_per_epoch, resume, patch_size,
              batch_size, learning_rate, seed, verbose, settings=settings, keep_backup=True)
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
            if magnitude:
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
            _check_finite(spread, paths[2])
            volume_io.write_volume(paths[2], spread, volume, affine=affine)
        volume_io.write_volume(outputs[p.path], result, volume, affine=affine)
        if montage:
            montage_module.write_montage(paths[1], data, acquired, result, p.acquisition)
        if verbose:
            print(f"wrote {outputs[p.path]}")
    if steps:
        shutil.rmtree(os.path.join(out, BACKUP_FOLDER), ignore_errors=True)
    return outputs


def load_model(path):
    """A `--model` file loaded; ValueError naming it if it is not a Keras model."""
    path = str(path)
    if not os.path.isfile(path):
        raise ValueError(f"{path}: --model: no such file.")
    if path.lower().endswith(".keras") and not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: --model is not a .keras file (not a zip archive).")
    try:
        return keras.saving.load_model(path)
    except Exception as error:  # zipfile, h5py and Keras raise many kinds
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"{path}: --model is not a readable Keras model "
                         f"({type(error).__name__}: {reason[:160]}).") from None


def check_model(model, prepared, name="model"):
    """ValueError unless `model` maps ``[image, mask]`` cuts of `prepared` to images.

    The model is called once on one cut of the volume's size (zeros, all
    rows observed; padded to a fixed input size): it must take two inputs
    and return a finite image of the cut's shape.
    """
    imputation.check_cuts_fit(model, prepared.fine_shape(), prepared.acquisition,
                              name=prepared.path)
    if isinstance(model, SparseVAE):
        if prepared.slice_grid is not None:
            raise ValueError(f"{prepared.path}: the sparse VAE form imputes point samples only; "
                             "use the deterministic model for box or Gaussian slice profiles "
                             "(or --slice-profile point).")
        return
    try:
        inputs = list(model.inputs)
    except (AttributeError, TypeError, ValueError):
        inputs = None   # a subclassed model: its call decides
    if inputs is not None and len(inputs) != 2:
        raise ValueError(f"--model {name}: takes {len(inputs)} input(s); the workflow's models "
                         "take [image, mask] (e.g. build_variant('conv-interp-residual')).")
    fixed = imputation.fixed_input_size(model)
    shape = prepared.fine_shape()
    along = shape[prepared.axis]
    across = max(size for axis, size in enumerate(shape) if axis != prepared.axis)
    cut = (1, fixed[0] or along, fixed[1] or across, 1)
    try:
        output = np.asarray(model([np.zeros(cut, np.float32), np.ones(cut, np.float32)],
                                  training=False))
    except Exception as error:  # whatever the model raises
        reason = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ValueError(f"--model {name}: cannot map [image, mask] cuts of {cut[1]} x {cut[2]} "
                         f"voxels to an image ({type(error).__name__}: {reason[:160]}).") from None
    if output.shape != cut:
        raise ValueError(f"--model {name}: maps [image, mask] of shape {cut} to shape "
                         f"{output.shape}, not to an image of the same shape.")
    if not np.all(np.isfinite(output)):
        raise ValueError(f"--model {name}: returns NaN or Inf on a blank cut (a diverged "
                         "training?).")


def _check_output_names(files, out, montage):
    """input path -> imputed path; ValueError if two outputs clash or one is an input."""
    outputs, claimed = {}, {}
    inputs = {os.path.abspath(path): path for path in files}
    for path in files:
        imputed_path, montage_path, std_path = output_paths(path, out)
        for target in (imputed_path, std_path) + ((montage_path,) if montage else ()):
            key = os.path.abspath(target)
            if key in inputs:
                raise ValueError(f"{target}: an output would overwrite an input; choose another "
                                 "--out.")
            if key in claimed:
                raise ValueError(f"{claimed[key]} and {path} would both write {target}: rename "
                                 "one, or run them into different --out folders.")
            claimed[key] = path
        outputs[path] = imputed_path
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
          learning_rate, seed, verbose, settings=None, keep_backup=False):
    """Fits `model` on the acquired slices of the prepared volumes, with backups.

    A backup is written after every epoch (`training_backup.TrainingBackup`,
    in ``out/training_backup``); with `resume`, the training continues from
    it, on the batches an uninterrupted training would have seen, so that it
    ends with the same model. The backup is deleted when training completes,
    unless `keep_backup`.

    Args:
        settings: a dict of what else determines the training (inputs,
            model), recorded in the backup beside the arguments here.
        keep_backup: keep the last backup (`impute_slices` deletes it once
            every output is written, so that a run stopped while imputing
            resumes without training again).

    Raises:
        ValueError: if a backup exists without `resume`, if the backup was
            made with other settings (naming the first that differs), or if
            the training diverges (nothing is written; the last good backup
            is kept).
    """
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
    if not keep_backup:
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

