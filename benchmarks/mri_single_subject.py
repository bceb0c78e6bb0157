"""Thick-slice MRI, one subject alone: a model learnt from its own acquired slices.

Data: ``../shared/data/mri/single_1mm`` (two subjects at about 1 mm; ``--data DIR``).
For each subject and each acquisition axis 0, 1, 2 (RAS): every 6th slice kept
(offset 0), ``conv-interp-residual`` trained on that subject's acquired slices
only (no other data; rows hidden every 6th in patches of them), then its
missing slices filled. Scores as `mri_cohort.py`: MSE / PSNR / SSIM on the
missing voxels inside the head, intensities over the 99.5th percentile,
against linear, cubic-spline and PCHIP interpolation.

With ``--models conv-interp-residual,conv-interp-residual-vae`` the sparse VAE
form is trained too, as the command does: 10% of the acquired slices held
out of its training and its std calibrated on them; the coverage of its
predictive intervals and a reliability diagram (`mri_uncertainty.py`).

    python benchmarks/mri_single_subject.py         # about 25 min on 2 CPU cores
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands

from sparselayers import console  # noqa: E402

console.import_tensorflow_quietly()  # its load-time lines too

import numpy as np  # noqa: E402

import mri_uncertainty  # noqa: E402
from mri_cohort import head_mask, interpolate, keep_every, load_volumes, scores, train_model  # noqa: E402

DEFAULT_DATA = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "mri",
                            "single_1mm")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder of NIfTI volumes")
    parser.add_argument("--axes", type=int, nargs="+", default=[0, 1, 2], help="acquisition axes")
    parser.add_argument("--every", type=int, default=6, help="keep every n-th slice")
    parser.add_argument("--steps", type=int, default=1500, help="training steps per case")
    parser.add_argument("--filters", type=int, default=32, help="model channels")
    parser.add_argument("--patch-size", type=int, default=48, help="training patch side")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    mri_uncertainty.add_arguments(parser)
    args = parser.parse_args(argv)

    from sparselayers import mri

    volumes = load_volumes(args.data)
    rows, uncertainty = {}, {}
    models = args.models.split(",")
    print("| subject | axis | linear | cubic | PCHIP | model | MSE x 1e3 (PSNR, SSIM) | vs best | "
          "train s | impute s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, truth in sorted(volumes.items()):
        head = head_mask(truth)
        for axis in args.axes:
            sparse, acquisition = keep_every(truth, axis, args.every, 0)
            found = {kind: scores(interpolate(sparse, acquisition, kind), truth, acquisition,
                                  head) for kind in ("linear", "cubic", "pchip")}
            interpolation = [f"{1e3 * found[k][0]:.3f} ({found[k][1]:.1f}, {found[k][2]:.3f})"
                             for k in ("linear", "cubic", "pchip")]
            best = min(("linear", "cubic", "pchip"), key=lambda k: found[k][0])
            for variant in models:
                vae = variant.endswith("-vae")
                stack = mri.training.acquired_slices(sparse, acquisition)
                held = (mri.self_validation.held_out_slices(len(stack), 0.1) if vae
                        else np.zeros(0, int))
                start = time.time()
                model = train_model([(sparse, acquisition)], args.every, args.steps,
                                    args.filters, args.patch_size, args.seed, False, variant,
                                    held_out=[held])
                train_seconds = time.time() - start
                start = time.time()
                if vae:
                    filled, uncertainty[f"{name} axis {axis}"] = mri_uncertainty.evaluate(
                        model, sparse, acquisition, truth, head, args.samples, args.draws,
                        seed=args.seed, held_out=stack[held])
                else:
                    filled = mri.impute_volume(model, sparse, acquisition)
                impute_seconds = time.time() - start
                result = scores(filled, truth, acquisition, head)
                change = 100 * (result[0] / found[best][0] - 1)
                rows.setdefault(variant, []).append(change)
                print(f"| {name} | {axis} | " + " | ".join(interpolation) + f" | {variant} | "
                      f"{1e3 * result[0]:.3f} ({result[1]:.1f}, {result[2]:.3f}) | "
                      f"{change:+.1f}% vs {best} | {train_seconds:.0f} | {impute_seconds:.0f} |",
                      flush=True)
    for variant, changes in rows.items():
        print(f"\n{variant}: MSE x 1e3 (PSNR dB, SSIM) on missing voxels inside the head vs "
              f"best interpolation: mean {np.mean(changes):+.1f}%, worst {np.max(changes):+.1f}%")
    if uncertainty:
        print(f"\nconv-interp-residual-vae: coverage (%) of the central predictive intervals on "
              f"missing voxels inside the head ({args.samples} posterior draws per cut; calibrated "
              f"on the 10% of acquired slices held out of training)")
        print(mri_uncertainty.HEADER)
        for case, found in uncertainty.items():
            print(mri_uncertainty.describe(case, found))
        os.makedirs(args.figures, exist_ok=True)
        figure = os.path.join(args.figures, "reliability_single_subject.png")
        mri_uncertainty.reliability_png(figure, uncertainty,
                                        f"conv-interp-residual-vae, 1 mm, every {args.every}")
        print(f"reliability diagram: {figure}")


if __name__ == "__main__":
    main()
