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

from sparselayers import __version__
from sparselayers import console
from sparselayers.models import variants
from sparselayers.models.sparse_vae import SparseVAE
from sparselayers.mri import model_checks
from sparselayers.mri import reference_calibration
from sparselayers.mri import report as report_module
from sparselayers.mri import self_validation
from sparselayers.mri import training
from sparselayers.mri import training_backup
from sparselayers.mri import volume_outputs
from sparselayers.mri.calibration import fit_calibration
from sparselayers.mri.calibration import summary_line
from sparselayers.mri.inputs import PreparedVolume
from sparselayers.mri.inputs import SliceStacks
from sparselayers.mri.inputs import check_output_names
from sparselayers.mri.inputs import list_inputs
from sparselayers.mri.inputs import default_names
from sparselayers.mri.options import check_options
from sparselayers.mri.options import check_out_folder
from sparselayers.mri.options import check_training

__all__ = ["impute_slices", "train"]

BACKUP_FOLDER = "training_backup"
CONVERTED_FOLDER = "converted"   # DICOM series as NIfTI (`sparselayers.mri.dicom`)
VARIANTS = ("conv-interp-residual", "conv-interp-residual-vae")


def impute_slices(inputs, out, axis=None, every=None, key=None, model=None, steps=None,
                  steps_per_epoch=100, resume=False, variant="conv-interp-residual", samples=10,
                  filters=32, patch_size=48, batch_size=16,
                  learning_rate=1e-3, seed=0, montage=True, verbose=1, slice_profile=None,
                  slice_thickness=None, resolution=None, report=True,
                  output_names=default_names, validation_share=0.1, draws=0,
                  std_reference=None):
    """Trains on a collection of thick-slice volumes and writes them filled in.

    The Python form of ``sparselayers-impute-slices`` (see the module
    docstring for the outputs); arguments as its options.

    Args:
        inputs: volume files or folders (of volume files, or of DICOM
            series, converted to NIfTI in ``out/converted``).
        out: output folder (created).
        axis: None (detect), 0/1/2, or "sagittal"/"coronal"/"axial".
        every: n, or None (detect).
        model: a `keras.Model`, a ``.keras`` path, or None (a new `variant`
            with `filters` channels).
        variant: "conv-interp-residual" or "conv-interp-residual-vae".
        samples: posterior draws per cut when the model is a `SparseVAE`.
        draws: multiple imputations to write per input (a `SparseVAE`
            only): ``<name>_draw-01.nii.gz``... (`uncertainty.draw_volumes`).
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
        report: write ``out/report.html`` (`sparselayers.mri.report`).
        validation_share: share of each volume's acquired slices held out
            of training to measure the model against linear interpolation
            on them (`sparselayers.mri.self_validation`; printed, in
            ``out/self_validation.json`` and the report); 0: none.
        std_reference: None, or one or more fine scans of the same contrast
            and protocol (never one of the inputs), on the restored grid's
            voxel size: with a sparse VAE, each thick-slice input's std is
            calibrated with the through-plane factor measured on them
            (`reference_calibration`) instead of the kept-detail estimate.
        output_names: ``output_names(input_path, out)`` gives the input's
            (imputed, montage, std) paths; default `inputs.default_names`
            (``<name>_imputed<suffix>`` ...); `sparselayers.mri.bids` names
            BIDS derivatives.

    Returns:
        dict: input path -> imputed volume path.
    """
    check_options(steps=steps, steps_per_epoch=steps_per_epoch, samples=samples,
                  filters=filters, patch_size=patch_size, batch_size=batch_size,
                  learning_rate=learning_rate, seed=seed, every=every, axis=axis,
                  validation_share=validation_share, draws=draws)
    if variant not in VARIANTS:
        raise ValueError(f"--variant must be {' or '.join(VARIANTS)}; received {variant!r}.")
    if draws and model is None and variant != "conv-interp-residual-vae":
        raise ValueError(f"--draws {draws} needs a sparse VAE model (--variant "
                         f"conv-interp-residual-vae); {variant} gives one imputation.")
    check_training(model, steps)
    out = str(out)
    check_out_folder(out)
    files = list_inputs(inputs, converted=os.path.join(out, CONVERTED_FOLDER))
    outputs = check_output_names(files, out, montage, output_names)
    # Read and check everything before any training.
    prepared = [PreparedVolume(path, axis, every, key, slice_profile, slice_thickness,
                               resolution) for path in files]
    if verbose:
        for p in prepared:
            print(f"{p.path}: {p.shape}, axis {p.axis}, {volume_outputs.describe(p)}")
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
    if draws and not isinstance(model, SparseVAE):
        raise ValueError(f"--draws {draws} needs a sparse VAE model (--variant "
                         f"conv-interp-residual-vae); {model_name} gives one imputation.")
    references = reference_calibration.check_references(std_reference, prepared, model,
                                                        model_name, validation_share)
    for p in prepared:  # before training: every volume must fit the model
        model_checks.check_model(model, p, name=model_name)
        if steps and min(p.slice_shape()) < patch_size:
            raise ValueError(f"{p.path}: its acquired slices are {p.slice_shape()[0]} x "
                             f"{p.slice_shape()[1]} voxels, smaller than --patch-size "
                             f"{patch_size}; give a smaller --patch-size.")
    # A share of each volume's acquired slices is never trained on: the
    # self-validation's (`sparselayers.mri.self_validation`).
    held_out = [self_validation.held_out_slices(int(np.count_nonzero(p.acquisition.acquired)),
                                                validation_share) for p in prepared]
    settings = {"inputs": [os.path.abspath(p.path) for p in prepared],
                "samplings": [repr(p.sampling) for p in prepared], "--model": model_name,
                "--filters": filters, "--validation-share": validation_share}
    backup = training_backup.TrainingBackup(
        os.path.join(out, BACKUP_FOLDER),
        training_settings(settings, steps, steps_per_epoch, patch_size, batch_size,
                          learning_rate, seed))
    if steps:
        backup.check(resume)
    os.makedirs(out, exist_ok=True)
    if steps:
        train(model, prepared, out, steps, steps_per_epoch, resume, patch_size,
              batch_size, learning_rate, seed, verbose, backup=backup, held_out=held_out)
        save_model(model, os.path.join(out, "model.keras"))

    held_out_stacks = [p.slices()[held] if len(held) else np.zeros((0, 1, 1), np.float32)
                       for p, held in zip(prepared, held_out)]
    validation = self_validation.validate(model, held_out_stacks,
                                          [p.sampling for p in prepared])
    calibrations = [None] * len(prepared)
    if isinstance(model, SparseVAE):  # its std, calibrated on the same held-out slices
        through_planes = reference_calibration.through_plane_factors(
            model, prepared, references, samples, seed, verbose)
        calibrations = [fit_calibration(model, stack, p.sampling, samples, seed, through_plane)
                        for p, stack, through_plane
                        in zip(prepared, held_out_stacks, through_planes)]
    self_validation.write_json(os.path.join(out, self_validation.FILE_NAME), validation,
                               [p.path for p in prepared], calibrations)
    if verbose:
        for p, scores in zip(prepared, validation["inputs"]):
            print(f"self-validation, {p.path}: {self_validation.summary_line(scores)}")
        for p, calibration in zip(prepared, calibrations):
            if isinstance(model, SparseVAE):
                print(f"std calibration, {p.path}: {summary_line(calibration)}")
        print(f"self-validation, all inputs (expected improvement over interpolation on these "
              f"scans): {self_validation.summary_line(validation['overall'])}")
    report = report_module.Report(out) if report else None
    for index, (p, calibration) in enumerate(zip(prepared, calibrations)):
        _, montage_path, std_path = output_names(p.path, out)
        os.makedirs(os.path.dirname(outputs[p.path]) or ".", exist_ok=True)
        factor = volume_outputs.impute_and_write(model, p, outputs[p.path], montage_path,
                                                 std_path, samples, seed, montage, report,
                                                 verbose, calibration, draws)
        if factor is not None:   # recorded beside the calibration it completes
            calibrations[index] = calibration.with_averaging_factor(factor)
            self_validation.write_json(os.path.join(out, self_validation.FILE_NAME), validation,
                                       [p.path for p in prepared], calibrations)
    if report is not None:
        shown = {name: value for name, value in backup.settings.items()
                 if name not in ("inputs", "samplings")}
        if references:
            shown["--std-reference"] = ", ".join(references)
        report.add_validation([p.path for p in prepared], validation)
        report.write(backup.losses, steps_per_epoch,
                     {"sparselayers": __version__, "inputs": len(prepared), **shown})
    # Only now: a run stopped while imputing resumes without training again.
    backup.remove()
    return outputs


def train(model, prepared, out, steps, steps_per_epoch, resume, patch_size, batch_size,
          learning_rate, seed, verbose, settings=None, backup=None, held_out=None):
    """Fits `model` on the acquired slices of the prepared volumes, with backups.

    A backup is written after every epoch (`training_backup.TrainingBackup`,
    in ``out/training_backup``); with `resume`, the training continues from
    it, on the batches an uninterrupted training would have seen, so that it
    ends with the same model. The backup is deleted when training completes,
    unless the caller gave it.

    Args:
        settings: a dict of what else determines the training (inputs,
            model), recorded in the backup beside the arguments here.
        held_out: None, or per volume the indices of acquired slices not to
            train on (`self_validation.held_out_slices`).
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
    dataset = training.training_dataset(SliceStacks(prepared, held_out),
                                        [p.sampling for p in prepared],
                                        patch_size, batch_size, seed=seed,
                                        start_batch=initial_epoch * steps_per_epoch)
    if isinstance(model, SparseVAE):
        dataset = training.as_sparse_vae_batches(dataset)
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

