"""Sparse-slice MRI imputation (paper §4.4): keep every 6th slice, fill the rest.

Simulates the clinical protocol of acquiring only every n-th 2-D slice of a 3-D
volume along one axis (83% missing for n = 6), trains a sparse VAE on the
volume's own sparse slices — 2-D cuts that contain the acquisition axis, each
observed on every n-th row only — and imputes them. Compares with linear
interpolation along the acquisition axis: MSE on the missing voxels, and a
figure (truth / acquired / linear interpolation / sparse VAE).

The volume: ``--volume PATH`` (.nii/.nii.gz read with nibabel when installed,
or .npy/.npz), resampled to ``--size`` voxels per side; without it, a built-in
synthetic head phantom (offline).

    python examples/mri_slice_imputation.py --every 6 --epochs 40
"""

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import sparselayers  # noqa: E402
from example_utils import save_grid  # noqa: E402
from sparselayers import masks  # noqa: E402


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


def load_volume(path, size):
    if path.endswith((".nii", ".nii.gz")):
        import nibabel

        volume = np.asarray(nibabel.load(path).get_fdata(), np.float32)
    elif path.endswith(".npz"):
        with np.load(path) as archive:
            volume = archive[list(archive)[0]].astype(np.float32)
    else:
        volume = np.load(path).astype(np.float32)
    volume = np.squeeze(volume)
    if volume.ndim != 3:
        raise ValueError(f"{path}: expected a 3-D volume; found shape {volume.shape}.")
    # Nearest-neighbour resampling to size^3 (enough for a demonstration).
    index = [np.linspace(0, n - 1, size).round().astype(int) for n in volume.shape]
    volume = volume[np.ix_(*index)]
    volume -= volume.min()
    return volume / max(volume.max(), 1e-8)


def interpolate_along_axis0(volume, observed):
    """Linear interpolation of each line along axis 0 from its observed voxels."""
    filled = np.empty_like(volume)
    positions = np.arange(volume.shape[0])
    for j in range(volume.shape[1]):
        for k in range(volume.shape[2]):
            seen = observed[:, j, k]
            filled[:, j, k] = np.interp(positions, positions[seen], volume[seen, j, k])
    return filled


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volume", help=".nii/.nii.gz/.npy/.npz volume (default: phantom)")
    parser.add_argument("--size", type=int, default=64, help="voxels per side (multiple of 4)")
    parser.add_argument("--every", type=int, default=6, help="keep every n-th slice")
    parser.add_argument("--variant", default="conv-sparse")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--latent", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/mri_slice_imputation.png")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(args.seed)

    volume = load_volume(args.volume, args.size) if args.volume else phantom(args.size, args.seed)
    # Acquired: every n-th slice along axis 0 (as one sample of shape X, Y, Z).
    observed = masks.every_nth_slice((1,) + volume.shape, n=args.every, axis=1, offset=0)[0] > 0
    print(f"volume {volume.shape}, every {args.every}th slice along axis 0: "
          f"{100 * (1 - observed.mean()):.0f}% missing")

    # Training data: the 2-D cuts along axis 2, shape (X, Y), each observed on
    # every n-th row; as a batch (Z, X, Y, 1).
    slices = np.moveaxis(volume, 2, 0)[..., None]
    slice_mask = np.moveaxis(observed, 2, 0)[..., None].astype(np.float32)
    sparse = np.where(slice_mask > 0, slices, np.nan).astype(np.float32)
    model = sparselayers.build_variant(args.variant, slices.shape[1:], args.latent, filters=16,
                                       levels=2, noise_sigma=0.05)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit((sparse, slice_mask), batch_size=8, epochs=args.epochs, verbose=0 if args.quiet else 1)
    imputed = model.impute(sparse, slice_mask, num_samples=10, seed=args.seed)
    imputed = np.moveaxis(imputed[..., 0], 0, 2)

    interpolated = interpolate_along_axis0(volume, observed)
    missing = ~observed
    mse_interp = float(np.mean((interpolated - volume)[missing] ** 2))
    mse_vae = float(np.mean((imputed - volume)[missing] ** 2))
    print(f"MSE on missing voxels: linear interpolation {mse_interp:.5f}, "
          f"sparse VAE ({args.variant}) {mse_vae:.5f}")

    shown = np.linspace(args.size // 4, 3 * args.size // 4, 5).astype(int)
    cut = lambda v: np.stack([v[:, :, z] for z in shown])[..., None]  # noqa: E731
    save_grid(args.out, [cut(volume), cut(np.where(observed, volume, 0)),
                         cut(interpolated), cut(np.clip(imputed, 0, 1))],
              ["truth", "acquired", "lin. interp.", "sparse VAE"])
    print(f"figure: {args.out}")
    return mse_interp, mse_vae


if __name__ == "__main__":
    main()
