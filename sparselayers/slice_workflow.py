"""The thick-slice workflow on files, and the ``sparselayers-impute-slices`` command.

    sparselayers-impute-slices scans/*.nii.gz --out imputed/
    sparselayers-impute-slices new_scan.nii.gz --model imputed/model.keras --out more/

reads a collection of volumes, each acquired every n-th slice (missing slices
stored as zero/constant slices, or thick voxels in the header), trains one
model on all their acquired slices (`sparselayers.thick_slices`), and writes
for every input, in the output folder:

* ``<name>_imputed<suffix>``: the filled volume in the input's own grid,
  header, affine and intensity units, acquired voxels bit-exact (a
  thick-slice file is written on its n-fold refined grid, the affine's slice
  axis divided by n);
* ``<name>_montage.png``: a cut through the acquisition axis, acquired /
  linearly interpolated / imputed (when matplotlib is installed);
* ``model.keras``: the trained model, for ``--model`` on new scans;
* with ``--variant conv-interp-residual-vae`` (a sparse VAE), also
  ``<name>_std<suffix>``: the per-voxel standard deviation of ``--samples``
  posterior imputations (their mean is the imputed volume).

Every input is read and checked before any training; outputs are written
under a temporary name and renamed when complete; an input is never
overwritten. Training saves a backup every epoch (``--resume`` continues a
stopped run from it).
"""

import argparse
import functools
import os
import shutil
import sys

import numpy as np  # TensorFlow is imported later: --help stays fast

from sparselayers import console

ANATOMICAL_AXES = {"sagittal": "LR", "coronal": "PA", "axial": "IS"}
BACKUP_FOLDER = "training_backup"


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sparselayers-impute-slices",
        description="Fill in the missing slices of thick-slice volumes (NIfTI, MGH, NumPy), "
                    "learning from the collection's own acquired slices.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("inputs", nargs="+",
                        help="volume files (.nii, .nii.gz, .mgz, .npy, .npz) or folders of them")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--axis", default=None,
                        help="acquisition axis: 0, 1, 2 (array axes) or sagittal, coronal, "
                             "axial (through each file's affine); default: detected")
    parser.add_argument("--every", type=int, default=None,
                        help="spacing n of the acquired slices; default: detected")
    parser.add_argument("--key", default=None, help="array name in .npz files holding several")
    parser.add_argument("--model", default=None,
                        help="a trained .keras model to reuse (no training unless --steps)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default 3000; 0 with --model)")
    parser.add_argument("--steps-per-epoch", type=int, default=100,
                        help="steps between backups")
    parser.add_argument("--resume", action="store_true",
                        help="continue a stopped training from the output folder's backup")
    parser.add_argument("--variant", default="conv-interp-residual",
                        choices=["conv-interp-residual", "conv-interp-residual-vae"],
                        help="the model to train: deterministic, or its sparse VAE form "
                             "(multiple imputation, per-voxel uncertainty)")
    parser.add_argument("--samples", type=int, default=10,
                        help="posterior draws per cut for a sparse VAE model")
    parser.add_argument("--filters", type=int, default=32, help="channels of the model")
    parser.add_argument("--patch-size", type=int, default=48, help="training patch side")
    parser.add_argument("--batch-size", type=int, default=16, help="patches per step")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's, cosine decay")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--no-montage", action="store_true", help="write no PNG montages")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv=None):
    """Entry point of ``sparselayers-impute-slices``; returns the exit status."""
    args = build_parser().parse_args(argv)  # before TensorFlow is imported: --help is fast
    console.quiet_command_line()
    try:
        impute_slices(
            args.inputs, args.out, axis=args.axis, every=args.every, key=args.key,
            model=args.model, steps=args.steps, steps_per_epoch=args.steps_per_epoch,
            resume=args.resume, variant=args.variant, samples=args.samples,
            filters=args.filters, patch_size=args.patch_size,
            batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
            montage=not args.no_montage, verbose=0 if args.quiet else 1)
    except (ValueError, ImportError) as error:
        print(f"sparselayers-impute-slices: error: {error}", file=sys.stderr)
        return 2
    return 0


def list_inputs(inputs):
    """Files from paths and folders (their volume files, sorted)."""
    from sparselayers import volume_io

    files = []
    for path in inputs:
        path = str(path)
        if os.path.isdir(path):
            found = sorted(os.path.join(path, name) for name in os.listdir(path)
                           if volume_io.volume_suffix(name) and not name.startswith("."))
            if not found:
                raise ValueError(f"{path}: no volume files in this folder.")
            files += found
        else:
            files.append(path)
    if not files:
        raise ValueError("No input volumes.")
    return files


def output_paths(path, out):
    """(imputed volume, montage) paths in `out` for the input `path`."""
    from sparselayers import volume_io

    suffix = volume_io.volume_suffix(path)
    if suffix is None:
        raise ValueError(f"{path}: not a volume file (expected one of "
                         f"{', '.join(volume_io.SUFFIXES)}).")
    stem = os.path.basename(path)[:-len(suffix)]
    return (os.path.join(out, f"{stem}_imputed{suffix}"),
            os.path.join(out, f"{stem}_montage.png"))


def _resolve_axis(axis, volume):
    """An int axis from 0/1/2 or an anatomical name, through the volume's affine."""
    if axis is None:
        return None
    text = str(axis).lower()
    if text in ("0", "1", "2"):
        return int(text)
    if text not in ANATOMICAL_AXES:
        raise ValueError(f"--axis must be 0, 1, 2, sagittal, coronal or axial; received {axis!r}.")
    import nibabel

    codes = nibabel.aff2axcodes(volume.affine)
    for index, code in enumerate(codes):
        if code in ANATOMICAL_AXES[text]:
            return index
    raise ValueError(f"{volume.path}: no {text} axis in its orientation {codes}.")


class _Prepared:
    """One checked input: where its acquired slices are, and its scaling."""

    def __init__(self, path, axis, every, key):
        from sparselayers import thick_slices, volume_io

        volume = volume_io.read_volume(path, key=key)
        acquisition = thick_slices.find_acquisition(
            volume.data, volume.zooms, axis=_resolve_axis(axis, volume), every=every, name=path)
        self.path = path
        self.key = key
        self.shape = volume.data.shape
        self.zooms = volume.zooms
        self.axis, self.every = acquisition.axis, acquisition.every
        self.thick = acquisition.thick
        data, _, acquisition = self.grid(volume, acquisition)
        self.acquisition = acquisition
        thick_slices.normalize(data, acquisition)  # raises if the acquired voxels are constant
        # In-plane voxel size over the fine through-plane spacing: the
        # training slices are resampled by this so that their pixels match
        # the cuts' (1 for isotropic volumes).
        in_plane = [self.zooms[i] for i in range(3) if i != self.axis]
        through = self.zooms[self.axis] / (self.every if self.thick else 1)
        self.in_plane_ratio = [size / through for size in in_plane]

    def grid(self, volume, acquisition=None):
        """(data, affine, acquisition) on the fine grid."""
        from sparselayers import thick_slices

        if acquisition is None:
            acquisition = self.acquisition if not self.thick else thick_slices.Acquisition(
                self.axis, np.ones(self.shape[self.axis], bool), self.every, thick=True)
        if self.thick:
            return thick_slices.refine_thick_slices(volume.data, volume.affine, acquisition)
        return volume.data, volume.affine, acquisition

    def load(self):
        from sparselayers import volume_io

        volume = volume_io.read_volume(self.path, key=self.key)
        data, affine, _ = self.grid(volume)
        return volume, data, affine

    def slices(self):
        """Its acquired slices, normalised and resampled to isotropic pixels."""
        from sparselayers import thick_slices

        _, data, _ = self.load()
        scaled, _ = thick_slices.normalize(data, self.acquisition)
        stack = thick_slices.acquired_slices(scaled, self.acquisition)
        if max(abs(r - 1.0) for r in self.in_plane_ratio) > 0.1:
            from scipy import ndimage

            stack = np.stack([ndimage.zoom(s, self.in_plane_ratio, order=1) for s in stack])
        return stack


def impute_slices(inputs, out, axis=None, every=None, key=None, model=None, steps=None,
                  steps_per_epoch=100, resume=False, variant="conv-interp-residual", samples=10,
                  filters=32, patch_size=48, batch_size=16,
                  learning_rate=1e-3, seed=0, montage=True, verbose=1):
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

    Returns:
        dict: input path -> imputed volume path.
    """
    files = list_inputs(inputs)
    out = str(out)
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
    if steps is not None and steps < 0:
        raise ValueError(f"steps must be >= 0; received {steps}.")
    # Read and check everything before any training.
    prepared = [_Prepared(path, axis, every, key) for path in files]
    spacings = {p.every for p in prepared}
    if len(spacings) > 1:
        listing = ", ".join(f"{os.path.basename(p.path)}: {p.every}" for p in prepared)
        raise ValueError(f"The volumes are acquired at different spacings ({listing}); "
                         "impute them in separate runs.")
    every = spacings.pop()
    if verbose:
        for p in prepared:
            print(f"{p.path}: {p.shape}, axis {p.axis}, every {p.every}"
                  + (" (thick slices: grid refined)" if p.thick else ""))

    import keras

    from sparselayers import thick_slices, variants, volume_io
    from sparselayers.sparse_vae import SparseVAE

    if samples < 1:
        raise ValueError(f"samples must be >= 1; received {samples}.")
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
        fine_shape = list(p.shape)
        fine_shape[p.axis] = len(p.acquisition.acquired)
        thick_slices.check_cuts_fit(model, fine_shape, p.acquisition, name=p.path)
    if steps:
        train(model, prepared, every, out, steps, steps_per_epoch, resume, patch_size,
              batch_size, learning_rate, seed, verbose)
        _save_model(model, os.path.join(out, "model.keras"))

    for p in prepared:
        volume, data, affine = p.load()
        scaled, scale = thick_slices.normalize(data, p.acquisition)
        acquired = p.acquisition.mask(data.shape)
        if isinstance(model, SparseVAE):
            filled, spread = thick_slices.sample_volume(model, scaled, p.acquisition, samples,
                                                        seed=seed)
            std_path = outputs[p.path].replace("_imputed", "_std", 1)
            volume_io.write_volume(std_path, spread * np.float32(scale[1] - scale[0]), volume,
                                   affine=affine)
        else:
            filled = thick_slices.impute_volume(
                model, scaled, p.acquisition, verbose=console.progress_verbosity(not verbose))
        del scaled
        # Back to the input's units in place (memory: data and result only),
        # then the acquired voxels copied exactly.
        result = filled
        result *= np.float32(scale[1] - scale[0])
        result += np.float32(scale[0])
        np.copyto(result, data, where=acquired)
        volume_io.write_volume(outputs[p.path], result, volume, affine=affine)
        if montage:
            _write_montage(output_paths(p.path, out)[1], data, acquired, result, p.acquisition)
        if verbose:
            print(f"wrote {outputs[p.path]}")
    return outputs


def train(model, prepared, every, out, steps, steps_per_epoch, resume, patch_size, batch_size,
          learning_rate, seed, verbose):
    """Fits `model` on the acquired slices of the prepared volumes, with backups."""
    import keras

    from sparselayers import thick_slices
    from sparselayers.sparse_vae import SparseVAE

    backup = os.path.join(out, BACKUP_FOLDER)
    if os.path.exists(backup) and not resume:
        raise ValueError(f"{backup} holds a stopped run's backup: pass --resume to continue it, "
                         "or delete the folder.")

    dataset = thick_slices.training_dataset(_SliceStacks(prepared), every, patch_size,
                                            batch_size, seed=seed)
    epochs = max(1, -(-steps // steps_per_epoch))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, epochs * steps_per_epoch,
                                                      alpha=0.05)
    if isinstance(model, SparseVAE):  # its own loss, eq. 9, on triples
        dataset = thick_slices.as_sparse_vae_triples(dataset)
        model.compile(keras.optimizers.Adam(schedule))
    else:
        model.compile(keras.optimizers.Adam(schedule), loss="mse")
    model.fit(dataset, epochs=epochs, steps_per_epoch=steps_per_epoch, shuffle=False,
              callbacks=[keras.callbacks.BackupAndRestore(backup)],
              verbose=console.progress_verbosity(not verbose))
    shutil.rmtree(backup, ignore_errors=True)


class _SliceStacks:
    """The inputs' acquired slices, read from their files when indexed.

    At most `CACHED` volumes' slices are held at a time, so training memory
    does not grow with the collection.
    """

    CACHED = 4

    def __init__(self, prepared):
        self.prepared = prepared
        self.read = functools.lru_cache(maxsize=self.CACHED)(lambda i: prepared[i].slices())

    def __len__(self):
        return len(self.prepared)

    def __getitem__(self, index):
        return self.read(index)


def _save_model(model, path):
    temporary = os.path.join(os.path.dirname(path), ".partial." + os.path.basename(path))
    model.save(temporary)
    os.replace(temporary, path)


def _linear_interpolation(volume, acquired, axis):
    """Linear interpolation along the acquisition axis (`interpolate_along`)."""
    from sparselayers.fill_missing import interpolate_along

    return interpolate_along(volume[None], acquired[None], axis=axis + 1).numpy()[0]


def _write_montage(path, data, acquired, result, acquisition):
    """Middle cut through the acquisition axis: acquired / linear / imputed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    other = [i for i in range(3) if i != acquisition.axis][0]
    index = [slice(None)] * 3
    index[other] = data.shape[other] // 2
    index = tuple(index)
    linear = _linear_interpolation(data, acquired, acquisition.axis)
    panels = [np.where(acquired, data, 0)[index], linear[index], result[index]]
    high = np.percentile(data[acquired], 99.5)
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.4))
    for ax, panel, title in zip(axes, panels, ["acquired", "linear interpolation", "imputed"]):
        # The acquisition axis vertical.
        shown = panel if acquisition.axis < other else panel.T
        ax.imshow(shown, cmap="gray", vmin=0, vmax=high, origin="lower", aspect="equal")
        ax.set_title(title)
        ax.axis("off")
    every = acquisition.every
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(every % 10 if every % 100 not in (11, 12, 13) else 0,
                                            "th")
    figure.suptitle(f"{os.path.basename(path)[:-len('_montage.png')]}: every {every}{suffix} "
                    f"slice along axis {acquisition.axis} acquired")
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    temporary = os.path.join(os.path.dirname(path), ".partial." + os.path.basename(path))
    figure.savefig(temporary, format="png", dpi=80)
    plt.close(figure)
    os.replace(temporary, path)


if __name__ == "__main__":
    sys.exit(main())
