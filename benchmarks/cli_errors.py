"""Time to the error: every command-line mistake of issue 21, as a user meets it.

Makes a small synthetic scan and the faulty files in a temporary folder,
runs the installed ``sparselayers-impute-slices`` once per mistake, and
prints its exit status, the number of lines it printed and the seconds from
start to exit (TensorFlow's import included). Every row should read exit 2,
one line, well under 10 s.

    python benchmarks/cli_errors.py
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile

import numpy as np

FAST = ["--steps", "6", "--steps-per-epoch", "3", "--patch-size", "16", "--quiet"]


def make_files(folder):
    import nibabel

    rng = np.random.default_rng(0)
    axis = np.linspace(-1, 1, 24)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    volume = (100 * np.exp(-2 * (x ** 2 + y ** 2 + z ** 2)) + rng.normal(0, 1, x.shape) + 5)
    volume = volume.astype(np.float32)
    volume[:, :, np.arange(24) % 3 != 0] = 0
    paths = {"scan": os.path.join(folder, "scan.nii.gz")}
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), paths["scan"])
    os.makedirs(os.path.join(folder, "other"))
    paths["same_name"] = os.path.join(folder, "other", "scan.npy")
    np.save(paths["same_name"], volume)
    one = volume.copy()
    one[:, :, 1:] = 0
    paths["one_slice"] = os.path.join(folder, "one_slice.nii.gz")
    nibabel.save(nibabel.Nifti1Image(one, np.eye(4)), paths["one_slice"])
    damaged = bytearray(open(paths["scan"], "rb").read())
    damaged[len(damaged) // 2] ^= 0x10
    paths["damaged"] = os.path.join(folder, "damaged.nii.gz")
    open(paths["damaged"], "wb").write(damaged)
    paths["text_model"] = os.path.join(folder, "text.keras")
    open(paths["text_model"], "w").write("not a model")
    paths["random_h5"] = os.path.join(folder, "random.h5")
    open(paths["random_h5"], "wb").write(rng.bytes(1000))
    paths["no_config"] = os.path.join(folder, "no_config.keras")
    with zipfile.ZipFile(paths["no_config"], "w") as archive:
        archive.writestr("metadata.json", "{}")
    paths["a_file"] = os.path.join(folder, "a_file.txt")
    open(paths["a_file"], "w").write("x")
    import keras

    single = keras.Sequential([keras.Input((None, None, 1)),
                               keras.layers.Conv2D(1, 3, padding="same")])
    paths["single_input"] = os.path.join(folder, "single_input.keras")
    single.save(paths["single_input"])
    backup = os.path.join(folder, "old_backup", "training_backup")
    os.makedirs(backup)
    open(os.path.join(backup, "latest.weights.h5"), "wb").write(b"truncated")
    paths["old_backup"] = os.path.dirname(backup)
    return paths


# Trains a few steps and is killed right after its first backup: a stopped run.
STOPPED_RUN = """
import os, signal, sys
from sparselayers.mri import cli, training_backup

original_save = training_backup.TrainingBackup.save

def save(self, model, epoch):
    original_save(self, model, epoch)
    os.kill(os.getpid(), signal.SIGKILL)

training_backup.TrainingBackup.save = save
sys.exit(cli.main(sys.argv[1:]))
"""


def make_backups(paths, folder, fast):
    """Two stopped runs' outputs: one to resume with other settings, one with a
    truncated weights file."""
    for name in ("stopped", "truncated"):
        out = os.path.join(folder, name)
        subprocess.run([sys.executable, "-c", STOPPED_RUN, paths["scan"], "--out", out, *fast],
                       capture_output=True, timeout=600)
        paths[name] = out
    backup = os.path.join(paths["truncated"], "training_backup")
    weights = [name for name in os.listdir(backup) if name.endswith(".weights.h5")][0]
    with open(os.path.join(backup, weights), "r+b") as handle:
        handle.truncate(200)


def mistakes(paths, folder):
    fast = FAST
    scan, out = paths["scan"], os.path.join(folder, "out")
    return [
        ("--learning-rate nan", [scan, "--out", out, *fast, "--learning-rate", "nan"]),
        ("--learning-rate -1", [scan, "--out", out, *fast, "--learning-rate", "-1"]),
        ("--learning-rate 0", [scan, "--out", out, *fast, "--learning-rate", "0"]),
        ("--steps 2.5", [scan, "--out", out, "--steps", "2.5"]),
        ("--patch-size 64 (24^3 volume)", [scan, "--out", out, *fast, "--patch-size", "64"]),
        ("--patch-size 0", [scan, "--out", out, *fast, "--patch-size", "0"]),
        ("--patch-size -4", [scan, "--out", out, *fast, "--patch-size", "-4"]),
        ("--batch-size 0", [scan, "--out", out, *fast, "--batch-size", "0"]),
        ("--steps-per-epoch 0", [scan, "--out", out, *fast, "--steps-per-epoch", "0"]),
        ("--steps-per-epoch -5", [scan, "--out", out, *fast, "--steps-per-epoch", "-5"]),
        ("--seed -1", [scan, "--out", out, *fast, "--seed", "-1"]),
        ("--out an existing file", [scan, "--out", paths["a_file"], *fast]),
        ("--out file/sub", [scan, "--out", os.path.join(paths["a_file"], "sub"), *fast]),
        ("--model single-input Sequential", [scan, "--out", out, "--model",
                                             paths["single_input"], "--quiet"]),
        ("--model zip without config.json", [scan, "--out", out, "--model",
                                             paths["no_config"], "--quiet"]),
        ("--model random bytes .h5", [scan, "--out", out, "--model", paths["random_h5"],
                                      "--quiet"]),
        ("--model text file .keras", [scan, "--out", out, "--model", paths["text_model"],
                                      "--quiet"]),
        ("flipped bit in .nii.gz", [paths["damaged"], "--out", out, *fast]),
        ("scan.nii.gz + other/scan.npy", [scan, paths["same_name"], "--out", out, *fast]),
        ("VAE --steps 0 without --model", [scan, "--out", out, "--variant",
                                           "conv-interp-residual-vae", "--steps", "0"]),
        ("a single acquired slice", [paths["one_slice"], "--out", out, *fast]),
        ("--resume, backup of another format", [scan, "--out", paths["old_backup"], *fast,
                                                "--resume"]),
        ("--resume, backup with other settings", [scan, "--out", paths["stopped"], *fast,
                                                  "--resume", "--patch-size", "12"]),
        ("--resume, truncated backup weights", [scan, "--out", paths["truncated"], *fast,
                                                "--resume"]),
        ("--axis 5", [scan, "--out", out, *fast, "--axis", "5"]),
        ("--every 1", [scan, "--out", out, *fast, "--every", "1"]),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    script = os.path.join(os.path.dirname(sys.executable), "sparselayers-impute-slices")
    if not os.path.exists(script):
        script = shutil.which("sparselayers-impute-slices")
    if not script:
        sys.exit("sparselayers-impute-slices is not installed (pip install -e .)")
    folder = tempfile.mkdtemp(prefix="cli_errors_")
    try:
        paths = make_files(folder)
        make_backups(paths, folder, FAST)
        print(f"{'mistake':38s} exit lines  seconds  message")
        worst = 0.0
        for name, argv in mistakes(paths, folder):
            start = time.monotonic()
            result = subprocess.run([script, *argv], capture_output=True, text=True,
                                    timeout=600)
            seconds = time.monotonic() - start
            worst = max(worst, seconds)
            lines = [line for line in (result.stdout + result.stderr).splitlines()
                     if line.strip()]
            message = lines[-1].replace("sparselayers-impute-slices: error: ", "") if lines \
                else ""
            message = message.replace(folder + os.sep, "")
            print(f"{name:38s} {result.returncode:4d} {len(lines):5d} {seconds:8.1f}  "
                  f"{message[:70]}")
        print(f"slowest: {worst:.1f} s")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
