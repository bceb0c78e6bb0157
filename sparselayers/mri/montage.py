"""A picture per imputed volume, beside what a user would try first.

`point_comparison` gathers, for a volume stored with missing slices,
acquired / linear interpolation / imputed; `thick_comparison`, for a
thick-slice volume, the acquired slices as they are (thick) / cubic
interpolation / restored. `save_montage` draws the middle cut through the
acquisition axis of each (`write_montage` and `write_thick_montage` do both
steps); `sparselayers.mri.report` shows three orthogonal planes of them.
PNG, when matplotlib is installed.
"""

import collections
import os

import numpy as np

from sparselayers.layers.fill_missing import interpolate_along

__all__ = ["Comparison", "point_comparison", "thick_comparison", "save_montage", "write_montage",
           "write_thick_montage", "linear_interpolation", "cubic_interpolation"]


def linear_interpolation(volume, acquired, axis):
    """Linear interpolation along the acquisition axis (`interpolate_along`)."""
    return interpolate_along(volume[None], acquired[None], axis=axis + 1).numpy()[0]


Comparison = collections.namedtuple("Comparison", "volumes titles axis high caption")
Comparison.__doc__ = """Volumes to show side by side (same grid), their titles, the acquisition
axis, the grey level shown white and a one-line caption."""


def point_comparison(data, acquired, result, acquisition):
    """Acquired / linear interpolation / imputed, for missing slices (point samples)."""
    linear = linear_interpolation(data, acquired, acquisition.axis)
    every = acquisition.every
    suffix = {1: "st", 2: "nd", 3: "rd"}.get(every % 10 if every % 100 not in (11, 12, 13) else 0,
                                            "th")
    return Comparison([np.where(acquired, data, 0), linear, result],
                      ["acquired", "linear interpolation", "imputed"], acquisition.axis,
                      float(np.percentile(data[acquired], 99.5)),
                      f"every {every}{suffix} slice along axis {acquisition.axis} acquired")


def thick_comparison(data, acquisition, grid, result):
    """Acquired (thick) / cubic interpolation / restored, for a thick-slice volume.

    The acquired slices are shown as they are, each over its own rows of the
    fine grid (the nearest slice centre), beside cubic interpolation through
    the slice centres (`cubic_interpolation`) and the restored volume.
    """
    slices = np.compress(acquisition.acquired, np.asarray(data, np.float32), axis=acquisition.axis)
    moved = np.moveaxis(slices, grid.axis, 0)
    fine_rows = np.arange(grid.size)
    nearest = np.abs(fine_rows[:, None] - grid.centres[None]).argmin(axis=1)
    thick = np.moveaxis(moved[nearest], 0, grid.axis)
    cubic = cubic_interpolation(slices, grid)
    profile = grid.profile
    return Comparison([thick, cubic, result],
                      ["acquired (thick)", "cubic interpolation", "restored"], grid.axis,
                      float(np.percentile(slices, 99.5)),
                      f"{len(grid.centres)} {profile.kind} slices along axis {grid.axis} "
                      f"(thickness {profile.thickness / grid.spacing:.2g} x spacing)")


def write_montage(path, data, acquired, result, acquisition):
    """Middle cut through the acquisition axis: acquired / linear / imputed (point samples)."""
    save_montage(path, point_comparison(data, acquired, result, acquisition))


def write_thick_montage(path, data, acquisition, grid, result):
    """Middle cut through the acquisition axis: acquired (thick) / cubic / restored."""
    save_montage(path, thick_comparison(data, acquisition, grid, result))


def cubic_interpolation(slices, grid):
    """Cubic spline (not-a-knot, scipy) through the slice centres onto the fine grid.

    Constant beyond the first and last centres, as the model's input. What a
    user would try first on a thick-slice scan; with fewer than 4 slices,
    linear interpolation.
    """
    moved = np.moveaxis(np.asarray(slices, np.float64), grid.axis, 0)
    rows = np.clip(np.arange(grid.size, dtype=np.float64), grid.centres[0], grid.centres[-1])
    if len(grid.centres) < 4:
        fine = np.tensordot(grid.interpolation_matrix(), moved, axes=1)
    else:
        from scipy.interpolate import CubicSpline

        fine = CubicSpline(grid.centres, moved, axis=0)(rows)
    return np.moveaxis(fine.astype(np.float32), 0, grid.axis)


def save_montage(path, comparison):
    """The middle cut through the acquisition axis of each volume of a `Comparison`, as a PNG."""
    volumes, titles, axis, high = comparison[:4]
    name = os.path.basename(path)
    name = name[:-len("_montage.png")] if name.endswith("_montage.png") else name[:-len(".png")]
    title = f"{name}: {comparison.caption}"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    other = [i for i in range(3) if i != axis][0]
    figure, axes = plt.subplots(1, len(volumes), figsize=(3 * len(volumes), 3.4))
    for ax, volume, panel_title in zip(axes, volumes, titles):
        index = [slice(None)] * 3
        index[other] = volume.shape[other] // 2
        panel = volume[tuple(index)]
        # The acquisition axis vertical.
        shown = panel if axis < other else panel.T
        ax.imshow(shown, cmap="gray", vmin=0, vmax=high, origin="lower", aspect="equal")
        ax.set_title(panel_title)
        ax.axis("off")
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 1, 0.93))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = os.path.join(os.path.dirname(path), ".partial." + os.path.basename(path))
    figure.savefig(temporary, format="png", dpi=80)
    plt.close(figure)
    os.replace(temporary, path)
