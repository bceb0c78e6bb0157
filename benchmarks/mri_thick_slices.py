"""Thick slices as scanners acquire them: slice-profile-aware restoration vs interpolation.

Data: ``../shared/data/mri/cohort_2mm`` (17 subjects, 2 mm) and
``../shared/data/mri/single_1mm`` (2 subjects, about 1 mm); ``--cohort`` and
``--single`` name other folders. Volumes are RAS-reoriented and divided by
their 99.5th percentile (as `mri_cohort.py`).

A thick-slice scan is simulated from each fine volume along an acquisition
axis: K slices ``n`` fine voxels apart, each the fine tissue weighted by the
slice profile (box of thickness T, or Gaussian of FWHM T; the package's
forward model, `sparselayers.mri.slice_profile.forward_matrix`, on the fine
grid a restored file covers: from the outer edge of the first slice to the
outer edge of the last), written as a NIfTI file with the thick voxel size in
its header. The fine voxels of that slab are the truth.

* cohort, 6 mm box slices (n = 3): ``sparselayers-impute-slices``' Python
  form `impute_slices` run as a user would, (a) on the 6 held-out subjects'
  own thick files (self-supervised: trained on their acquired slices only),
  and (b) with a model trained on the 11 training subjects' thick files;
* each 1 mm subject as 6 mm box and Gaussian slices, and a gap case (4 mm
  box slices 6 mm apart), self-supervised on the two subjects' own files;
* ``cohort-mixed``: a clinic's mixed folder, the 6 held-out subjects under
  three acquisitions (two each: 6 mm axial, 4 mm axial, 6 mm coronal box
  slices), restored (a) in one run, one model trained on every acquisition,
  and (b) in one run per acquisition, a model each (three times the
  training at the same --steps; ``--mixed one|each`` runs one of them);
  ``--axes`` does not apply.

Baselines through the slice centres onto the same fine grid (constant beyond
the first and last centres): linear, cubic spline (not-a-knot), PCHIP and
windowed sinc (Lanczos, a = 3). Scores on all fine voxels inside the head:
MSE, PSNR (peak 1), SSIM (scikit-image, 2-D over the fine slices, data range 1).

``--models conv-interp-residual,conv-interp-residual-vae`` runs both models on
the same files (one row each). For the sparse VAE form the run writes the
calibrated predictive std and ``--draws`` multiple imputations as the command
does; the benchmark scores the coverage of the central intervals (the
calibration's multipliers from ``self_validation.json``, and Gaussian ones) on
every fine voxel inside the head, per subject, draws a reliability diagram
(``docs/reliability_thick_<case>_axis<axis>.png``) and gives the draws' spread.
With ``--std-reference K`` (self-supervised cases) the std is calibrated with
the through-plane factor measured on fine reference scans (`impute_slices(...,
std_reference=...)`): the cohort's first K training subjects, or for the 1 mm
subjects each restored in its own run with the other as reference; the
coverage of the std the in-plane estimate would have given is printed beside.

    python benchmarks/mri_thick_slices.py                     # every case, all axes
    python benchmarks/mri_thick_slices.py --axes 2 --steps 2000 --cases cohort-self,single-box
    python benchmarks/mri_thick_slices.py --cases cohort-mixed --steps 1500
    python benchmarks/mri_thick_slices.py --cases cohort-mixed --steps 4500 --mixed one
    python benchmarks/mri_thick_slices.py --cases cohort-self --axes 2 --models conv-interp-residual,conv-interp-residual-vae --samples 2 --draws 4
    python benchmarks/mri_thick_slices.py --cases cohort-self --axes 0 --models conv-interp-residual-vae --samples 2 --draws 0 --std-reference 3
"""

import argparse
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands

from sparselayers import console  # noqa: E402

console.import_tensorflow_quietly()  # its load-time lines too

import numpy as np  # noqa: E402

import mri_uncertainty  # noqa: E402
from mri_cohort import head_mask, load_volumes, split_subjects  # noqa: E402
from progress import stage  # noqa: E402  (benchmarks/progress.py)

HERE = os.path.dirname(__file__)
DEFAULT_COHORT = os.path.join(HERE, "..", "..", "shared", "data", "mri", "cohort_2mm")
DEFAULT_SINGLE = os.path.join(HERE, "..", "..", "shared", "data", "mri", "single_1mm")
BASELINES = ("linear", "cubic", "pchip", "lanczos")
CASES = {
    # name: (data, profile, n (spacing in fine voxels), thickness in fine voxels, regime)
    "cohort-self": ("cohort", "box", 3, 3.0, "self"),
    "cohort-train": ("cohort", "box", 3, 3.0, "train"),
    "single-box": ("single", "box", 6, 6.0, "self"),
    "single-gaussian": ("single", "gaussian", 6, 6.0, "self"),
    "single-gap": ("single", "box", 6, 4.0, "self"),
    "cohort-mixed": ("cohort", "box", None, None, "mixed"),
}
# cohort-mixed: (axis, n, thickness in fine voxels) of held-out subjects 1-2, 3-4, 5-6.
MIXED_ACQUISITIONS = ((2, 3, 3.0), (2, 2, 2.0), (1, 3, 3.0))


def simulate(truth, axis, n, thickness, kind, rng):
    """(thick slices, the truth on the restored grid, the grid), voxel size 1 along `axis`."""
    from sparselayers.mri.slice_grid import thick_slice_grid
    from sparselayers.mri.slice_profile import SliceProfile

    length = truth.shape[axis]
    count = int((length - thickness) // n) + 1
    while True:
        grid = thick_slice_grid(count, axis, float(n), 1.0, SliceProfile(kind, thickness))
        if grid.size <= length:
            break
        count -= 1
    start = int(rng.integers(0, length - grid.size + 1))
    segment = np.take(truth, np.arange(start, start + grid.size), axis=axis)
    moved = np.moveaxis(segment, axis, 0).astype(np.float64)
    thick = np.tensordot(grid.forward_matrix(), moved, axes=1)
    return np.moveaxis(thick, 0, axis).astype(np.float32), segment, grid


def lanczos_matrix(centres, size, a=3):
    """(N, K) windowed-sinc interpolation from evenly spaced centres, rows summing to 1."""
    spacing = np.median(np.diff(centres))
    rows = np.clip(np.arange(size, dtype=np.float64), centres[0], centres[-1])
    x = (rows[:, None] - centres[None]) / spacing
    weights = np.sinc(x) * np.sinc(x / a) * (np.abs(x) < a)
    return weights / weights.sum(axis=1, keepdims=True)


def baseline(thick, grid, kind):
    from scipy import interpolate

    moved = np.moveaxis(thick, grid.axis, 0).astype(np.float64)
    rows = np.clip(np.arange(grid.size, dtype=np.float64), grid.centres[0], grid.centres[-1])
    if kind == "linear":
        fine = np.tensordot(grid.interpolation_matrix(), moved, axes=1)
    elif kind == "cubic":
        fine = interpolate.CubicSpline(grid.centres, moved, axis=0)(rows)
    elif kind == "pchip":
        fine = interpolate.PchipInterpolator(grid.centres, moved, axis=0)(rows)
    else:
        fine = np.tensordot(lanczos_matrix(grid.centres, grid.size), moved, axes=1)
    return np.moveaxis(fine, 0, grid.axis).astype(np.float32)


def scores(estimate, truth, head, axis):
    from skimage.metrics import structural_similarity

    mse = float(np.mean((estimate[head] - truth[head]) ** 2))
    ssim = np.mean([structural_similarity(np.take(truth, i, axis), np.take(estimate, i, axis),
                                          data_range=1.0) for i in range(truth.shape[axis])])
    return mse, 10 * np.log10(1.0 / mse), float(ssim)


def write_thick(path, thick, axis, n):
    import nibabel

    zooms = [1.0, 1.0, 1.0]
    zooms[axis] = float(n)
    nibabel.save(nibabel.Nifti1Image(thick, np.diag(zooms + [1.0])), path)


def run_case(case, volumes_by_data, split, axis, args, rng, variant="conv-interp-residual"):
    import keras
    import nibabel

    import sparselayers
    from sparselayers.mri import workflow
    from sparselayers.mri.inputs import PreparedVolume

    data, kind, n, thickness, regime = CASES[case]
    volumes = volumes_by_data[data]
    train_names, test_names = split if data == "cohort" else ([], sorted(volumes))
    folder = tempfile.mkdtemp(prefix=f"thick_{case}_{axis}_{variant}_")
    simulated = {}
    for name in test_names + (train_names if regime == "train" else []):
        thick, segment, grid = simulate(volumes[name], axis, n, thickness, kind, rng)
        path = os.path.join(folder, f"{name}.nii.gz")
        write_thick(path, thick, axis, n)
        simulated[name] = (path, thick, segment, grid)
    stage(f"{case}, axis {axis}: {len(simulated)} thick-slice files written")
    options = dict(slice_profile=kind, slice_thickness=thickness, resolution=1.0,
                   patch_size=args.patch_size, seed=args.seed, montage=False, verbose=0)
    vae = variant.endswith("-vae")
    if vae:
        options.update(samples=args.samples, draws=args.draws)
    references = args.std_reference if vae else 0
    outs = {name: os.path.join(folder, "out") for name in test_names}
    start = time.time()
    if references and regime != "self":
        raise ValueError(f"--std-reference is for the self-supervised cases; {case} is not.")
    if references and data == "single":
        # Each subject restored in its own run, the other subject(s) as fine references.
        keras.utils.set_random_seed(args.seed)
        written = {}
        for name in test_names:
            others = [write_reference(folder, other, volumes[other])
                      for other in test_names if other != name]
            outs[name] = os.path.join(folder, f"out_{name}")
            written.update(workflow.impute_slices(
                [simulated[name][0]], outs[name], steps=args.steps, filters=args.filters,
                variant=variant, std_reference=others, **options))
        train_seconds = None
    elif regime == "train":
        keras.utils.set_random_seed(args.seed)
        prepared = [PreparedVolume(simulated[name][0], slice_profile=kind,
                                   slice_thickness=thickness, resolution=1.0)
                    for name in train_names]
        model = sparselayers.build_variant(variant, (None, None, 1), filters=args.filters)
        workflow.train(model, prepared, os.path.join(folder, "train"), args.steps, 100, False,
                       args.patch_size, 16, 1e-3, args.seed, 0)
        train_seconds = time.time() - start
        start = time.time()
        written = workflow.impute_slices([simulated[name][0] for name in test_names],
                                         os.path.join(folder, "out"), model=model, steps=0,
                                         **options)
    else:
        if references:   # never a test subject
            options["std_reference"] = [write_reference(folder, name, volumes[name])
                                        for name in train_names[:references]]
        keras.utils.set_random_seed(args.seed)
        written = workflow.impute_slices([simulated[name][0] for name in test_names],
                                         os.path.join(folder, "out"), steps=args.steps,
                                         filters=args.filters, variant=variant, **options)
        train_seconds = None
    total_seconds = time.time() - start
    stage(f"{case}, axis {axis}, {variant}: trained and restored")
    rows, uncertainty = [], {}
    for name in test_names:
        path, thick, segment, grid = simulated[name]
        head = head_mask(segment)
        found = {method: scores(baseline(thick, grid, method), segment, head, axis)
                 for method in BASELINES}
        restored = nibabel.load(written[path]).get_fdata(dtype=np.float32)
        found["model"] = scores(restored, segment, head, axis)
        rows.append((name, found))
        if vae:
            uncertainty[name] = score_uncertainty(restored, segment, head, outs[name], path,
                                                  args.draws, (kind, thickness, args))
    return rows, train_seconds, total_seconds, uncertainty


def score_uncertainty(restored, truth, head, out, source, draws, acquired_as):
    """The sparse VAE's files for one input scored against the truth (`mri_uncertainty`).

    With a calibration on reference scans, also the coverage of the std the
    in-plane estimate would have given (restored again with that scale:
    `in_plane_estimate_std`)."""
    import json

    import nibabel

    from sparselayers.mri import inputs, uncertainty

    std_path = inputs.spread_path(source, out)
    std = nibabel.load(std_path).get_fdata(dtype=np.float32)
    content = json.load(open(os.path.join(out, "self_validation.json")))
    calibration = uncertainty.Calibration.from_dict(content["std_calibration"][source])
    found = {"calibration": calibration, "levels": uncertainty.LEVELS,
             "coverage": uncertainty.interval_coverage(restored, std, truth, head, calibration),
             "gaussian_coverage": uncertainty.interval_coverage(restored, std, truth, head, None),
             "factor": calibration.averaging_factor,
             "coverage_without_factor": uncertainty.interval_coverage(
                 restored, std / np.float32(calibration.averaging_factor), truth, head,
                 calibration),
             "mean_std": float(np.mean(std[head])),
             "rms_error": float(np.sqrt(np.mean((restored - truth)[head] ** 2)))}
    if calibration.through_plane_factor is not None:
        estimated = in_plane_estimate_std(out, source, calibration, acquired_as)
        found["in_plane_coverage"] = uncertainty.interval_coverage(restored, estimated, truth,
                                                                   head, calibration)
    if draws:
        values = [nibabel.load(inputs.draw_path(std_path, index)).get_fdata(dtype=np.float32)
                  for index in range(1, draws + 1)]
        found["draw_means"] = [float(np.mean(value[head])) for value in values]
        spread = np.std(np.stack([value[head] for value in values]), axis=0, ddof=1)
        found["draw_spread_ratio"] = float(np.mean(spread) / np.mean(std[head]))
    return found


def in_plane_estimate_std(out, source, calibration, acquired_as):
    """The std of `source` had its calibration used the kept-detail estimate instead of
    the references' factor: restored again as the workflow does, with that scale (the
    same model and seed, so the same draws; the views' factor is measured again)."""
    import keras

    from sparselayers.mri import intensity, restored_uncertainty, uncertainty
    from sparselayers.mri.inputs import PreparedVolume

    kind, thickness, args = acquired_as
    model = keras.models.load_model(os.path.join(out, "model.keras"))
    prepared = PreparedVolume(source, slice_profile=kind, slice_thickness=thickness,
                              resolution=1.0)
    _, data, _ = prepared.load()
    scaled, (low, high) = intensity.normalize(data, prepared.acquisition)
    slices = np.compress(prepared.acquisition.acquired, scaled, axis=prepared.axis)
    estimate = uncertainty.Calibration(
        calibration.scale / np.sqrt(calibration.through_plane_factor * calibration.kept_detail),
        calibration.multipliers, calibration.voxels, calibration.levels, calibration.kept_detail)
    _, std = restored_uncertainty.restore_moments(model, slices, prepared.slice_grid,
                                                  args.samples, seed=args.seed,
                                                  calibration=estimate)
    return std * np.float32(high - low)


def write_reference(folder, name, volume):
    """A fine volume as a reference scan (the thick files' fine voxel size, 1)."""
    import nibabel

    path = os.path.join(folder, f"reference_{name}.nii.gz")
    if not os.path.exists(path):
        nibabel.save(nibabel.Nifti1Image(np.asarray(volume, np.float32), np.eye(4)), path)
    return path


def run_mixed(volumes_by_data, split, args, rng):
    """cohort-mixed: one model for every acquisition vs one model per acquisition."""
    import keras
    import nibabel

    from sparselayers.mri import workflow

    volumes = volumes_by_data["cohort"]
    test_names = split[1]
    folder = tempfile.mkdtemp(prefix="thick_cohort-mixed_")
    groups = {acquisition: [] for acquisition in MIXED_ACQUISITIONS}
    simulated = {}
    for index, name in enumerate(test_names):
        acquisition = MIXED_ACQUISITIONS[index * len(MIXED_ACQUISITIONS) // len(test_names)]
        axis, n, thickness = acquisition
        thick, segment, grid = simulate(volumes[name], axis, n, thickness, "box", rng)
        path = os.path.join(folder, f"{name}.nii.gz")
        write_thick(path, thick, axis, n)
        simulated[name] = (path, thick, segment, grid, acquisition)
        groups[acquisition].append(name)
    options = dict(slice_profile="box", resolution=1.0, patch_size=args.patch_size,
                   seed=args.seed, montage=False, verbose=0, steps=args.steps,
                   filters=args.filters)
    written, seconds = {}, {}
    if args.mixed in ("one", "both"):
        start = time.time()
        keras.utils.set_random_seed(args.seed)
        written["one model"] = workflow.impute_slices(
            [simulated[name][0] for name in test_names], os.path.join(folder, "one"), **options)
        seconds["one model"] = time.time() - start
        stage("cohort-mixed: one model for every acquisition trained and restored")
    if args.mixed in ("each", "both"):
        written["per acquisition"] = {}
        start = time.time()
        for index, (acquisition, names) in enumerate(groups.items()):
            keras.utils.set_random_seed(args.seed)
            written["per acquisition"].update(workflow.impute_slices(
                [simulated[name][0] for name in names], os.path.join(folder, f"each{index}"),
                **options))
        seconds["per acquisition"] = time.time() - start
        stage("cohort-mixed: one model per acquisition trained and restored")
    print(f"\n### cohort-mixed: MSE x 1e3 on fine voxels inside the head (PSNR dB, SSIM), "
          f"{args.steps} steps per model")
    print("| subject | acquisition | best interpolation | " + " | ".join(written) + " |")
    print("|---" * (3 + len(written)) + "|")
    changes = {regime: [] for regime in written}
    for name in test_names:
        path, thick, segment, grid, (axis, n, thickness) = simulated[name]
        head = head_mask(segment)
        found = {method: scores(baseline(thick, grid, method), segment, head, axis)
                 for method in BASELINES}
        best = min(BASELINES, key=lambda method: found[method][0])
        cells = [f"{best} {1e3 * found[best][0]:.2f}"]
        for regime in written:
            restored = nibabel.load(written[regime][path]).get_fdata(dtype=np.float32)
            mse, psnr, ssim = scores(restored, segment, head, axis)
            changes[regime].append(100 * (mse / found[best][0] - 1))
            cells.append(f"{1e3 * mse:.2f} ({psnr:.1f}, {ssim:.3f}) {changes[regime][-1]:+.1f}%")
        label = f"axis {axis}, {2 * thickness:g} mm box every {2 * n} mm"
        print(f"| {name} | {label} | " + " | ".join(cells) + " |")
    print("| **mean change** | | | " + " | ".join(
        f"**{np.mean(changes[regime]):+.1f}%**" for regime in written) + " |")
    for regime in written:
        print(f"{regime}: {np.mean(changes[regime]):+.1f}% vs the best interpolation per subject, "
              f"better on {sum(c < 0 for c in changes[regime])} of {len(test_names)}; "
              f"training + imputation {seconds[regime]:.0f} s", flush=True)
    return float(np.mean(changes[next(iter(written))]))


def report(case, axis, rows, train_seconds, total_seconds, variant="conv-interp-residual"):
    means = {m: np.mean([found[m][0] for _, found in rows]) for m in BASELINES + ("model",)}
    best = min(BASELINES, key=means.get)
    print(f"\n### {case}, axis {axis}, {variant}: MSE x 1e3 on fine voxels inside the head "
          "(PSNR dB, SSIM)")
    print("| subject | " + " | ".join(BASELINES) + " | restored | vs best |")
    print("|---" * (len(BASELINES) + 3) + "|")
    changes = []
    for name, found in rows:
        change = 100 * (found["model"][0] / found[best][0] - 1)
        changes.append(change)
        cells = [f"{1e3 * found[m][0]:.2f} ({found[m][1]:.1f}, {found[m][2]:.3f})"
                 for m in BASELINES + ("model",)]
        print(f"| {name} | " + " | ".join(cells) + f" | {change:+.1f}% |")
    mean_cells = [f"**{1e3 * means[m]:.2f}** ({np.mean([f[m][1] for _, f in rows]):.1f}, "
                  f"{np.mean([f[m][2] for _, f in rows]):.3f})" for m in BASELINES + ("model",)]
    change = 100 * (means["model"] / means[best] - 1)
    print("| **mean** | " + " | ".join(mean_cells) + f" | **{change:+.1f}%** |")
    wins = sum(c < 0 for c in changes)
    timing = (f"training {train_seconds:.0f} s, imputation {total_seconds:.0f} s" if train_seconds
              else f"training + imputation {total_seconds:.0f} s")
    print(f"restored vs best interpolation ({best}): {change:+.1f}% MSE, better on {wins} of "
          f"{len(rows)} subjects; {timing}", flush=True)
    return change


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--cohort", default=DEFAULT_COHORT, help="folder of 2 mm NIfTI volumes")
    parser.add_argument("--single", default=DEFAULT_SINGLE, help="folder of 1 mm NIfTI volumes")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated, of: "
                        + ", ".join(CASES))
    parser.add_argument("--axes", type=int, nargs="+", default=[0, 1, 2], help="acquisition axes")
    parser.add_argument("--mixed", choices=("one", "each", "both"), default="both",
                        help="cohort-mixed: one model for all, one per acquisition, or both")
    # The integer settings, as the workflow's (`impute_slices`) defaults.
    for flag, default, text in (("--test-subjects", 6, "held-out cohort subjects"),
                                ("--steps", 3000, "training steps per run"),
                                ("--filters", 32, "model channels"),
                                ("--patch-size", 48, "training patch side"),
                                ("--seed", 0, "split, offsets and training")):
        parser.add_argument(flag, type=int, default=default, help=text)
    parser.add_argument("--std-reference", type=int, default=0, metavar="K",
                        help="sparse VAE form, self-supervised cases: calibrate the std with "
                             "the through-plane factor measured on fine reference scans "
                             "(cohort: the first K training subjects; 1 mm: each subject "
                             "restored in its own run, the other as reference) and print the "
                             "coverage beside the in-plane estimate's")
    mri_uncertainty.add_arguments(parser)
    args = parser.parse_args(argv)

    from sparselayers import console

    console.import_tensorflow_quietly()
    cases = args.cases.split(",")
    volumes = {}
    split = None
    if any(CASES[c][0] == "cohort" for c in cases):
        volumes["cohort"] = load_volumes(args.cohort)
        train_names, test_names, _ = split_subjects(sorted(volumes["cohort"]),
                                                    args.test_subjects, args.seed)
        split = (train_names, test_names)
    if any(CASES[c][0] == "single" for c in cases):
        volumes["single"] = load_volumes(args.single)
    summary = []
    for case in cases:
        if CASES[case][4] == "mixed":
            rng = np.random.default_rng([args.seed, 9])
            summary.append((case, "mixed", run_mixed(volumes, split, args, rng)))
            continue
        for axis in args.axes:
            for variant in args.models.split(","):
                # The same slab offsets per axis, for every model.
                rng = np.random.default_rng([args.seed, axis])
                rows, train_seconds, total_seconds, uncertainty = run_case(
                    case, volumes, split, axis, args, rng, variant)
                change = report(case, axis, rows, train_seconds, total_seconds, variant)
                summary.append((case, f"{axis}, {variant}", change))
                if uncertainty:
                    report_uncertainty(case, axis, uncertainty, args.figures)
    print("\n| case | axis, model | restored vs best interpolation |\n|---|---|---|")
    for case, axis, change in summary:
        print(f"| {case} | {axis} | {change:+.1f}% |")


def report_uncertainty(case, axis, found_by_subject, figures):
    print(f"\nconv-interp-residual-vae, {case}, axis {axis}: coverage (%) of the central "
          "predictive intervals on fine voxels inside the head")
    print(mri_uncertainty.HEADER)
    for name, found in found_by_subject.items():
        print(mri_uncertainty.describe(name, found))
    kept = [found["calibration"].kept_detail for found in found_by_subject.values()]
    print(f"kept detail share: {', '.join(f'{value:.3f}' for value in kept)}")
    if any("in_plane_coverage" in found for found in found_by_subject.values()):
        print("\nThe through-plane factor measured on reference scans against the in-plane "
              "estimate (the same model and restoration; coverage 50 / 90 / 95 %, largest "
              "gap to nominal):")
        print("| subject | references | F measured | 1 / kept share (estimate) | "
              "with F: 50 / 90 / 95 | gap | with the estimate: 50 / 90 / 95 | gap |\n"
              "|---|---|---|---|---|---|---|---|")
        for name, found in found_by_subject.items():
            calibration = found["calibration"]
            cells = []
            for key in ("coverage", "in_plane_coverage"):
                cover = dict(zip(found["levels"], found[key]))
                cells.append(" / ".join(f"{100 * cover[level]:.1f}" for level in (0.5, 0.9, 0.95)))
                cells.append(f"{np.max(np.abs(np.asarray(found[key]) - found['levels'])):.3f}")
            names = ", ".join(os.path.basename(path)[len("reference_"):-len(".nii.gz")]
                              for path in calibration.references)
            print(f"| {name} | {names} | {calibration.through_plane_factor:.2f} | "
                  f"{1 / calibration.kept_detail:.2f} | " + " | ".join(cells) + " |")
    os.makedirs(figures, exist_ok=True)
    references = any("in_plane_coverage" in found for found in found_by_subject.values())
    suffix, title = ("_reference", ", std on reference scans") if references else ("", "")
    figure = os.path.join(figures, f"reliability_thick_{case}_axis{axis}{suffix}.png")
    mri_uncertainty.reliability_png(figure, found_by_subject,
                                    f"conv-interp-residual-vae, {case}, axis {axis}{title}",
                                    voxels="fine voxels in the head")
    print(f"reliability diagram: {figure}", flush=True)


if __name__ == "__main__":
    main()
