"""A training's backup that survives interruption, and resuming from it.

`keras.callbacks.BackupAndRestore` is not used here, for two reasons: it
writes its weights file in place (a kill during the write leaves a file
that cannot be read, and the training is lost), and it restarts the data
from the beginning, so a resumed training differs from an uninterrupted one.
`TrainingBackup` instead writes each epoch's weights and optimizer state
under a new name, renames it when complete, and then replaces the small JSON
file that names it (``state.json``, also renamed into place): a kill at any
moment leaves the previous complete backup or the new one. The JSON file
also records the training's settings and the number of completed epochs, so
`--resume` refuses a backup made with other settings (naming the setting)
and the data stream restarts at the right batch
(`training.training_dataset`'s ``start_batch``).

Example:

>>> backup = TrainingBackup("out/training_backup", settings)
>>> backup.check(resume)          # before any training: settings, readability
>>> initial_epoch = backup.restore(model) if resume else 0
>>> model.fit(..., initial_epoch=initial_epoch, callbacks=[backup.callback()])
>>> backup.remove()
"""

import json
import os
import shutil

import h5py
import keras

__all__ = ["TrainingBackup"]

STATE_FILE = "state.json"
PARTIAL = ".partial-"  # prefix of files being written
FORMAT = 1


class TrainingBackup:
    """The backup folder of one training.

    Args:
        folder: where the backup is kept (created at the first save).
        settings: a JSON-serialisable dict of what determines the training
            (option name -> value, with the command line's names); a backup
            is resumed only under equal settings.
    """

    def __init__(self, folder, settings):
        self.folder = str(folder)
        self.settings = json.loads(json.dumps(settings))  # as they read back
        # The mean training loss of every completed epoch (restored with the
        # weights: a resumed training's curve is whole).
        self.losses = []

    def exists(self):
        """Whether the folder holds a backup (leftovers of a killed first save are none)."""
        return any(not name.startswith(PARTIAL) for name in self._names())

    def _names(self):
        return os.listdir(self.folder) if os.path.isdir(self.folder) else []

    def check(self, resume):
        """Checks, before any training, that the backup can be used as asked.

        Without `resume` there must be no backup; with it, a backup (if any)
        must be readable and made with equal settings.

        Raises:
            ValueError: naming the backup and what is wrong with it.
        """
        if not resume:
            if self.exists():
                raise ValueError(f"{self.folder} holds a stopped run's backup: pass --resume to "
                                 "continue it, or delete the folder.")
            return
        self._read_state()

    def _read_state(self):
        """The checked state (a dict), or None when there is no backup."""
        state_path = os.path.join(self.folder, STATE_FILE)
        if not os.path.isfile(state_path):
            if self.exists():
                raise ValueError(f"{self.folder}: not a backup of this version (no {STATE_FILE}); "
                                 "delete the folder to start anew.")
            return None
        try:
            with open(state_path, encoding="utf-8") as handle:
                state = json.load(handle)
            state["epoch"], state["weights"] = int(state["epoch"]), str(state["weights"])
            settings = dict(state["settings"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise ValueError(f"{state_path}: the backup cannot be read ({error}); delete "
                             f"{self.folder} to start anew.") from None
        if state.get("format") != FORMAT:
            raise ValueError(f"{state_path}: a backup of another format ({state.get('format')}); "
                             f"delete {self.folder} to start anew.")
        for name in sorted(set(settings) | set(self.settings)):
            before, now = settings.get(name), self.settings.get(name)
            if before != now:
                raise ValueError(
                    f"--resume: the backup in {self.folder} was made with {name} {before}, this "
                    f"run has {name} {now}; give the same settings, or delete the folder to start "
                    "anew.")
        weights_path = os.path.join(self.folder, state["weights"])
        try:
            with h5py.File(weights_path, "r"):
                pass
        except OSError as error:
            raise ValueError(f"{weights_path}: the backup's weights cannot be read ({error}); "
                             f"delete {self.folder} to start anew.") from None
        return state

    def restore(self, model):
        """Loads the backup into a compiled `model`; returns the epochs it completed.

        Returns 0 (nothing loaded) when there is no backup.

        Raises:
            ValueError: naming the backup, if it was made with other settings
                (the first option that differs is named) or cannot be read.
        """
        state = self._read_state()
        if state is None:
            return 0
        weights_path = os.path.join(self.folder, state["weights"])
        if model.optimizer is not None and not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
        try:
            model.load_weights(weights_path)
        except Exception as error:  # h5py and Keras raise many kinds
            raise ValueError(f"{weights_path}: the backup's weights cannot be read ({error}); "
                             f"delete {self.folder} to start anew.") from None
        self.losses = [float(loss) for loss in state.get("losses", [])][:state["epoch"]]
        return state["epoch"]

    def save(self, model, epoch):
        """Backs up `model` (weights and optimizer state) after `epoch` completed epochs."""
        os.makedirs(self.folder, exist_ok=True)
        weights = f"epoch-{epoch:06d}.weights.h5"
        partial = os.path.join(self.folder, PARTIAL + weights)
        model.save_weights(partial)
        os.replace(partial, os.path.join(self.folder, weights))
        state = {"format": FORMAT, "epoch": epoch, "weights": weights,
                 "settings": self.settings, "losses": self.losses[:epoch]}
        partial_state = os.path.join(self.folder, PARTIAL + STATE_FILE)
        with open(partial_state, "w", encoding="utf-8") as handle:
            json.dump(state, handle, indent=1)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial_state, os.path.join(self.folder, STATE_FILE))
        # Only now are the older weights (and leftovers of a killed save) unused.
        for name in self._names():
            if name not in (weights, STATE_FILE):
                os.remove(os.path.join(self.folder, name))

    def remove(self):
        """Deletes the backup (the training completed)."""
        shutil.rmtree(self.folder, ignore_errors=True)

    def callback(self):
        """A Keras callback saving the backup at the end of every epoch."""
        return _SaveEveryEpoch(self)


class _SaveEveryEpoch(keras.callbacks.Callback):

    def __init__(self, backup):
        super().__init__()
        self.backup = backup

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        del self.backup.losses[epoch:]
        self.backup.losses.append(float(loss) if loss is not None else float("nan"))
        self.backup.save(self.model, epoch + 1)
