"""Intensity scaling of a volume to about [0, 1], and back.

`normalize` maps each volume's intensities by robust percentiles of its
acquired voxels (0.5th -> 0, 99.5th -> 1); `denormalize` inverts it.

Example:

>>> scaled, scale = normalize(volume, acquisition)
>>> np.allclose(denormalize(scaled, scale), volume, rtol=1e-5)
True
"""

import numpy as np

__all__ = ["normalize", "denormalize"]


def normalize(volume, acquisition, percentiles=(0.5, 99.5)):
    """Maps intensities to about [0, 1] by percentiles of the acquired voxels.

    Returns:
        (float32 scaled volume, (low, high)): ``scaled = (v - low) / (high - low)``;
        `denormalize` inverts it.
    """
    acquired = np.asarray(volume)[acquisition.mask(np.shape(volume))]
    low, high = np.percentile(acquired, percentiles)
    if not high > low:
        low, high = float(acquired.min()), float(acquired.max())
    if not high > low:
        raise ValueError("The acquired voxels are constant; nothing to learn from.")
    scaled = (np.asarray(volume, np.float32) - np.float32(low)) / np.float32(high - low)
    return scaled, (float(low), float(high))


def denormalize(scaled, scale):
    low, high = scale
    return np.asarray(scaled, np.float32) * np.float32(high - low) + np.float32(low)

