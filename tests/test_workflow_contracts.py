"""Issue 21: the thick-slice workflow never writes a wrong volume.

One regression test per reported fault (each failed before its fix): every
mistake is a ValueError naming the option or file (exit status 2 and one
line from the command line), before any training; a training survives
SIGINT and SIGKILL at any moment and, resumed, ends with the output of an
uninterrupted run. Earlier items of the issue are tested in
tests/test_slice_workflow.py (options, --out, exact --steps, divergence,
header codes, --help, counts of the module functions).
"""

import contextlib
import gzip
import io
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

nibabel = pytest.importorskip("nibabel")

import keras  # noqa: E402

import sparselayers  # noqa: E402
from sparselayers import mri  # noqa: E402
from sparselayers.mri import cli  # noqa: E402
from training_hooks import fit_callbacks  # noqa: E402

SHAPE = (20, 22, 24)


def _volume(seed=0, shape=SHAPE, every=3):
    """A smooth non-negative 'head', every 3rd slice kept along axis 2, the rest 0."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij"), -1)
    inside = (grid ** 2).sum(-1) < 0.8
    noise = rng.normal(size=shape)
    for axis in range(3):
        noise = sum(np.roll(noise, shift, axis) for shift in (-1, 0, 1)) / 3
    volume = np.where(inside, 400 + 100 * noise / noise.std(), 0.0).astype(np.float32)
    kept = np.arange(shape[2]) % every == 0
    volume[:, :, ~kept] = 0
    return volume, kept


def _write(path, data, zooms=(1.0, 1.0, 1.0)):
    affine = np.diag(list(zooms) + [1.0])
    nibabel.save(nibabel.Nifti1Image(np.asarray(data, np.float32), affine), str(path))
    return str(path)


@pytest.fixture
def scan(tmp_path):
    return _write(tmp_path / "scan.nii.gz", _volume()[0])


FAST = dict(steps=4, steps_per_epoch=2, patch_size=12, filters=2, verbose=0, montage=False)


def _run_main(argv):
    """(exit status, stderr lines) of the command line, in this process."""
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = cli.main([str(a) for a in argv])
        except SystemExit as exit_:
            status = exit_.code
    return status, [line for line in stderr.getvalue().splitlines() if line.strip()]


# --- --model is checked by calling it once --------------------------------------------------


def test_a_model_that_does_not_map_image_and_mask_to_an_image_is_refused(scan, tmp_path):
    single = keras.Sequential([keras.Input((None, None, 1)), keras.layers.Conv2D(1, 3,
                                                                                padding="same")])
    with pytest.raises(ValueError, match=r"takes 1 input\(s\)"):
        mri.impute_slices([scan], tmp_path / "out", model=single, verbose=0)
    image, mask = keras.Input((None, None, 1)), keras.Input((None, None, 1))
    halving = keras.Model([image, mask], keras.layers.Conv2D(1, 3, strides=2, padding="same")(
        keras.layers.Concatenate()([image, mask])))
    with pytest.raises(ValueError, match="not to an image of the same shape"):
        mri.impute_slices([scan], tmp_path / "out", model=halving, verbose=0)
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_unreadable_model_files_are_named(scan, tmp_path):
    import zipfile

    text = tmp_path / "text.keras"
    text.write_text("not a model")
    no_config = tmp_path / "no_config.keras"
    with zipfile.ZipFile(no_config, "w") as archive:
        archive.writestr("metadata.json", "{}")
    random_bytes = tmp_path / "random.h5"
    random_bytes.write_bytes(np.random.default_rng(0).bytes(2000))
    for path in (text, no_config, random_bytes, tmp_path / "absent.keras"):
        status, lines = _run_main([scan, "--out", tmp_path / "out", "--model", path, "--quiet"])
        assert status == 2 and len(lines) == 1, (path, lines)
        assert str(path) in lines[0] and "--model" in lines[0]


# --- inputs ---------------------------------------------------------------------------------


def test_a_damaged_gzip_volume_is_refused(scan, tmp_path):
    compressed = bytearray(open(scan, "rb").read())
    assert mri.read_volume(scan).data.shape == SHAPE
    compressed[len(compressed) // 2] ^= 0x10   # one flipped bit in the deflate stream
    damaged = tmp_path / "damaged.nii.gz"
    damaged.write_bytes(bytes(compressed))
    with pytest.raises(gzip.BadGzipFile):
        gzip.decompress(bytes(compressed))     # gzip itself refuses the file
    with pytest.raises(ValueError, match=r"damaged\.nii\.gz: not a readable volume \(damaged"):
        mri.read_volume(damaged)
    # .npz members carry a CRC that zipfile checks: refused too.
    np.savez_compressed(tmp_path / "scan.npz", volume=_volume()[0])
    archive = bytearray((tmp_path / "scan.npz").read_bytes())
    archive[len(archive) // 2] ^= 0x10
    (tmp_path / "damaged.npz").write_bytes(bytes(archive))
    with pytest.raises(ValueError, match=r"damaged\.npz: not a readable volume .*CRC"):
        mri.read_volume(tmp_path / "damaged.npz")


def test_a_single_acquired_slice_is_named_as_such(tmp_path):
    volume, _ = _volume()
    volume[:, :, np.arange(SHAPE[2]) != 12] = 0   # slice 12 alone holds the head
    with pytest.raises(ValueError, match="only one slice is acquired .* along axis 2"):
        mri.find_acquisition(volume, name="one")


def test_acquisition_arguments_are_checked():
    volume, kept = _volume()
    with pytest.raises(ValueError, match=r"axis must be an int 0, 1 or 2; received 2\.0"):
        mri.find_acquisition(volume, axis=2.0)
    with pytest.raises(ValueError, match="every must be an int >= 2; received 2.5"):
        mri.find_acquisition(volume, every=2.5)
    with pytest.raises(ValueError, match="1-D bool array"):
        mri.Acquisition(2, kept.astype(np.float32), 3)
    wrong = mri.Acquisition(2, kept[:-1], 3)
    with pytest.raises(ValueError, match="23 slices|describes 23"):
        mri.impute_volume(None, volume, wrong)


def test_output_name_clashes_are_refused_before_work(tmp_path, scan):
    other = tmp_path / "other"
    other.mkdir()
    np.save(other / "scan.npy", _volume(1)[0])
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=r"would both write .*scan_montage\.png"):
        mri.impute_slices([scan, other / "scan.npy"], out, **{**FAST, "montage": True})
    assert not out.exists()


def test_steps_zero_without_a_model_is_refused(scan, tmp_path):
    for variant in ("conv-interp-residual", "conv-interp-residual-vae"):
        status, lines = _run_main([scan, "--out", tmp_path / "out", "--variant", variant,
                                   "--steps", 0])
        assert status == 2 and len(lines) == 1 and "untrained" in lines[0]


def test_patch_size_larger_than_the_slices_is_refused_before_training(scan, tmp_path):
    status, lines = _run_main([scan, "--out", tmp_path / "out", "--patch-size", 64, "--quiet"])
    assert status == 2 and len(lines) == 1
    assert "20 x 22 voxels, smaller than --patch-size 64" in lines[0]


def test_a_read_only_out_is_refused_before_training(scan, tmp_path, monkeypatch):
    # The case failed with PermissionError at the first backup, after
    # the whole training. A real read-only folder where the OS enforces it
    # (not for root, who may write anywhere), and the check itself always.
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        if os.geteuid() != 0:
            status, lines = _run_main([scan, "--out", folder / "out", "--quiet"])
            assert status == 2 and len(lines) == 1 and "cannot be written" in lines[0]
    finally:
        folder.chmod(0o755)
    from sparselayers.mri import options

    real_access = os.access
    monkeypatch.setattr(options.os, "access", lambda path, mode: (
        False if str(path) == str(folder) else real_access(path, mode)))
    status, lines = _run_main([scan, "--out", folder / "out", "--quiet"])
    assert status == 2 and len(lines) == 1
    assert f"no permission on {folder}" in lines[0]


# --- outputs: magnitude images stay non-negative ---------------------------------------------


def _negative_model(offset):
    """conv-interp-residual whose correction adds `offset` (normalised units) everywhere."""
    model = sparselayers.build_variant("conv-interp-residual", (None, None, 1), filters=2)
    bias = model.get_layer("correction").bias
    bias.assign(np.full(bias.shape, offset, np.float32))
    return model


def test_magnitude_images_get_no_negative_voxels(tmp_path):
    volume, kept = _volume()
    path = _write(tmp_path / "magnitude.nii.gz", volume)
    written = mri.impute_slices([path], tmp_path / "out", model=_negative_model(-3.0),
                                verbose=0, montage=False)
    result = nibabel.load(written[path]).get_fdata(dtype=np.float32)
    assert result.min() == 0 and np.count_nonzero(result[:, :, ~kept] == 0) > 0
    np.testing.assert_array_equal(result[:, :, kept], volume[:, :, kept])
    # The case: uint8 voxels with a scale slope (all acquired >= 0).
    image = nibabel.Nifti1Image(np.round(volume / 4).astype(np.uint8), np.eye(4))
    image.header.set_slope_inter(4.0, 0.0)
    path = str(tmp_path / "unsigned.nii.gz")
    nibabel.save(image, path)
    written = mri.impute_slices([path], tmp_path / "out_uint8", model=_negative_model(-3.0),
                                verbose=0, montage=False)
    assert nibabel.load(written[path]).get_fdata().min() == 0
    # A signed image (acquired voxels < 0) keeps negative values.
    signed = volume - 200 * (volume != 0)
    path = _write(tmp_path / "signed.nii.gz", signed)
    written = mri.impute_slices([path], tmp_path / "out2", model=_negative_model(-3.0),
                                verbose=0, montage=False)
    assert nibabel.load(written[path]).get_fdata().min() < -250


def test_restored_thick_slices_stay_above_the_minimum_and_consistent():
    # Box-profile restoration with a model pushing every voxel far below 0:
    # projections and clipping alternate; the result is >= the minimum, and
    # the profile reproduces the (non-negative) slices closely.
    rng = np.random.default_rng(3)
    slices = rng.uniform(0.0, 1.0, size=(6, 10, 12)).astype(np.float32)
    slices[:, :3] = 0.0            # background rows, where negatives would appear
    grid = mri.thick_slice_grid(6, 0, 3.0, 1.0, mri.SliceProfile("box", 3.0))
    restored = mri.restore_volume(_negative_model(-2.0), slices, grid, minimum=0.0)
    assert restored.min() >= 0.0
    reproduced = grid.forward_matrix() @ restored.reshape(grid.size, -1)
    error = np.abs(reproduced - slices.reshape(6, -1)).max()
    assert error < 0.02, error
    unclipped = mri.restore_volume(_negative_model(-2.0), slices, grid)
    assert unclipped.min() < -0.1   # the bound did something


# --- --resume ---------------------------------------------------------------------------------


def _stopped_run(scan, out, **options):
    """A run stopped (KeyboardInterrupt) after its first epoch's backup."""

    class Stop(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                raise KeyboardInterrupt

    with fit_callbacks(last=[Stop()]), pytest.raises(KeyboardInterrupt):
        mri.impute_slices([scan], out, **{**FAST, **options})


def test_resume_with_other_settings_names_the_setting(scan, tmp_path):
    out = tmp_path / "out"
    _stopped_run(scan, out)
    with pytest.raises(ValueError, match=r"made with --patch-size 12, this run has --patch-size "
                                         r"16"):
        mri.impute_slices([scan], out, resume=True, **{**FAST, "patch_size": 16})
    with pytest.raises(ValueError, match="made with --learning-rate 0.001, this run has "
                                         "--learning-rate 0.002"):
        mri.impute_slices([scan], out, resume=True, **{**FAST, "learning_rate": 2e-3})
    # A damaged backup is one line naming it, not an h5py traceback.
    folder = out / mri.workflow.BACKUP_FOLDER
    state = json.loads((folder / "state.json").read_text())
    weights = folder / state["weights"]
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ValueError, match="backup's weights cannot be read"):
        mri.impute_slices([scan], out, resume=True, **FAST)
    # A backup of Keras' BackupAndRestore (before this version) is named as such.
    for name in os.listdir(folder):
        os.remove(folder / name)
    (folder / "latest.weights.h5").write_bytes(b"x")
    with pytest.raises(ValueError, match="not a backup of this version"):
        mri.impute_slices([scan], out, resume=True, **FAST)


def test_a_diverged_training_keeps_the_last_good_backup(scan, tmp_path):
    # The loss turns NaN in the second epoch: the error names the learning
    # rate, nothing is written, and the first epoch's backup resumes cleanly.
    class Poison(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 1:
                bias = self.model.get_layer("correction").bias
                bias.assign(np.full(bias.shape, np.nan, np.float32))

    out = tmp_path / "out"
    with fit_callbacks(first=[Poison()]), pytest.raises(
            ValueError, match="training diverged at step 3 .*--learning-rate"):
        mri.impute_slices([scan], out, **FAST)
    assert not list(out.glob("*_imputed*")) and not (out / "model.keras").exists()
    state = json.loads((out / mri.workflow.BACKUP_FOLDER / "state.json").read_text())
    assert state["epoch"] == 1
    written = mri.impute_slices([scan], out, resume=True, **FAST)
    assert np.all(np.isfinite(nibabel.load(written[scan]).get_fdata()))


def test_training_dataset_starts_at_any_batch():
    stacks = [mri.training.acquired_slices(*_scaled(seed)) for seed in range(2)]
    first = [tuple(np.asarray(t) for t in (b[0][0], b[0][1], b[1], b[2])) for b in
             mri.training_dataset(stacks, 3, patch_size=12, batch_size=5, patches_per_visit=7,
                                  seed=4).take(9)]
    later = [tuple(np.asarray(t) for t in (b[0][0], b[0][1], b[1], b[2])) for b in
             mri.training_dataset(stacks, 3, patch_size=12, batch_size=5, patches_per_visit=7,
                                  seed=4, start_batch=6).take(3)]
    for expected, got in zip(first[6:], later):
        for a, b in zip(expected, got):
            np.testing.assert_array_equal(a, b)
    other_seed = next(iter(mri.training_dataset(stacks, 3, patch_size=12, batch_size=5,
                                                patches_per_visit=7, seed=5)))
    assert not np.array_equal(np.asarray(other_seed[1]), first[0][2])


def _scaled(seed):
    volume, _ = _volume(seed)
    acquisition = mri.find_acquisition(volume)
    scaled, _ = mri.normalize(volume, acquisition)
    return scaled, acquisition


def _cli(*args):
    """The command as a user runs it: the installed console script."""
    script = os.path.join(os.path.dirname(sys.executable), "sparselayers-impute-slices")
    if not os.path.exists(script):
        pytest.skip("the console script is not installed (pip install -e .)")
    return [script, *map(str, args)]


@pytest.fixture
def sigint_handled():
    """Child processes get Python's Ctrl-C handler even when this run was started with
    SIGINT ignored (a background job of a non-interactive shell, as `cmd &` in a
    script): a signal handled here is reset to the default in a child on exec, where
    Python installs its handler; an ignored one stays ignored, and a SIGINT does nothing."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


KILL_OPTIONS = ("--steps", 40, "--steps-per-epoch", 2, "--patch-size", 12, "--filters", 4,
                "--batch-size", 8, "--no-montage", "--quiet")


@pytest.mark.process
def test_sigint_and_sigkill_then_resume_give_the_uninterrupted_output(scan, tmp_path,
                                                                      sigint_handled):
    """Kill test: SIGINT and SIGKILL at random moments, resumed, equal the uninterrupted run."""
    start = time.monotonic()
    reference = subprocess.run(_cli(scan, "--out", tmp_path / "reference", *KILL_OPTIONS),
                               capture_output=True, text=True, timeout=600)
    duration = time.monotonic() - start
    assert reference.returncode == 0, reference.stderr
    rng = random.Random(21)
    out = tmp_path / "interrupted"
    interruptions = []
    for attempt in range(12):
        command = _cli(scan, "--out", out, *KILL_OPTIONS, "--resume")
        process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
        if attempt < 4:   # two SIGINTs and two SIGKILLs at random moments, then let it end
            delay = rng.uniform(0.3, 0.9) * duration
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                sent = (signal.SIGINT, signal.SIGKILL)[attempt % 2]
                process.send_signal(sent)
                interruptions.append((sent.name, round(delay, 1), process.wait(timeout=600)))
                stderr = process.stderr.read()
                assert "Traceback" not in stderr, stderr
                if sent == signal.SIGINT and process.returncode == 130:
                    assert stderr.strip().splitlines()[-1].endswith("from its last backup."), \
                        stderr
                continue
        process.wait(timeout=600)
        assert process.returncode == 0, process.stderr.read()
        break
    assert interruptions, "no interruption landed"
    expected = nibabel.load(str(tmp_path / "reference" / "scan_imputed.nii.gz")).get_fdata()
    got = nibabel.load(str(out / "scan_imputed.nii.gz")).get_fdata()
    np.testing.assert_array_equal(got, expected, err_msg=str(interruptions))
    assert not (out / mri.workflow.BACKUP_FOLDER).exists()


INTERRUPT_IN_A_FINALISER = """
import sys, time, weakref
from sparselayers import console

if sys.argv[1] == "hook":
    console.interrupts_never_lost()
    console.interrupts_never_lost()   # twice: still one re-delivery


class Thing:
    pass


def finaliser(_):
    raise {error}


try:
    thing = Thing()
    reference = weakref.ref(thing, finaliser)
    del thing   # the finaliser runs here; its exception cannot propagate
    for _ in range(300):
        time.sleep(0.01)
    print("went on")
except KeyboardInterrupt:
    print("interrupted")
"""


@pytest.mark.process
@pytest.mark.parametrize("hook", ["hook", "none"])
def test_a_ctrl_c_inside_a_finaliser_still_ends_the_command(hook, tmp_path, sigint_handled):
    """Python prints an exception raised in a weakref callback as "Exception ignored"
    and goes on; with `console.interrupts_never_lost` a KeyboardInterrupt there ends
    the program as any Ctrl-C, with no traceback. Without the hook: the CI failure."""
    script = tmp_path / "finaliser.py"
    script.write_text(INTERRUPT_IN_A_FINALISER.format(error="KeyboardInterrupt"))
    result = subprocess.run([sys.executable, str(script), hook], capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    if hook == "hook":
        assert result.stdout.strip() == "interrupted", result.stdout
        assert "Traceback" not in result.stderr, result.stderr
    else:
        assert result.stdout.strip() == "went on", result.stdout
        assert "Exception ignored" in result.stderr, result.stderr


@pytest.mark.process
def test_other_exceptions_in_a_finaliser_are_printed_as_before(tmp_path, sigint_handled):
    script = tmp_path / "finaliser.py"
    script.write_text(INTERRUPT_IN_A_FINALISER.format(error="ValueError('kept')"))
    result = subprocess.run([sys.executable, str(script), "hook"], capture_output=True,
                            text=True, timeout=300)
    assert result.stdout.strip() == "went on", result.stdout
    assert "Exception ignored" in result.stderr and "ValueError: kept" in result.stderr, \
        result.stderr


INTERRUPT_LOST_IN_C_CODE = """
import os, signal, sys, time
import sparselayers.mri.workflow
from sparselayers.mri import cli


def impute_slices(*args, **kwargs):
    # As TensorFlow's C++ code calling back into Python: the callback raises the
    # KeyboardInterrupt, the C code drops it and fails in its own way.
    try:
        if sys.argv[1] == "interrupt":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(30)
    except KeyboardInterrupt:
        pass
    raise SystemError("Objects/listobject.c:338: bad argument to internal function")


sparselayers.mri.workflow.impute_slices = impute_slices
sys.exit(cli.main([sys.argv[2], "--out", sys.argv[3], "--quiet"]))
"""


@pytest.mark.process
@pytest.mark.parametrize("case", ["interrupt", "no interrupt"])
def test_a_ctrl_c_that_tensorflow_turns_into_another_error_is_an_interruption(
        case, scan, tmp_path, sigint_handled):
    """A SIGINT in a callback of C code can come back as a SystemError (a CI run, in
    ``model.fit``): the command reports the interruption (130, no traceback); the same
    error with no Ctrl-C is a crash and keeps its traceback."""
    script = tmp_path / "lost.py"
    script.write_text(INTERRUPT_LOST_IN_C_CODE)
    result = subprocess.run([sys.executable, str(script), case, str(scan),
                             str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    if case == "interrupt":
        assert result.returncode == 130, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1].endswith("from its last backup.")
    else:
        assert result.returncode == 1, result.stderr
        assert "SystemError: Objects/listobject.c:338" in result.stderr, result.stderr


KILL_DURING_SAVE = """
import os, signal, sys
import keras
from sparselayers.mri import cli

original = keras.Model.save_weights

def save_weights(self, path, *args, **kwargs):
    original(self, path, *args, **kwargs)
    if "epoch-000003" in os.path.basename(str(path)):
        with open(path, "r+b") as handle:   # half-written, then killed mid-write
            handle.truncate(os.path.getsize(path) // 2)
        os.kill(os.getpid(), signal.SIGKILL)

keras.Model.save_weights = save_weights
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.mark.process
def test_sigkill_during_the_backup_write_resumes_from_the_previous_backup(scan, tmp_path):
    reference = subprocess.run(_cli(scan, "--out", tmp_path / "reference", *KILL_OPTIONS),
                               capture_output=True, text=True, timeout=600)
    assert reference.returncode == 0, reference.stderr
    out = tmp_path / "out"
    killed = subprocess.run([sys.executable, "-c", KILL_DURING_SAVE,
                             *map(str, (scan, "--out", out, *KILL_OPTIONS))],
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL
    folder = out / mri.workflow.BACKUP_FOLDER
    names = sorted(os.listdir(folder))
    assert ".partial-epoch-000003.weights.h5" in names and "epoch-000002.weights.h5" in names
    assert json.loads((folder / "state.json").read_text())["epoch"] == 2
    resumed = subprocess.run(_cli(scan, "--out", out, *KILL_OPTIONS, "--resume"),
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(
        nibabel.load(str(out / "scan_imputed.nii.gz")).get_fdata(),
        nibabel.load(str(tmp_path / "reference" / "scan_imputed.nii.gz")).get_fdata())


def test_backup_keeps_the_previous_one_until_the_new_one_is_complete(tmp_path):
    from sparselayers.mri import training_backup

    model = sparselayers.build_variant("conv-interp-residual", (None, None, 1), filters=2)
    model.compile(keras.optimizers.Adam(1e-3), loss="mse")
    backup = training_backup.TrainingBackup(tmp_path / "backup", {"--seed": 0})
    backup.save(model, 1)
    saved = [np.array(v) for v in model.weights]
    original = model.save_weights

    def failing_save(path, *args, **kwargs):
        original(path, *args, **kwargs)
        raise OSError("disk full")   # after the partial file, before the rename

    model.save_weights = failing_save
    for variable in model.weights:
        variable.assign(variable + 1.0)
    with pytest.raises(OSError):
        backup.save(model, 2)
    del model.save_weights
    assert backup.restore(model) == 1
    for expected, variable in zip(saved, model.weights):
        np.testing.assert_array_equal(np.array(variable), expected)
    with pytest.raises(ValueError, match="holds a stopped run's backup"):
        backup.check(resume=False)
    other = training_backup.TrainingBackup(tmp_path / "backup", {"--seed": 1})
    with pytest.raises(ValueError, match="made with --seed 0, this run has --seed 1"):
        other.check(resume=True)


# --- the command line's numeric options, all of them -----------------------------------------


@pytest.mark.process
def test_cli_numeric_options_run_or_are_refused_in_one_line(scan):
    """Hypothesis over the CLI's numeric options: exit 0 with a finite output, or exit 2 and one
    line; nothing else (no traceback, no other status)."""
    hypothesis = pytest.importorskip("hypothesis")
    strategies = hypothesis.strategies

    statuses = []
    valid = strategies.fixed_dictionaries({
        "steps": strategies.integers(1, 3), "steps_per_epoch": strategies.integers(1, 3),
        "patch_size": strategies.integers(4, 20), "batch_size": strategies.integers(1, 4),
        "filters": strategies.integers(1, 3), "samples": strategies.integers(1, 3),
        "seed": strategies.integers(0, 3),
        "learning_rate": strategies.floats(1e-5, 1e-2)})
    anything = strategies.one_of(
        strategies.integers(-3, 40), strategies.floats(allow_nan=True, allow_infinity=True),
        strategies.sampled_from(["", "abc", "2.5", "nan", "-inf", "1e400", "0x10", "1e4"]))

    @hypothesis.settings(max_examples=25, deadline=None, derandomize=True,
                         suppress_health_check=list(hypothesis.HealthCheck))
    @hypothesis.given(valid, strategies.dictionaries(
        strategies.sampled_from(["steps", "steps_per_epoch", "patch_size", "batch_size",
                                 "filters", "samples", "seed", "learning_rate"]),
        anything, max_size=2))
    def check(options, changed):
        options = {**options, **changed}   # valid options, up to two of them changed at will
        with tempfile.TemporaryDirectory() as out:
            argv = [scan, "--out", out, "--quiet", "--no-montage"]
            for name, value in options.items():
                argv += [f"--{name.replace('_', '-')}={value}"]
            status, lines = _run_main(argv)
            statuses.append(status)
            assert status in (0, 2), (argv, status, lines)
            if status == 2:
                assert len(lines) == 1 and lines[0].startswith("sparselayers-impute-slices: "
                                                               "error: "), lines
            else:
                assert lines == []
                written = nibabel.load(os.path.join(out, "scan_imputed.nii.gz")).get_fdata()
                assert np.all(np.isfinite(written))

    check()
    assert statuses.count(0) >= 1 and statuses.count(2) >= 10, statuses  # both kinds were drawn
