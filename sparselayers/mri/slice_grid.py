"""The fine grid a thick-slice volume is restored on, and where its slices lie on it.

A thick-slice file has K slices along its acquisition axis, their centres
``spacing`` mm apart, each ``thickness`` mm thick with a profile
(`sparselayers.mri.slice_profile`). It is restored on a fine grid of voxels
``resolution`` mm long that covers the whole slab: from the outer edge of the
first slice (its centre minus half its thickness) to the outer edge of the
last, centred on the slab. `SliceGrid` holds that grid in the units the
model works in (fine voxels) and how it maps to the input's array, so the
output's affine places every fine voxel in the input's world coordinates.

Example:

>>> grid = thick_slice_grid(count=20, axis=2, spacing=6.0, resolution=1.0,
...                         profile=SliceProfile("box", 6.0))
>>> grid.size, grid.centres[:2]
(120, array([2.5, 8.5]))
"""

import dataclasses

import numpy as np

from sparselayers.mri import slice_profile
from sparselayers.mri.slice_profile import SliceProfile

__all__ = ["SliceGrid", "thick_slice_grid", "detected_slice_grid", "MAX_THICKNESS_RATIO"]

# Thicker slices than this many spacings are taken for a mistake in the units.
MAX_THICKNESS_RATIO = 4.0


@dataclasses.dataclass
class SliceGrid:
    """A volume's acquired slices on the fine grid it is restored on.

    Attributes:
        axis: the acquisition axis of the volume's array.
        centres: (K,) slice centres in fine-voxel coordinates.
        size: N, fine voxels along the axis.
        profile: the slice profile, its thickness in fine voxels.
        source_first: the input array's index (along `axis`) of fine voxel 0's centre.
        source_step: input array voxels per fine voxel along `axis`.
    """

    axis: int
    centres: np.ndarray
    size: int
    profile: SliceProfile
    source_first: float = 0.0
    source_step: float = 1.0

    @property
    def spacing(self):
        """Median distance between slice centres, in fine voxels."""
        return float(np.median(np.diff(self.centres))) if len(self.centres) > 1 else 1.0

    def forward_matrix(self):
        """W (K, N): the acquired slices from the fine column (`slice_profile.forward_matrix`)."""
        return slice_profile.forward_matrix(self.profile, self.centres, self.size)

    def interpolation_matrix(self):
        """B (N, K): linear interpolation through the slice centres."""
        return slice_profile.interpolation_matrix(self.centres, self.size)

    def affine(self, source_affine):
        """The fine grid's voxel-to-world affine from the input's (4, 4) affine."""
        to_source = np.eye(4)
        to_source[self.axis, self.axis] = self.source_step
        to_source[self.axis, 3] = self.source_first
        return np.asarray(source_affine, np.float64) @ to_source

    def fine_shape(self, source_shape):
        """The restored volume's shape from the input array's."""
        shape = list(source_shape)
        shape[self.axis] = self.size
        return tuple(shape)


def _check_positive(value, name):
    if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
            or not np.isfinite(value) or value <= 0):
        raise ValueError(f"{name} must be a finite number > 0 (mm); received {value!r}.")
    return float(value)


def thick_slice_grid(count, axis, spacing, resolution, profile, name="volume"):
    """The fine grid of a thick-slice file: K slices `spacing` mm apart.

    Args:
        count: K, the slices along `axis` (the input array's size there).
        axis: the acquisition axis.
        spacing: mm between slice centres (the header's voxel size along `axis`).
        resolution: mm, the fine voxel size along `axis` (at most `spacing`).
        profile: `SliceProfile` with its thickness in mm ("point": the grid
            ends at the first and last centres, as point samples do).
        name: the volume's name in error messages.

    Returns:
        A `SliceGrid`. Slice k (input index k) lies at fine coordinate
        ``(k - source_first) / source_step``.

    Raises:
        ValueError: naming the value at fault, for a spacing or resolution
            that is not a finite number > 0, a resolution coarser than the
            spacing, or a thickness over `MAX_THICKNESS_RATIO` spacings.
    """
    spacing = _check_positive(spacing, "slice spacing")
    resolution = _check_positive(resolution, "resolution")
    if resolution > spacing * (1 + 1e-6):
        raise ValueError(f"{name}: resolution {resolution:g} mm is coarser than the slice "
                         f"spacing {spacing:g} mm; give a finer --resolution.")
    if profile.thickness > MAX_THICKNESS_RATIO * spacing:
        raise ValueError(
            f"{name}: slice thickness {profile.thickness:g} mm is more than "
            f"{MAX_THICKNESS_RATIO:g} times the slice spacing {spacing:g} mm; check "
            "--slice-thickness (in mm).")
    step = resolution / spacing                      # input voxels per fine voxel
    extent = (count - 1) + profile.thickness / spacing  # in input voxels
    size = max(count, int(round(extent / step)))
    first = 0.5 * (count - 1) - 0.5 * (size - 1) * step
    centres = (np.arange(count) - first) / step
    return SliceGrid(axis, centres, size, profile.scaled(1.0 / resolution), first, step)


def detected_slice_grid(acquired, axis, voxel_size, profile):
    """The grid of a volume stored with its missing slices: the input's own grid.

    Args:
        acquired: bool (N,), the acquired slices (an `Acquisition`'s).
        axis: the acquisition axis.
        voxel_size: mm along `axis`.
        profile: `SliceProfile`, thickness in mm.
    """
    voxel_size = _check_positive(voxel_size, "voxel size")
    centres = np.flatnonzero(acquired).astype(np.float64)
    spacing = float(np.median(np.diff(centres))) * voxel_size if len(centres) > 1 else voxel_size
    if profile.thickness > MAX_THICKNESS_RATIO * spacing:
        raise ValueError(
            f"slice thickness {profile.thickness:g} mm is more than {MAX_THICKNESS_RATIO:g} "
            f"times the slice spacing {spacing:g} mm; check --slice-thickness (in mm).")
    return SliceGrid(axis, centres, len(acquired), profile.scaled(1.0 / voxel_size))
