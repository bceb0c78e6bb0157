"""Which slices of a volume were acquired, along which axis.

`find_acquisition` tells, for each volume, the acquisition axis and which
slices were acquired: from the header (thick voxels along one axis: the grid
is refined n-fold by `refine_thick_slices`) or from the data (missing slices
stored as constant, e.g. all-zero, slices), or as the user says.

Example:

>>> acquisition = find_acquisition(volume)       # axis, acquired slices
>>> acquisition.axis, acquisition.every
(2, 3)
"""

import dataclasses

import numpy as np

__all__ = ["Acquisition", "find_acquisition", "refine_thick_slices", "has_thick_or_missing_slices"]

@dataclasses.dataclass
class Acquisition:
    """Which slices of a volume were acquired.

    Attributes:
        axis: the acquisition axis (0, 1 or 2) of the volume's array.
        acquired: bool (size along axis,), True for acquired slices.
        every: n, the spacing of the acquired slices in voxels.
        refined_from: for a thick-slice file, the n-fold refinement applied to
            its grid (`refine_thick_slices`), else 1.
        thick: True for a thick-slice grid not yet refined (every slice
            acquired, each n voxels thick).
    """

    axis: int
    acquired: np.ndarray
    every: int
    refined_from: int = 1
    thick: bool = False

    def __post_init__(self):
        self.axis = _check_axis(self.axis, "Acquisition")
        acquired = np.asarray(self.acquired)
        if acquired.ndim != 1 or acquired.dtype != bool:
            raise ValueError(f"Acquisition: acquired must be a 1-D bool array (one entry per "
                             f"slice); received {acquired.dtype} of shape {acquired.shape}.")
        self.acquired = acquired
        for name in ("every", "refined_from"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"Acquisition: {name} must be a positive int; received "
                                 f"{value!r}.")

    def check_shape(self, shape, name="volume"):
        """ValueError unless a volume of `shape` has one slice per `acquired` entry."""
        if len(shape) != 3 or shape[self.axis] != len(self.acquired):
            raise ValueError(f"{name}: shape {tuple(shape)} has "
                             f"{shape[self.axis] if len(shape) == 3 else '?'} slices along axis "
                             f"{self.axis}, but the acquisition describes {len(self.acquired)}.")

    def mask(self, shape):
        """Bool array of the volume's `shape`, True at acquired voxels."""
        self.check_shape(shape)
        index = [None, None, None]
        index[self.axis] = slice(None)
        return np.broadcast_to(self.acquired[tuple(index)], shape)


def find_acquisition(volume, zooms=None, axis=None, every=None, name="volume"):
    """Finds the acquisition axis and the acquired slices of a volume.

    Missing slices are recognised as constant slices (all zero, typically)
    between acquired ones; when the others lie on a regular lattice (every
    n-th slice), the lattice's own constant slices (blank, outside the head)
    count as acquired. With `zooms` showing one axis at least 1.5 times
    coarser than the others, the volume is a thick-slice file: every slice
    is acquired and ``every`` is the rounded ratio (refine its grid with
    `refine_thick_slices` before imputing).

    Args:
        volume: (X, Y, Z) array.
        zooms: voxel sizes (3,), or None.
        axis: the acquisition axis if known, else detected.
        every: n if known (checked against the data), else detected.
        name: the volume's name in error messages (its file).

    Returns:
        An `Acquisition`.

    Raises:
        ValueError: if no axis has missing slices between acquired ones (or
            several do), if the given axis has none, or if fewer than two
            slices are acquired.
    """
    volume = np.asarray(volume)
    if volume.ndim != 3:
        raise ValueError(f"{name}: expected a 3-D volume; found shape {volume.shape}.")
    axis = None if axis is None else _check_axis(axis, name)
    if every is not None and (isinstance(every, bool) or not isinstance(every, (int, np.integer))
                              or every < 2):
        raise ValueError(f"{name}: every must be an int >= 2; received {every!r}.")
    thick = _thick_axis(zooms)
    if thick is not None and (axis is None or axis == thick[0]):
        thick_axis, ratio = thick
        if every is not None and every != ratio:
            raise ValueError(
                f"{name}: the header's voxel sizes {np.round(zooms, 3).tolist()} give slices "
                f"{ratio} times thicker along axis {thick_axis}, not every={every}.")
        acquired = np.ones(volume.shape[thick_axis], bool)
        return Acquisition(thick_axis, acquired, ratio, thick=True)

    candidates = [axis] if axis is not None else [0, 1, 2]
    found, single = [], []
    for candidate in candidates:
        acquired = ~_constant_slices(volume, candidate)
        positions = np.flatnonzero(acquired)
        if len(positions) == 1:
            single.append(candidate)
        if len(positions) < 2:
            continue
        gaps = np.diff(positions)
        if gaps.max() < 2:
            continue  # no missing slice between acquired ones
        found.append((candidate, acquired, int(np.median(gaps))))
    if not found and single:
        raise ValueError(
            f"{name}: only one slice is acquired (non-constant) along axis {single[0]}; at least "
            "two are needed to fill in the slices between them.")
    if not found:
        where = f"along axis {axis}" if axis is not None else "along any axis"
        raise ValueError(
            f"{name}: no missing slices found {where} (missing slices are stored as constant, "
            "e.g. all-zero, slices between acquired ones; or give thick voxel sizes in the "
            "header).")
    if len(found) > 1:
        raise ValueError(
            f"{name}: missing slices along axes {[f[0] for f in found]}; name the acquisition "
            "axis.")
    axis, acquired, spacing = found[0]
    positions = np.flatnonzero(acquired)
    if np.all(positions % spacing == positions[0] % spacing):
        # A regular lattice: its blank slices (outside the head, say) were
        # acquired too, and are kept as they are.
        acquired = np.zeros_like(acquired)
        acquired[positions[0] % spacing::spacing] = True
    if every is not None and spacing != every:
        raise ValueError(
            f"{name}: acquired slices along axis {axis} are {spacing} apart (median), not "
            f"every={every}.")
    return Acquisition(axis, acquired, spacing)


def has_thick_or_missing_slices(volume, zooms=None):
    """Whether `find_acquisition` would find an acquisition in the volume: thick
    voxels in the header, or constant slices between acquired ones along an axis
    (a fully sampled volume, blank slices at its edges included, has none)."""
    if _thick_axis(zooms) is not None:
        return True
    volume = np.asarray(volume)
    for axis in range(volume.ndim):
        positions = np.flatnonzero(~_constant_slices(volume, axis))
        if len(positions) >= 2 and np.diff(positions).max() >= 2:
            return True
    return False


def _check_axis(axis, name):
    """An axis 0, 1 or 2 (-3..-1 wrap); ValueError naming `name` otherwise."""
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -3 <= axis <= 2:
        raise ValueError(f"{name}: axis must be an int 0, 1 or 2; received {axis!r}.")
    return int(axis) % 3


def _thick_axis(zooms):
    """(axis, n) if one voxel size is >= 1.5x the median of the others."""
    if zooms is None:
        return None
    zooms = np.asarray(zooms, np.float64)
    for axis in range(3):
        others = np.delete(zooms, axis)
        if zooms[axis] >= 1.5 * others.max():
            return axis, int(round(zooms[axis] / np.median(others)))
    return None


def _constant_slices(volume, axis):
    moved = np.moveaxis(volume, axis, 0).reshape(volume.shape[axis], -1)
    return moved.min(axis=1) == moved.max(axis=1)


def refine_thick_slices(volume, affine, acquisition):
    """Puts a thick-slice volume on an n-fold finer grid along its axis.

    Acquired slice k goes to fine slice n*k, at the same place in the world:
    the fine affine is the thick one with its `axis` column divided by n (the
    first slice's centre is unchanged). The fine grid ends at the last
    acquired slice, so nothing is extrapolated.

    Returns:
        (fine volume with zero slices between the acquired ones, fine affine,
        fine `Acquisition` with ``refined_from = n``).
    """
    n = acquisition.every
    axis = acquisition.axis
    count = volume.shape[axis]
    shape = list(volume.shape)
    shape[axis] = (count - 1) * n + 1
    fine = np.zeros(shape, np.float32)
    index = [slice(None)] * 3
    index[axis] = slice(0, None, n)
    fine[tuple(index)] = volume
    fine_affine = np.array(affine, np.float64)
    fine_affine[:3, axis] /= n
    acquired = np.zeros(shape[axis], bool)
    acquired[::n] = True
    return fine, fine_affine, Acquisition(axis, acquired, n, refined_from=n)

