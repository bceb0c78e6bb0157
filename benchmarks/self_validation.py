"""Does the workflow's self-validation track the true improvement over interpolation?

`sparselayers-impute-slices` holds out a share of each scan's acquired slices
(``--validation-share``, default 0.1), and reports the model's MSE there
beside linear interpolation's as "expected improvement over interpolation on
these scans" (`sparselayers.mri.self_validation`). Here the 6 held-out
subjects of the 2 mm cohort (``../shared/data/mri/cohort_2mm``, the split of
`mri_cohort.py`) are given to `impute_slices` as a user would, with the
command's defaults, self-supervised on their own files, in two acquisitions:

* ``point``: every 3rd slice along the axis kept, the others stored as zero
  slices (true scores on the missing voxels inside the head);
* ``thick``: 6 mm box slices (3 fine voxels thick, 3 apart), written with the
  thick voxel size in the header (`mri_thick_slices.simulate`; true scores
  on every fine voxel of the restored slab inside the head).

The true improvement is 1 - MSE(output) / MSE(linear interpolation) against
the fine volume; the estimate is the workflow's own, from
``self_validation.json``. Both per subject and over the 6 (voxels pooled).

    python benchmarks/self_validation.py                      # both cases, axis 2
    python benchmarks/self_validation.py --cases point --steps 1000
"""

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands

from sparselayers import console  # noqa: E402

console.import_tensorflow_quietly()  # its load-time lines too

import numpy as np  # noqa: E402

from mri_cohort import head_mask, interpolate, keep_every, load_volumes  # noqa: E402
from mri_cohort import split_subjects  # noqa: E402
from mri_thick_slices import DEFAULT_COHORT, baseline, simulate, write_thick  # noqa: E402
from progress import stage  # noqa: E402  (benchmarks/progress.py)


def write_point(path, sparse):
    import nibabel

    nibabel.save(nibabel.Nifti1Image(sparse, np.diag([2.0, 2.0, 2.0, 1.0])), path)


def run_case(case, volumes, names, axis, args, rng):
    """Per subject (estimate, true improvement, squared errors of output and linear, voxels)."""
    import nibabel

    from sparselayers.mri import workflow

    folder = tempfile.mkdtemp(prefix=f"self_validation_{case}_")
    truths = {}
    for name in names:
        path = os.path.join(folder, f"{name}.nii.gz")
        if case == "point":
            sparse, acquisition = keep_every(volumes[name], axis, 3, int(rng.integers(3)))
            write_point(path, sparse)
            linear = interpolate(sparse, acquisition, "linear")
            region = head_mask(volumes[name]) & ~acquisition.mask(sparse.shape)
            truths[path] = (volumes[name], linear, region)
        else:
            thick, segment, grid = simulate(volumes[name], axis, 3, 3.0, "box", rng)
            write_thick(path, thick, axis, 3)
            truths[path] = (segment, baseline(thick, grid, "linear"), head_mask(segment))
    options = {} if case == "point" else dict(slice_profile="box", slice_thickness=3.0,
                                              resolution=1.0)
    start = time.time()
    written = workflow.impute_slices(list(truths), os.path.join(folder, "out"), steps=args.steps,
                                     validation_share=args.validation_share, seed=args.seed,
                                     montage=False, report=False, verbose=0, **options)
    stage(f"{case}, axis {axis}: trained and imputed in {time.time() - start:.0f} s")
    with open(os.path.join(folder, "out", "self_validation.json")) as file:
        estimates = json.load(file)
    rows = []
    for path, (truth, linear, region) in truths.items():
        output = nibabel.load(written[path]).get_fdata(dtype=np.float32)  # truth's units
        model_error = float(np.sum((output[region] - truth[region]) ** 2))
        linear_error = float(np.sum((linear[region] - truth[region]) ** 2))
        estimate = estimates["inputs"][path]["improvement"]
        rows.append((os.path.basename(path).split(".")[0], estimate,
                     1 - model_error / linear_error, model_error, linear_error,
                     int(np.count_nonzero(region))))
    return rows, estimates["overall"]["improvement"]


def report(case, axis, rows, overall_estimate):
    print(f"\n{case}, axis {axis}: improvement over linear interpolation (1 - MSE ratio)")
    print("| subject | self-validation estimate | true (held-out truth) | estimate - true |")
    print("|---|---|---|---|")
    for name, estimate, true, *_ in rows:
        print(f"| {name} | {100 * estimate:.1f}% | {100 * true:.1f}% | "
              f"{100 * (estimate - true):+.1f} pp |")
    true_overall = 1 - sum(r[3] for r in rows) / sum(r[4] for r in rows)
    differences = np.array([r[1] - r[2] for r in rows])
    print(f"| all 6 (pooled) | {100 * overall_estimate:.1f}% | {100 * true_overall:.1f}% | "
          f"{100 * (overall_estimate - true_overall):+.1f} pp |")
    print(f"per subject: mean |estimate - true| {100 * np.mean(np.abs(differences)):.1f} pp, "
          f"largest {100 * np.max(np.abs(differences)):.1f} pp; correlation across subjects "
          f"{np.corrcoef([r[1] for r in rows], [r[2] for r in rows])[0, 1]:.2f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--cohort", default=DEFAULT_COHORT, help="folder of 2 mm NIfTI volumes")
    parser.add_argument("--cases", default="point,thick", help="comma-separated: point, thick")
    parser.add_argument("--axes", type=int, nargs="+", default=[2], help="acquisition axes")
    parser.add_argument("--steps", type=int, default=3000, help="training steps (the default)")
    parser.add_argument("--validation-share", type=float, default=0.1,
                        help="held-out share of the acquired slices (the default)")
    parser.add_argument("--test-subjects", type=int, default=6, help="held-out cohort subjects")
    parser.add_argument("--seed", type=int, default=0, help="split, offsets and training")
    args = parser.parse_args(argv)
    volumes = load_volumes(args.cohort)
    _, test_names, _ = split_subjects(sorted(volumes), args.test_subjects, args.seed)
    for case in args.cases.split(","):
        for axis in args.axes:
            rng = np.random.default_rng([args.seed, axis])
            rows, overall = run_case(case, volumes, test_names, axis, args, rng)
            report(case, axis, rows, overall)


if __name__ == "__main__":
    main()
