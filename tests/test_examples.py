"""The example scripts run end to end (tiny settings, offline data)."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

# The examples run as a user runs them, in a fresh interpreter each; the
# numerics they print are tested in-process elsewhere (see the "process" marker).
pytestmark = pytest.mark.process

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = ["train_sparse_vae.py", "linear_subspace.py", "mri_slice_imputation.py",
            "export_serving.py"]


# TensorFlow's C++ log lines ("I0000 ...", "E0000 ... cuInit", absl's
# "WARNING: All log messages before absl::InitializeLog()") and oneDNN notices.
TENSORFLOW_NOISE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages)|oneDNN|cuda", re.M)


def _run(script, *args, cwd, with_stderr=False):
    """Runs an example as a user would (no logging variables set); its stdout
    (followed by its stderr if `with_stderr`)."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("TF_CPP", "SPARSELAYERS_TF"))}
    env["MPLBACKEND"] = "Agg"
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    noise = TENSORFLOW_NOISE.search(result.stderr + result.stdout)
    assert noise is None, f"TensorFlow log output in a normal run: {result.stderr[-2000:]}"
    return result.stdout + result.stderr if with_stderr else result.stdout


# Runs an example's --help in a fresh interpreter and reports whether
# TensorFlow got imported (it must not be: --help answers before it loads).
HELP_PROBE = """
import runpy, sys
sys.argv = [{script!r}, "--help"]
sys.path.insert(0, {folder!r})
try:
    runpy.run_path({script!r}, run_name="__main__")
except SystemExit:
    pass
print("tensorflow imported:", "tensorflow" in sys.modules)
"""


@pytest.mark.parametrize("script", EXAMPLES)
def test_help_shows_defaults_without_importing_tensorflow(script, tmp_path):
    path = os.path.join(ROOT, "examples", script)
    probe = HELP_PROBE.format(script=path, folder=os.path.dirname(path))
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout and "(default:" in result.stdout
    assert "tensorflow imported: False" in result.stdout
    options = re.findall(r"^  (--[a-z-]+)(.*)$", result.stdout, re.M)
    assert options, result.stdout
    for option, rest in options:  # every option has help text (argparse indents it)
        assert rest.strip() or option == "--help", f"{script} {option} has no help text"
    # Each default once and truly (issue 21): none beside a help text that
    # already says it, no "(default: None)", no flag's "(default: False)".
    flat = " ".join(result.stdout.split())
    assert "(default: None)" not in flat and "(default: False)" not in flat, flat
    assert not re.search(r"default[^()]*\) \(default", flat), flat


def test_command_line_help_without_importing_tensorflow(tmp_path):
    probe = ("import sys\n"
             "sys.argv = ['sparselayers-impute-slices', '--help']\n"
             "from sparselayers.mri.cli import main\n"
             "try:\n    main()\nexcept SystemExit:\n    pass\n"
             "print('tensorflow imported:', 'tensorflow' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage: sparselayers-impute-slices" in result.stdout
    assert "tensorflow imported: False" in result.stdout


def test_bad_variant_is_a_usage_error(tmp_path):
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", "export_serving.py"), "--variant",
         "conv-bogus"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "invalid choice: 'conv-bogus'" in result.stderr
    assert "Traceback" not in result.stderr


def test_train_sparse_vae_quick(tmp_path):
    out = _run("train_sparse_vae.py", "--epochs", "1", "--limit", "200", "--variants",
               "linear,conv-sparse", "--quiet", "--out", str(tmp_path), cwd=tmp_path)
    assert "conv-sparse" in out and "mean fill" in out and "linear subspace  " in out
    assert "row interp" not in out
    assert "conv-sparse: " in out and "vs linear subspace" in out
    assert (tmp_path / "sparse_vae_75.png").stat().st_size > 1000
    out = _run("linear_subspace.py", "--epochs", "1", "--quiet", "--out",
               str(tmp_path / "subspace.png"), cwd=tmp_path)
    assert "linear subspace" in out and (tmp_path / "subspace.png").exists()


@pytest.mark.slow  # the README's first command as it runs: about 2 minutes
def test_main_example_shows_conv_variants_well_below_linear_and_mean_fill(tmp_path):
    """The figures the README promises: every convolutional variant at least
    15% below both the linear subspace model and mean filling, no warnings."""
    out = _run("train_sparse_vae.py", "--quiet", "--out", str(tmp_path), cwd=tmp_path,
               with_stderr=True)
    scores = dict(re.findall(r"^  (\S+(?: fill| subspace)?) +(\d\.\d{4})$", out, re.M))
    conv = [name for name in scores if name.startswith("conv-")]
    assert len(conv) == 3, out
    for name in conv:
        assert float(scores[name]) <= 0.85 * float(scores["linear subspace"]), out
        assert float(scores[name]) <= 0.85 * float(scores["mean fill"]), out
    assert "warn" not in out.lower(), out


def test_the_embedded_sample_is_mnist_sized_and_offline():
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        import example_utils
    finally:
        sys.path.pop(0)
    images = example_utils.load_images()
    assert images.shape == (3500, 28, 28, 1) and images.dtype == np.float32
    assert 0.0 == images.min() and images.max() == 1.0


def test_mri_and_export_examples(tmp_path):
    out = _run("mri_slice_imputation.py", "--size", "32", "--phantoms", "2", "--steps", "20",
               "--quiet", "--out", str(tmp_path / "mri"), cwd=tmp_path)
    assert "every 6th slice along axis 0" in out and "conv-interp-residual" in out
    for index in range(2):
        assert (tmp_path / "mri" / f"phantom{index}_imputed.npy").exists()
        assert (tmp_path / "mri" / f"phantom{index}_montage.png").exists()
    assert (tmp_path / "mri" / "model.keras").exists()
    out = _run("export_serving.py", "--epochs", "1", "--quiet", "--out",
               str(tmp_path / "served"), cwd=tmp_path)
    assert "observed pixels bit-exact: True" in out
    assert (tmp_path / "served" / "saved_model.pb").exists()


def test_offline_mnist_is_one_clear_sentence(monkeypatch):
    sys.path.insert(0, os.path.join(ROOT, "examples"))
    try:
        import example_utils
    finally:
        sys.path.pop(0)
    import keras

    def offline():
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(keras.datasets.mnist, "load_data", offline)
    with pytest.raises(SystemExit) as stopped:
        example_utils.load_images("mnist")
    message = str(stopped.value.code)
    assert "--data PATH" in message and "--dataset digits" in message
    assert "\n" not in message


@pytest.mark.parametrize("script", ["fig4a_sparse_dense_projection.py",
                                    "table1_vector_field_mnist.py"])
def test_a_benchmark_without_its_data_exits_non_zero_without_tensorflow_logs(script, tmp_path):
    environment = {name: value for name, value in os.environ.items()
                   if name not in ("TF_CPP_MIN_LOG_LEVEL", "SPARSELAYERS_TF_LOGS")}
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "benchmarks", script),
         "--mnist", str(tmp_path / "absent")], capture_output=True, text=True, cwd=tmp_path,
        timeout=300, env=environment)
    assert result.returncode != 0
    assert "not found" in result.stderr and "--mnist" in result.stderr
    # No TensorFlow C++ log line (absl's "I0000 ...", "E0000 ... oneDNN ...").
    logs = [line for line in (result.stdout + result.stderr).splitlines()
            if re.match(r"[IWEF]\d{4} ", line) or "absl::InitializeLog" in line]
    assert not logs, logs
