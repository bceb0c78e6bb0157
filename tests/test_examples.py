"""The example scripts run end to end (tiny settings, offline data)."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = ["train_sparse_vae.py", "linear_subspace.py", "mri_slice_imputation.py",
            "export_serving.py"]


def _run(script, *args, cwd):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", MPLBACKEND="Agg")
    result = subprocess.run(
        [sys.executable, os.path.join(ROOT, "examples", script), *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("script", EXAMPLES)
def test_help(script, tmp_path):
    assert "usage:" in _run(script, "--help", cwd=tmp_path)


def test_train_sparse_vae_quick(tmp_path):
    out = _run("train_sparse_vae.py", "--epochs", "1", "--limit", "200", "--variants",
               "linear,conv-sparse", "--quiet", "--out", str(tmp_path), cwd=tmp_path)
    assert "conv-sparse" in out and "mean fill" in out
    assert (tmp_path / "sparse_vae_75.png").stat().st_size > 1000


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
    assert "observed pixels kept: True" in out
    assert (tmp_path / "served" / "saved_model.pb").exists()
