"""The paper's own MRI protocol (§4.4, Fig. 5 right) on the 2 mm cohort, as a reproduction.

* every subject (RAS) resampled to one common grid (``--grid``, trilinear; no
  registration is available here, the paper used affine normalisation);
* slices kept every 3rd at a random oblique angle: a slab pattern rotated by
  a per-subject angle in [-45, 45] degrees about the anterior-posterior axis,
  so each coronal slice shows oblique stripes (the pattern is computed in
  the rotated frame and read back on the volume's own grid, nearest
  neighbour, so the truth is never resampled twice);
* 2-D imputation of coronal slices near the middle (the training subjects'
  slices within ``--train-span`` of the middle, the held-out subjects' 9
  slices within +-8), scored on their missing pixels inside the head (MSE);
* methods: 2-D linear interpolation of the scattered observed pixels
  (`scipy.interpolate.griddata`, nearest outside their hull), the linear
  subspace model (``linear``), and the paper's variants (`build_variant`),
  each trained on the training subjects' sparse slices only.

The paper's ordering (its variants below both baselines) came from 7,829
subjects; this cohort has 11 training subjects.

    python benchmarks/mri_paper_protocol.py        # about 15 min on 2 CPU cores
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands

from sparselayers import console  # noqa: E402

console.import_tensorflow_quietly()  # its load-time lines too

import numpy as np  # noqa: E402

from mri_cohort import DEFAULT_DATA, head_mask, load_volumes, paired, split_subjects  # noqa: E402

VARIANTS = ["linear", "conv-zero", "conv-mean", "conv-interp", "conv-interp-wmask",
            "conv-sparse", "conv-FC-sparse"]


def oblique_mask(shape, every, angle, offset):
    """Kept voxels: slabs of the frame rotated by `angle` about axis 1, every n-th kept."""
    x = np.arange(shape[0]) - (shape[0] - 1) / 2
    z = np.arange(shape[2]) - (shape[2] - 1) / 2
    rotated = -np.sin(angle) * x[:, None] + np.cos(angle) * z[None, :]  # (X, Z)
    kept = (np.round(rotated).astype(int) - offset) % every == 0
    return np.broadcast_to(kept[:, None, :], shape)


def griddata_fill(image, observed):
    from scipy import interpolate

    points = np.argwhere(observed)
    values = image[observed]
    grid = np.indices(image.shape).reshape(2, -1).T
    linear = interpolate.griddata(points, values, grid, method="linear").reshape(image.shape)
    nearest = interpolate.griddata(points, values, grid, method="nearest").reshape(image.shape)
    filled = np.where(np.isnan(linear), nearest, linear)
    return np.where(observed, image, filled)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--data", default=DEFAULT_DATA, help="folder of NIfTI volumes")
    parser.add_argument("--grid", type=int, nargs=3, default=[80, 96, 80], help="common grid")
    parser.add_argument("--every", type=int, default=3, help="keep every n-th oblique slice")
    parser.add_argument("--train-span", type=int, default=20,
                        help="training slices within this many of the middle coronal slice")
    parser.add_argument("--epochs", type=int, default=40, help="epochs per variant")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    parser.add_argument("--fc-latent", type=int, default=20,
                        help="latent size of conv-FC-sparse (the paper's 200 makes every "
                             "sample's 200 x 200 Gram matrix over 12,800 features: hours on a CPU)")
    parser.add_argument("--test-subjects", type=int, default=6, help="held-out subjects")
    parser.add_argument("--seed", type=int, default=0, help="split, angles, offsets")
    args = parser.parse_args(argv)

    import keras
    from scipy import ndimage

    import sparselayers

    volumes = load_volumes(args.data)
    names = sorted(volumes)
    train, test, rng = split_subjects(names, args.test_subjects, args.seed)
    grid = tuple(args.grid)
    middle = grid[1] // 2
    images, masks, heads, owners = [], [], [], []
    for name in names:
        volume = volumes[name]
        volume = ndimage.zoom(volume, [g / s for g, s in zip(grid, volume.shape)], order=1)
        angle = np.deg2rad(rng.uniform(-45, 45))
        kept = oblique_mask(grid, args.every, angle, int(rng.integers(args.every)))
        head = head_mask(volume)
        span = args.train_span if name in train else 8
        step = 1 if name in train else 2
        for y in range(middle - span, middle + span + 1, step):
            images.append(volume[:, y, :])
            masks.append(kept[:, y, :])
            heads.append(head[:, y, :])
            owners.append(name)
    images = np.stack(images)[..., None].astype(np.float32)
    masks = np.stack(masks)[..., None].astype(np.float32)
    heads = np.stack(heads)[..., None]
    owners = np.array(owners)
    is_train = np.isin(owners, train)
    sparse = np.where(masks > 0, images, np.nan).astype(np.float32)
    print(f"{is_train.sum()} training slices from {len(train)} subjects, {(~is_train).sum()} test "
          f"slices from {len(test)}; {100 * (1 - masks.mean()):.0f}% missing")

    def per_subject_mse(estimate):
        region = (~(masks > 0)) & heads
        errors = []
        for name in test:
            rows = owners == name
            errors.append(np.mean(((estimate[rows] - images[rows]) ** 2)[region[rows]]))
        return np.array(errors)

    results = {}
    start = time.time()
    test_index = np.flatnonzero(~is_train)
    griddata = np.empty_like(images)
    for index in test_index:
        griddata[index, ..., 0] = griddata_fill(images[index, ..., 0], masks[index, ..., 0] > 0)
    results["griddata linear"] = per_subject_mse(griddata)
    print(f"griddata: {time.time() - start:.0f} s")
    for name in args.variants.split(","):
        keras.utils.set_random_seed(args.seed)
        latent = args.fc_latent if name == "conv-FC-sparse" else 50
        kwargs = dict(filters=16, levels=2, noise_sigma=0.05)
        if name == "linear":
            kwargs = dict(noise_sigma=0.05)
        model = sparselayers.build_variant(name, grid[::2] + (1,), latent, **kwargs) \
            if name != "linear" else sparselayers.build_variant(name, (grid[0], grid[2], 1),
                                                                 latent, **kwargs)
        if name == "conv-mean":
            model.encoder.get_layer("fill").adapt(sparse[is_train], masks[is_train])
        model.compile(keras.optimizers.Adam(1e-3))
        start = time.time()
        model.fit((sparse[is_train], masks[is_train]), batch_size=16, epochs=args.epochs,
                  verbose=0)
        imputed = np.empty_like(images)
        imputed[test_index] = model.impute(sparse[test_index], masks[test_index], num_samples=10,
                                           seed=0)
        results[name] = per_subject_mse(imputed)
        print(f"{name}: {time.time() - start:.0f} s, MSE x 1e3 {1e3 * results[name].mean():.2f}",
              flush=True)

    print("\n| method | MSE x 1e3 (mean over held-out subjects) | vs griddata (paired, SE) |")
    print("|---|---|---|")
    for name, errors in results.items():
        difference, error = paired(errors - results["griddata linear"])
        print(f"| {name} | {1e3 * errors.mean():.2f} | {1e3 * difference:+.2f} +- "
              f"{1e3 * error:.2f} |")


if __name__ == "__main__":
    main()
