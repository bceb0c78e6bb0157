"""Thick-slice MRI on real brains: the package's model vs interpolation, held-out subjects.

Data: ``../shared/data/mri/cohort_2mm`` (17 subjects, 2 mm; ``--data DIR``).
Protocol, for each acquisition axis 0, 1, 2 of the RAS-reoriented volumes
(sagittal, coronal, axial slices):

* every 3rd slice kept (6 mm at 2 mm voxels), each subject at its own random
  offset (seeded);
* a fixed split: 11 training subjects, 6 held-out test subjects (a seeded
  permutation, printed);
* the model, ``build_variant("conv-interp-residual")``, is trained on the
  acquired slices of the training subjects only (`sparselayers.mri.training`),
  then fills
  the held-out subjects (`mri.impute_volume`);
* baselines along the axis: linear, cubic spline (not-a-knot) and PCHIP;
* scores on the missing voxels inside the head (a smoothed threshold mask),
  intensities divided by each volume's 99.5th percentile: MSE, PSNR (peak 1)
  and SSIM (scikit-image, 2-D, over the missing slices, data range 1); the
  model's paired MSE difference to the best interpolation, with its
  standard error over subjects.

    python benchmarks/mri_cohort.py                 # about 20 min on 2 CPU cores
    python benchmarks/mri_cohort.py --axes 2 --steps 500   # a quick look
"""

import argparse
import glob
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands

from sparselayers import console  # noqa: E402

console.import_tensorflow_quietly()  # its load-time lines too

import numpy as np  # noqa: E402

import mri_uncertainty  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mri",
                            "cohort_2mm")


def load_volumes(folder):
    """RAS-reoriented float32 volumes divided by their 99.5th percentile, by name."""
    import nibabel

    files = sorted(glob.glob(os.path.join(folder, "*.nii*")))
    if not files:
        print(f"No NIfTI volumes in {folder}: benchmark not run.", file=sys.stderr)
        sys.exit(1)
    volumes = {}
    for path in files:
        data = nibabel.as_closest_canonical(nibabel.load(path)).get_fdata(dtype=np.float32)
        volumes[os.path.basename(path).split(".")[0]] = data / np.percentile(data, 99.5)
    return volumes


def split_subjects(names, test_count, seed):
    """(train names, test names, the generator for what follows), printed."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(names))
    test = [names[i] for i in order[:test_count]]
    train = [names[i] for i in order[test_count:]]
    print(f"train ({len(train)}): {', '.join(train)}\ntest ({len(test)}): {', '.join(test)}")
    return train, test, rng


def head_mask(volume):
    """Voxels inside the head: smoothed intensity above 0.1, holes filled."""
    from scipy import ndimage

    return ndimage.binary_fill_holes(ndimage.gaussian_filter(volume, 2) > 0.1)


def keep_every(volume, axis, every, offset):
    """(sparse volume with zero missing slices, Acquisition)."""
    from sparselayers import mri

    acquired = np.zeros(volume.shape[axis], bool)
    acquired[offset::every] = True
    acquisition = mri.Acquisition(axis, acquired, every)
    return np.where(acquisition.mask(volume.shape), volume, 0.0).astype(np.float32), acquisition


def interpolate(volume, acquisition, kind):
    """Interpolation along the axis from the acquired slices (constant beyond the ends)."""
    from scipy import interpolate as scipy_interpolate

    positions = np.flatnonzero(acquisition.acquired)
    data = np.take(volume, positions, axis=acquisition.axis)
    where = np.clip(np.arange(volume.shape[acquisition.axis]), positions[0], positions[-1])
    if kind == "linear":
        function = scipy_interpolate.interp1d(positions, data, axis=acquisition.axis)
    elif kind == "cubic":
        function = scipy_interpolate.CubicSpline(positions, data, axis=acquisition.axis)
    else:
        function = scipy_interpolate.PchipInterpolator(positions, data, axis=acquisition.axis)
    return function(where).astype(np.float32)


def scores(estimate, truth, acquisition, head):
    """MSE, PSNR and SSIM on the missing voxels inside the head."""
    from skimage.metrics import structural_similarity

    region = head & ~acquisition.mask(truth.shape)
    mse = float(np.mean((estimate[region] - truth[region]) ** 2))
    missing = np.flatnonzero(~acquisition.acquired)
    ssim = np.mean([structural_similarity(np.take(truth, i, acquisition.axis),
                                          np.take(estimate, i, acquisition.axis),
                                          data_range=1.0) for i in missing])
    return mse, 10 * np.log10(1.0 / mse), float(ssim)


def train_model(volumes_and_acquisitions, every, steps, filters, patch_size, seed, verbose,
                variant="conv-interp-residual", held_out=None):
    """`variant` trained on the acquired slices of the given volumes (rows hidden),
    but for those of `held_out` (per volume, indices into its acquired slices)."""
    import keras

    import sparselayers
    from sparselayers import mri

    keras.utils.set_random_seed(seed)
    stacks = [mri.training.acquired_slices(v, a) for v, a in volumes_and_acquisitions]
    if held_out is not None:
        stacks = [np.delete(stack, held, axis=0) for stack, held in zip(stacks, held_out)]
    dataset = mri.training_dataset(stacks, every, patch_size=patch_size, batch_size=16,
                                   seed=seed)
    model = sparselayers.build_variant(variant, (None, None, 1), latent_dim=8, filters=filters,
                                       noise_sigma=0.05)
    per_epoch = 100
    epochs = max(1, steps // per_epoch)
    schedule = keras.optimizers.schedules.CosineDecay(1e-3, epochs * per_epoch, alpha=0.05)
    if isinstance(model, sparselayers.SparseVAE):
        dataset = mri.training.as_sparse_vae_batches(dataset)
        model.compile(keras.optimizers.Adam(schedule))
    else:
        model.compile(keras.optimizers.Adam(schedule), loss="mse")
    model.fit(dataset, epochs=epochs, steps_per_epoch=per_epoch, shuffle=False,
              verbose=2 if verbose else 0)
    return model


def paired(differences):
    differences = np.asarray(differences)
    return differences.mean(), differences.std(ddof=1) / np.sqrt(len(differences))


def report(axis, names, results, methods):
    print(f"\n### axis {axis}: MSE x 1e3 on missing voxels inside the head (PSNR dB, SSIM)")
    print("| subject | " + " | ".join(methods) + " |")
    print("|---" * (len(methods) + 1) + "|")
    for index, name in enumerate(names):
        cells = [f"{1e3 * results[m][index][0]:.2f} ({results[m][index][1]:.1f}, "
                 f"{results[m][index][2]:.3f})" for m in methods]
        print(f"| {name} | " + " | ".join(cells) + " |")
    means = {m: np.mean([r[0] for r in results[m]]) for m in methods}
    print("| **mean** | " + " | ".join(
        f"**{1e3 * means[m]:.2f}** ({np.mean([r[1] for r in results[m]]):.1f}, "
        f"{np.mean([r[2] for r in results[m]]):.3f})" for m in methods) + " |")
    interpolations = [m for m in methods if m in ("linear", "cubic", "pchip")]
    best = min(interpolations, key=means.get)
    for model in [m for m in methods if m not in interpolations]:
        difference, error = paired([a[0] - b[0] for a, b in zip(results[model], results[best])])
        wins = sum(a[0] < b[0] for a, b in zip(results[model], results[best]))
        print(f"{model} vs best interpolation ({best}): {100 * (means[model] / means[best] - 1):+.1f}%"
              f" MSE; paired difference {1e3 * difference:+.3f} +- {1e3 * error:.3f} (x 1e3, SE); "
              f"better on {wins} of {len(names)} subjects")
    return means, best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder of 2 mm NIfTI volumes")
    parser.add_argument("--axes", type=int, nargs="+", default=[0, 1, 2], help="acquisition axes")
    parser.add_argument("--every", type=int, default=3, help="keep every n-th slice")
    parser.add_argument("--test-subjects", type=int, default=6, help="held-out subjects")
    parser.add_argument("--steps", type=int, default=3000, help="training steps per axis")
    parser.add_argument("--filters", type=int, default=32, help="model channels")
    parser.add_argument("--patch-size", type=int, default=48, help="training patch side")
    parser.add_argument("--seed", type=int, default=0, help="split, offsets and training")
    mri_uncertainty.add_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no per-epoch lines")
    args = parser.parse_args(argv)

    from sparselayers import mri

    os.makedirs(args.figures, exist_ok=True)
    volumes = load_volumes(args.data)
    names = sorted(volumes)
    train, test, rng = split_subjects(names, args.test_subjects, args.seed)
    heads = {name: head_mask(volumes[name]) for name in test}
    models = args.models.split(",")
    methods = ["linear", "cubic", "pchip"] + models
    summary = {}
    for axis in args.axes:
        offsets = {name: int(rng.integers(args.every)) for name in names}
        training = [keep_every(volumes[name], axis, args.every, offsets[name]) for name in train]
        results = {m: [] for m in methods}
        sparse_test = {name: keep_every(volumes[name], axis, args.every, offsets[name])
                       for name in test}
        for name in test:
            sparse, acquisition = sparse_test[name]
            for kind in ("linear", "cubic", "pchip"):
                results[kind].append(scores(interpolate(sparse, acquisition, kind),
                                            volumes[name], acquisition, heads[name]))
        for variant in models:
            start = time.time()
            model = train_model(training, args.every, args.steps, args.filters, args.patch_size,
                                args.seed, not args.quiet, variant)
            train_seconds = time.time() - start
            impute_seconds, uncertainty = [], {}
            for name in test:
                sparse, acquisition = sparse_test[name]
                start = time.time()
                if variant.endswith("-vae"):
                    # Calibrated on a share of the subject's own acquired
                    # slices, as the command does (--validation-share).
                    filled, uncertainty[name] = mri_uncertainty.evaluate(
                        model, sparse, acquisition, volumes[name], heads[name], args.samples,
                        args.draws, seed=args.seed)
                else:
                    filled = mri.impute_volume(model, sparse, acquisition)
                impute_seconds.append(time.time() - start)
                results[variant].append(scores(filled, volumes[name], acquisition, heads[name]))
            print(f"{variant}: training {train_seconds:.0f} s ({args.steps} steps, "
                  f"{1e3 * train_seconds / args.steps:.0f} ms/step); imputation "
                  f"{np.mean(impute_seconds):.1f} s per volume"
                  + (f" (with calibration and {args.draws} draws)" if uncertainty else ""))
            if uncertainty:
                print(f"\n{variant}, axis {axis}: coverage (%) of the central predictive "
                      f"intervals on missing voxels inside the head ({args.samples} posterior "
                      f"draws per cut; calibrated on {100 * 0.1:.0f}% of each subject's acquired "
                      f"slices)")
                print(mri_uncertainty.HEADER)
                for name, found in uncertainty.items():
                    print(mri_uncertainty.describe(name, found))
                figure = os.path.join(args.figures, f"reliability_cohort_axis{axis}.png")
                mri_uncertainty.reliability_png(
                    figure, uncertainty, f"{variant}, cohort, axis {axis}, every {args.every}")
                print(f"reliability diagram: {figure}")
                first = test[0]
                figure = os.path.join(args.figures, f"uncertainty_cohort_axis{axis}.png")
                mri_uncertainty.uncertainty_png(
                    figure, volumes[first], uncertainty[first]["mean"],
                    uncertainty[first]["std"], sparse_test[first][1], heads[first],
                    f"{first}, 1 slice in {args.every} kept along axis {axis}: "
                    f"{variant}, {args.steps} steps")
                print(f"imputed / std / error figure: {figure}")
                for found in uncertainty.values():    # memory: two volumes each
                    del found["mean"], found["std"]
        means, best = report(axis, test, results, methods)
        summary[axis] = (means, best)
    print("\n| axis | best interpolation | MSE x 1e3 | " + " | ".join(models) + " |")
    print("|---|---|---|" + "---|" * len(models))
    for axis, (means, best) in summary.items():
        cells = [f"{1e3 * means[m]:.2f} ({100 * (means[m] / means[best] - 1):+.1f}%)"
                 for m in models]
        print(f"| {axis} | {best} | {1e3 * means[best]:.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
