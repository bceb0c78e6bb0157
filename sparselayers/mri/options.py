"""The workflow's option checks, with NumPy only: the command line runs them
before TensorFlow is imported, so a mistyped option is reported at once.

Example:

>>> check_options(steps=3000, learning_rate=1e-3)
>>> check_options(patch_size=0)
Traceback (most recent call last):
ValueError: --patch-size must be a positive int; received 0.
"""

import os

import numpy as np

__all__ = ["check_options", "check_out_folder", "check_training"]

AXES = ("0", "1", "2", "sagittal", "coronal", "axial")


def check_options(**options):
    """ValueError naming the option (as the command line spells it) at fault.

    Counts (`steps_per_epoch`, `samples`, `filters`, `patch_size`,
    `batch_size`) are positive ints, `steps` an int >= 0 or None, `seed` and
    `draws` ints >= 0, `learning_rate` a finite number > 0, `every` None or an int
    >= 2, `axis` None, 0, 1, 2 or an anatomical name, `validation_share` a
    number in [0, 0.5].
    """
    def flag(name):
        return "--" + name.replace("_", "-")

    for name, value in options.items():
        if value is None and name in ("every", "axis"):
            continue
        if name == "every":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 2:
                raise ValueError(f"--every must be an int >= 2; received {value!r}.")
        elif name == "axis":
            integer = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
            if not (integer and -3 <= value <= 2) and str(value).lower() not in AXES:
                raise ValueError(f"--axis must be 0, 1, 2, sagittal, coronal or axial; received "
                                 f"{value!r}.")
        elif name in ("steps", "seed", "draws"):
            if value is None and name == "steps":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise ValueError(f"{flag(name)} must be an int >= 0; received {value!r}.")
        elif name == "validation_share":
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                    or not 0 <= value <= 0.5):
                raise ValueError(f"--validation-share must be a number in [0, 0.5]; received "
                                 f"{value!r}.")
        elif name == "learning_rate":
            if (isinstance(value, bool) or not isinstance(value, (int, float, np.number))
                    or not np.isfinite(value) or value <= 0):
                raise ValueError(f"{flag(name)} must be a finite number > 0; received "
                                 f"{value!r}.")
        elif isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{flag(name)} must be a positive int; received {value!r}.")


def check_out_folder(out):
    """ValueError unless `out` is, or can be made, a writable folder."""
    existing = os.path.abspath(out)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise ValueError(f"{out}: --out names a file ({existing}), not a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{out}: --out cannot be written (no permission on {existing}).")


def check_training(model, steps):
    """ValueError for ``--steps 0`` without a trained ``--model``: it would write an
    untrained model's output."""
    if model is None and steps == 0:
        raise ValueError("--steps 0 without --model would write an untrained model's output; "
                         "give a trained --model, or train (--steps > 0).")
