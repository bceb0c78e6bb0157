"""Thick-slice MRI, one subject alone: a model learnt from its own acquired slices.

Data: ``../shared/data/mri/single_1mm`` (two subjects at about 1 mm; ``--data DIR``).
For each subject and each acquisition axis 0, 1, 2 (RAS): every 6th slice kept
(offset 0), ``conv-interp-residual`` trained on that subject's acquired slices
only (no other data; rows hidden every 6th in patches of them), then its
missing slices filled. Scores as `mri_cohort.py`: MSE / PSNR / SSIM on the
missing voxels inside the head, intensities over the 99.5th percentile,
against linear, cubic-spline and PCHIP interpolation.

    python benchmarks/mri_single_subject.py         # about 25 min on 2 CPU cores
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands

from sparselayers import console  # noqa: E402

console.import_tensorflow_quietly()  # its load-time lines too

import numpy as np  # noqa: E402

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
    args = parser.parse_args(argv)

    from sparselayers import mri

    volumes = load_volumes(args.data)
    rows = []
    print("| subject | axis | linear | cubic | PCHIP | conv-interp-residual | vs best | "
          "train s | impute s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, truth in sorted(volumes.items()):
        head = head_mask(truth)
        for axis in args.axes:
            sparse, acquisition = keep_every(truth, axis, args.every, 0)
            found = {kind: scores(interpolate(sparse, acquisition, kind), truth, acquisition,
                                  head) for kind in ("linear", "cubic", "pchip")}
            start = time.time()
            model = train_model([(sparse, acquisition)], args.every, args.steps, args.filters,
                                args.patch_size, args.seed, False)
            train_seconds = time.time() - start
            start = time.time()
            filled = mri.impute_volume(model, sparse, acquisition)
            impute_seconds = time.time() - start
            found["model"] = scores(filled, truth, acquisition, head)
            best = min(("linear", "cubic", "pchip"), key=lambda k: found[k][0])
            change = 100 * (found["model"][0] / found[best][0] - 1)
            rows.append(change)
            cells = [f"{1e3 * found[k][0]:.3f} ({found[k][1]:.1f}, {found[k][2]:.3f})"
                     for k in ("linear", "cubic", "pchip", "model")]
            print(f"| {name} | {axis} | " + " | ".join(cells) + f" | {change:+.1f}% vs {best} | "
                  f"{train_seconds:.0f} | {impute_seconds:.0f} |", flush=True)
    print(f"\nMSE x 1e3 (PSNR dB, SSIM) on missing voxels inside the head; model vs best "
          f"interpolation: mean {np.mean(rows):+.1f}%, worst {np.max(rows):+.1f}%")


if __name__ == "__main__":
    main()
