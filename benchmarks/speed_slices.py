"""Speed and memory of the thick-slice workflow: training per epoch, imputation per volume.

Synthetic data (smooth random volumes), so it runs anywhere:

* training: `mri.training_dataset` + ``conv-interp-residual``
  (32 filters, 48 px patches, batches of 16), seconds per epoch of 100 steps;
* imputation: `mri.impute_volume` on a ``--size``^3 volume (default
  256), every 3rd slice along axis 2; wall time, and the process's peak
  resident memory during the call over its resident memory before it,
  in volumes (one volume = size^3 float32 values).

    python benchmarks/speed_slices.py
"""

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # no TensorFlow log lines, as the commands

from sparselayers import console  # noqa: E402

console.import_tensorflow_quietly()  # its load-time lines too

import numpy as np  # noqa: E402


def resident_bytes(field):
    """VmRSS or VmHWM (peak) of this process, from /proc (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not found in /proc/self/status")


def reset_peak():
    """Resets VmHWM to the current RSS (Linux >= 4.0)."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def smooth_volume(size, seed=0):
    from scipy import ndimage

    noise = np.random.default_rng(seed).normal(size=(size,) * 3).astype(np.float32)
    volume = ndimage.gaussian_filter(noise, 3)
    return (volume - volume.min()) / np.ptp(volume)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="imputed volume side")
    parser.add_argument("--epochs", type=int, default=3, help="training epochs timed")
    args = parser.parse_args(argv)

    import keras

    import sparselayers
    from sparselayers import mri

    keras.utils.set_random_seed(0)
    model = sparselayers.build_variant("conv-interp-residual", (None, None, 1), filters=32)
    model.compile(keras.optimizers.Adam(1e-3), loss="mse")
    train_volume = smooth_volume(128, 1)
    acquired = np.zeros(128, bool)
    acquired[::3] = True
    train_acquisition = mri.Acquisition(2, acquired, 3)
    stacks = [mri.training.acquired_slices(train_volume, train_acquisition)]
    dataset = mri.training_dataset(stacks, 3, patch_size=48, batch_size=16)
    model.fit(dataset, steps_per_epoch=10, epochs=1, verbose=0, shuffle=False)  # warm-up
    reset_peak()
    before = resident_bytes("VmRSS")
    start = time.time()
    model.fit(dataset, steps_per_epoch=100, epochs=args.epochs, verbose=0, shuffle=False)
    per_epoch = (time.time() - start) / args.epochs
    train_peak = resident_bytes("VmHWM") - before
    print(f"training: {per_epoch:.1f} s per epoch of 100 steps (16 patches of 48 x 48), "
          f"peak memory +{train_peak / 2**20:.0f} MiB")

    volume = smooth_volume(args.size)
    acquired = np.zeros(args.size, bool)
    acquired[::3] = True
    acquisition = mri.Acquisition(2, acquired, 3)
    mri.impute_volume(model, volume[:32, :32], acquisition)  # trace once
    volume_bytes = volume.nbytes
    reset_peak()
    before = resident_bytes("VmRSS")
    start = time.time()
    filled = mri.impute_volume(model, volume, acquisition)
    seconds = time.time() - start
    peak = resident_bytes("VmHWM") - before
    print(f"imputation of a {args.size}^3 volume: {seconds:.1f} s, peak memory "
          f"+{peak / 2**20:.0f} MiB = {peak / volume_bytes:.1f} volumes "
          f"(one volume {volume_bytes / 2**20:.0f} MiB; the result itself is one)")
    assert np.isfinite(filled).all()


if __name__ == "__main__":
    main()
