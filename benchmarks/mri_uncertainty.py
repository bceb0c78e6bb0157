"""The sparse VAE's uncertainty on held-out brains: the rows `mri_cohort.py` and
`mri_single_subject.py` print for ``conv-interp-residual-vae``.

For one sparse volume with its truth: the calibration is fitted on a share of
the volume's own acquired slices (`mri.fit_calibration`, as the command does
with ``--validation-share``); the posterior predictive mean and calibrated
std (`mri.sample_volume`) are scored on the missing voxels inside the head:
the coverage of the central intervals at `mri.uncertainty.LEVELS` (with the
calibration's multipliers, and with Gaussian ones), and K draws
(`mri.draw_volumes`) give the spread of the mean intensity in the head's
missing voxels and the ratio of the per-voxel spread across draws to the
predictive std.
"""

import os

import numpy as np


def add_arguments(parser):
    """The models, the VAE's draws and the figures' folder, as both benchmarks take them."""
    parser.add_argument("--models", default="conv-interp-residual",
                        help="comma-separated: conv-interp-residual, conv-interp-residual-vae")
    parser.add_argument("--samples", type=int, default=4,
                        help="posterior draws per cut of the sparse VAE form")
    parser.add_argument("--draws", type=int, default=5,
                        help="multiple imputations per volume (sparse VAE form)")
    parser.add_argument("--figures", default=os.path.join(os.path.dirname(__file__), "..", "docs"),
                        help="folder of the reliability diagrams")


def evaluate(model, sparse, acquisition, truth, head, samples, draws, share=0.1, seed=0,
             held_out=None):
    """(posterior mean volume, dict of uncertainty figures) for one volume.

    `held_out`: the acquired slices to calibrate on (k, P, Q); default: a
    `share` of the volume's acquired slices (`self_validation.held_out_slices`).
    """
    from sparselayers import mri

    if held_out is None:
        stack = mri.training.acquired_slices(sparse, acquisition)
        held_out = stack[mri.self_validation.held_out_slices(len(stack), share)]
    calibration = mri.fit_calibration(model, held_out, acquisition.every, samples, seed)
    mean, std, factor = mri.sample_volume(model, sparse, acquisition, samples, seed=seed,
                                          calibration=calibration, return_factor=True)
    region = head & ~acquisition.mask(sparse.shape)
    levels = mri.uncertainty.LEVELS
    found = {
        "mean": mean, "std": std,
        "calibration": calibration,
        "coverage": mri.uncertainty.interval_coverage(mean, std, truth, region, calibration),
        # The same std without the views' averaging factor (as before 2026-12-02).
        "factor": factor,
        "coverage_without_factor": mri.uncertainty.interval_coverage(
            mean, std / np.float32(factor), truth, region, calibration),
        "gaussian_coverage": mri.uncertainty.interval_coverage(mean, std, truth, region, None),
        "levels": levels,
        "mean_std": float(np.mean(std[region])),
        "rms_error": float(np.sqrt(np.mean((mean - truth)[region] ** 2))),
    }
    if draws:
        statistics, total, total_squares = [], 0.0, 0.0
        for draw in mri.draw_volumes(model, sparse, acquisition, draws, calibration, seed=seed):
            statistics.append(float(np.mean(draw[region])))
            total = total + draw[region]
            total_squares = total_squares + draw[region].astype(np.float64) ** 2
        spread = np.sqrt(np.maximum(total_squares / draws - (total / draws) ** 2, 0)
                         * draws / max(draws - 1, 1))
        found.update(draw_means=statistics,
                     draw_spread_ratio=float(np.mean(spread) / np.mean(std[region])))
    return mean, found


def describe(name, found):
    """One table row: coverage at 50/90/95% and the draws' figures."""
    cover = dict(zip(found["levels"], found["coverage"]))
    gauss = dict(zip(found["levels"], found["gaussian_coverage"]))
    cells = [f"{100 * cover[level]:.1f}" for level in (0.5, 0.9, 0.95)]
    gaussian = "/".join(f"{100 * gauss[level]:.0f}" for level in (0.5, 0.9, 0.95))
    calibration = found["calibration"]
    draws = ""
    if "draw_means" in found:
        values = np.asarray(found["draw_means"])
        draws = (f" | {1e3 * values.mean():.2f} +- {1e3 * values.std(ddof=1):.3f} | "
                 f"{found['draw_spread_ratio']:.2f}")
    cells.append(f"{np.max(np.abs(np.asarray(found['coverage']) - found['levels'])):.3f}")
    if "factor" in found:
        without = dict(zip(found["levels"], found["coverage_without_factor"]))
        cells.append(f"{found['factor']:.3f}")
        gap = np.max(np.abs(np.asarray(found["coverage_without_factor"]) - found["levels"]))
        cells.append(f"{100 * without[0.9]:.1f} / {gap:.3f}")
    return (f"| {name} | " + " | ".join(cells) + f" | {gaussian} | {calibration.scale:.2f} | "
            f"{calibration.multiplier(0.9):.2f} | {found['mean_std']:.4f} | "
            f"{found['rms_error']:.4f}" + draws + " |")


HEADER = ("| subject | 50% | 90% | 95% | largest gap to nominal | views' factor | without it: 90% / "
          "gap | Gaussian 50/90/95 | scale | 90% mult. | mean std | RMS error | "
          "draws: head mean x 1e3 (sd) | draw sd / std |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")


def reliability_png(path, curves, title, voxels="missing voxels in the head"):
    """Nominal vs observed coverage, one line per subject (name -> found)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.6, 4.4), dpi=120)
    axes.fill_between([0, 1], [-0.05, 0.95], [0.05, 1.05], color="0.9", label="+-0.05")
    axes.plot([0, 1], [0, 1], color="0.4", linewidth=1)
    for name, found in curves.items():
        axes.plot(found["levels"], found["coverage"], marker="o", markersize=3, linewidth=1,
                  label=name)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.set_xlabel("nominal coverage of the central interval")
    axes.set_ylabel(f"observed, {voxels}")
    axes.set_title(title, fontsize=10)
    axes.legend(fontsize=6, loc="lower right")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def uncertainty_png(path, truth, mean, std, acquisition, head, title):
    """One cut through the acquisition axis: truth, imputed, calibrated std, |error|.

    The cut is the middle one across the acquisition axis (the first other
    axis), so missing rows and their uncertainty show as stripes.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    other = [axis for axis in range(3) if axis != acquisition.axis][0]
    middle = truth.shape[other] // 2

    def cut(volume):
        return np.take(volume, middle, axis=other).T[::-1]    # acquisition axis vertical

    inside = cut(head)
    panels = [("truth", cut(truth), "gray", (0, 1)), ("imputed (posterior mean)", cut(mean),
                                                       "gray", (0, 1)),
              ("predictive std (calibrated)", np.where(inside, cut(std), 0), "magma",
               (0, 0.3)),
              ("|error|", np.where(inside, np.abs(cut(mean) - cut(truth)), 0), "magma",
               (0, 0.3))]
    figure, axes = plt.subplots(1, 4, figsize=(11, 3.4), dpi=110)
    for axis, (label, image, colormap, limits) in zip(axes, panels):
        shown = axis.imshow(image, cmap=colormap, vmin=limits[0], vmax=limits[1],
                            interpolation="nearest", aspect="equal")
        axis.set_title(label, fontsize=10)
        axis.axis("off")
        if colormap != "gray":
            figure.colorbar(shown, ax=axis, fraction=0.046, pad=0.02)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
