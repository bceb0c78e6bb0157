"""Thick-slice MRI (paper §4.4): keep every n-th slice, fill in the rest.

A thin user of the package's workflow (`sparselayers.mri.workflow`, the
``sparselayers-impute-slices`` command). Offline by default: a few synthetic
head phantoms, each acquired every n-th slice along axis 0 at its own
offset, are written as .npy files; the workflow learns from their acquired
slices, fills them in and writes the filled volumes and PNG montages; the
script then prints the MSE on the missing voxels beside linear
interpolation's (the phantoms' truth is known).

With your own scans (already sparse: missing slices stored as zero slices,
or thick voxels in the header), ``--volumes`` runs the same workflow on them:

    python examples/mri_slice_imputation.py --every 6 --steps 600
    python examples/mri_slice_imputation.py --volumes scans/*.nii.gz --out imputed/
"""

import os

# Before TensorFlow is imported: hide its C++ log lines (see sparselayers.console).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from example_utils import argument_parser  # noqa: E402
from example_utils import import_tensorflow  # noqa: E402


def phantom(size=64, seed=0):
    """A smooth 3-D head-like phantom: nested ellipsoids plus soft texture."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, size)] * 3, indexing="ij"), axis=-1)
    volume = np.zeros((size,) * 3, np.float32)
    shapes = [((0, 0, 0), (0.85, 0.7, 0.9), 0.8), ((0, 0, 0), (0.78, 0.63, 0.83), -0.5),
              ((0.2, 0.1, 0), (0.15, 0.3, 0.4), 0.3), ((-0.2, 0.1, 0), (0.15, 0.3, 0.4), 0.3),
              ((0, -0.35, 0.1), (0.2, 0.1, 0.15), 0.4)]
    shapes += [(tuple(rng.uniform(-0.4, 0.4, 3)), tuple(rng.uniform(0.05, 0.15, 3)),
                rng.uniform(0.1, 0.3)) for _ in range(12)]
    for center, radii, value in shapes:
        inside = np.sum(((grid - center) / radii) ** 2, axis=-1) <= 1
        volume[inside] += value
    texture = sum(np.sin(3 * (i + 1) * grid[..., i % 3] + i) for i in range(3)) / 30
    volume = np.where(volume > 0, volume + texture, 0.0)
    return np.clip(volume / volume.max(), 0, 1).astype(np.float32)


def main(argv=None):
    parser = argument_parser(__doc__)
    parser.add_argument("--volumes", nargs="+", help="your sparse volumes (default: phantoms)")
    parser.add_argument("--phantoms", type=int, default=3, help="number of phantoms")
    parser.add_argument("--size", type=int, default=64, help="phantom voxels per side")
    parser.add_argument("--every", type=int, default=6, help="keep every n-th slice")
    parser.add_argument("--steps", type=int, default=600, help="training steps")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--out", default="outputs/mri_slice_imputation", help="output folder")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    args = parser.parse_args(argv)
    import_tensorflow()

    from sparselayers import mri

    if args.volumes:
        mri.impute_slices(args.volumes, args.out, every=None, steps=args.steps,
                          seed=args.seed, verbose=0 if args.quiet else 1)
        return None
    rng = np.random.default_rng(args.seed)
    folder = os.path.join(args.out, "acquired")
    os.makedirs(folder, exist_ok=True)
    truths, files = {}, []
    for index in range(args.phantoms):
        volume = 100 + 900 * phantom(args.size, args.seed + index)  # scanner-like units
        offset = int(rng.integers(args.every))
        acquired = np.zeros(args.size, bool)
        acquired[offset::args.every] = True
        path = os.path.join(folder, f"phantom{index}.npy")
        np.save(path, np.where(acquired[:, None, None], volume, 0.0).astype(np.float32))
        truths[path] = (volume, acquired)
        files.append(path)
    missing_share = 1 - np.mean([a.mean() for _, a in truths.values()])
    print(f"{args.phantoms} phantoms of {args.size}^3, every {args.every}th slice along axis 0: "
          f"{100 * missing_share:.0f}% missing")
    written = mri.impute_slices(files, args.out, axis=0, every=args.every,
                                steps=args.steps, seed=args.seed,
                                patch_size=min(48, args.size),
                                verbose=0 if args.quiet else 1)
    errors = []
    for path, (volume, acquired) in truths.items():
        filled = np.load(written[path])
        linear = np.empty_like(volume)
        kept = np.flatnonzero(acquired)
        for j in range(args.size):
            for k in range(args.size):
                linear[:, j, k] = np.interp(np.arange(args.size), kept, volume[kept, j, k])
        scale = volume.max()
        errors.append([np.mean(((estimate - volume) / scale)[~acquired] ** 2)
                       for estimate in (linear, filled)])
    mse_interp, mse_model = np.mean(errors, axis=0)
    print(f"MSE on missing voxels (intensities / max): linear interpolation {mse_interp:.5f}, "
          f"conv-interp-residual {mse_model:.5f} ({100 * (mse_model / mse_interp - 1):+.0f}%)")
    print(f"outputs (filled volumes, montages, model.keras): {args.out}")
    return mse_interp, mse_model


if __name__ == "__main__":
    main()
