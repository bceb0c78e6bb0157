"""BIDS in, BIDS derivatives out (`sparselayers.mri.bids`): a synthetic dataset
made here, read through pybids, written as a derivatives dataset that the
official validator (bids-validator-deno) passes with zero errors."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("bids")
nibabel = pytest.importorskip("nibabel")

import sparselayers  # noqa: E402
from sparselayers import mri  # noqa: E402
from sparselayers.mri import bids as bids_module  # noqa: E402
from tests.test_slice_workflow import smooth_volume  # noqa: E402
from tests.test_slice_workflow import sparse_copy  # noqa: E402
from tests.test_slice_workflow import write_nifti  # noqa: E402

COMMAND = os.path.join(os.path.dirname(sys.executable), "sparselayers-impute-slices")
TRAINING = dict(steps=2, steps_per_epoch=2, patch_size=12, filters=4)


@pytest.fixture
def dataset(tmp_path):
    """sub-01/ses-A: a thick T2w (6 mm voxels) and an isotropic, complete T1w;
    sub-02: a FLAIR with every 3rd axial slice stored, the others zero."""
    root = tmp_path / "study"
    anat1 = root / "sub-01" / "ses-A" / "anat"
    anat2 = root / "sub-02" / "ses-A" / "anat"
    anat1.mkdir(parents=True)
    anat2.mkdir(parents=True)
    with open(root / "dataset_description.json", "w") as file:
        json.dump({"Name": "synthetic", "BIDSVersion": "1.10.0"}, file)
    fine = smooth_volume((22, 20, 24), 4)
    write_nifti(anat1 / "sub-01_ses-A_T2w.nii.gz", fine.reshape(22, 20, 8, 3).mean(axis=3),
                zooms=(2.0, 2.0, 6.0))
    with open(anat1 / "sub-01_ses-A_T2w.json", "w") as file:
        json.dump({"SliceThickness": 5.0}, file)   # 5 mm slices 6 mm apart: a 1 mm gap
    write_nifti(anat1 / "sub-01_ses-A_T1w.nii.gz", smooth_volume((20, 22, 20), 5))
    sparse, _ = sparse_copy(smooth_volume((20, 24, 27), 3), 2, 3, 0)
    write_nifti(anat2 / "sub-02_ses-A_acq-axial_run-1_FLAIR.nii.gz", sparse)
    return root


def test_bids_inputs_are_the_thick_or_sparse_anatomical_images(dataset):
    found = bids_module.find_bids_inputs(dataset)
    assert [os.path.basename(p) for p in found] == [
        "sub-01_ses-A_T2w.nii.gz", "sub-02_ses-A_acq-axial_run-1_FLAIR.nii.gz"]
    assert [os.path.basename(p) for p in bids_module.find_bids_inputs(
        dataset, participant_label=["sub-02"])] == ["sub-02_ses-A_acq-axial_run-1_FLAIR.nii.gz"]
    # A suffix filter takes its images thick or not.
    assert [os.path.basename(p) for p in bids_module.find_bids_inputs(
        dataset, suffix=["T1w"])] == ["sub-01_ses-A_T1w.nii.gz"]
    with pytest.raises(ValueError, match="--participant-label 03 not in the dataset"):
        bids_module.find_bids_inputs(dataset, participant_label="03")
    with pytest.raises(ValueError, match="--session-label B not in the dataset"):
        bids_module.find_bids_inputs(dataset, session_label=["ses-B"])
    with pytest.raises(ValueError, match="no anatomical image with suffix T2starw"):
        bids_module.find_bids_inputs(dataset, suffix="T2starw")
    with pytest.raises(ValueError, match="not a BIDS dataset"):
        bids_module.find_bids_inputs(dataset / "sub-01")


def test_derivatives_are_named_described_and_valid(dataset):
    out = dataset / "derivatives" / "sparselayers"
    outputs = mri.impute_bids(dataset, out, verbose=0, **TRAINING)
    thick = str(dataset / "sub-01" / "ses-A" / "anat" / "sub-01_ses-A_T2w.nii.gz")
    flair = str(dataset / "sub-02" / "ses-A" / "anat" /
                "sub-02_ses-A_acq-axial_run-1_FLAIR.nii.gz")
    assert outputs == {
        thick: str(out / "sub-01" / "ses-A" / "anat" / "sub-01_ses-A_desc-imputed_T2w.nii.gz"),
        flair: str(out / "sub-02" / "ses-A" / "anat" /
                   "sub-02_ses-A_acq-axial_run-1_desc-imputed_FLAIR.nii.gz")}
    with open(out / "dataset_description.json") as file:
        description = json.load(file)
    assert description["DatasetType"] == "derivative"
    assert description["GeneratedBy"][0]["Name"] == "sparselayers"
    assert description["GeneratedBy"][0]["Version"] == sparselayers.__version__
    raw = description["DatasetLinks"]["raw"]
    assert raw == "file://" + str(dataset)
    for source, written in outputs.items():
        with open(written[:-len(".nii.gz")] + ".json") as file:
            sidecar = json.load(file)
        # Sources: BIDS URIs of the raw files, which resolve through DatasetLinks.
        (uri,) = sidecar["Sources"]
        assert uri.startswith("bids:raw:")
        assert os.path.samefile(os.path.join(raw[len("file://"):], uri[len("bids:raw:"):]), source)
        assert sidecar["SkullStripped"] is False and sidecar["Settings"]["steps"] == 2
        assert nibabel.load(written).shape[:2] == nibabel.load(source).shape[:2]
    with open(outputs[thick][:-len(".nii.gz")] + ".json") as file:
        sidecar = json.load(file)
    assert sidecar["Acquisition"]["SliceProfile"] == "box"
    assert "6 mm apart, box profile 5 mm thick" in sidecar["Acquisition"]["Detected"]
    assert os.path.exists(out / "sub-01" / "figures" / "sub-01_ses-A_desc-imputed_T2w.png")
    assert os.path.exists(out / "report.html") and os.path.exists(out / "model.keras")
    # The isotropic T1w was not touched.
    assert not any("T1w" in name for _, _, names in os.walk(out) for name in names)
    _assert_valid_bids(out)


def _assert_valid_bids(folder):
    validator = shutil.which("bids-validator-deno") or os.path.join(
        os.path.dirname(sys.executable), "bids-validator-deno")
    if not os.path.exists(validator):
        pytest.skip("bids-validator-deno is not installed")
    run = subprocess.run([validator, str(folder), "--format", "json"], capture_output=True,
                         text=True, timeout=300)
    report = json.loads(run.stdout)
    errors = [issue for issue in report["issues"]["issues"] if issue["severity"] == "error"]
    assert errors == [], json.dumps(errors, indent=1)
    assert report["summary"]["dataProcessed"] is True


@pytest.mark.process
def test_command_line_bids_run_and_its_mistakes(dataset, tmp_path):
    out = tmp_path / "derivatives"
    run = subprocess.run([COMMAND, "--bids", str(dataset), "--out", str(out),
                          "--participant-label", "02", "--steps", "2", "--steps-per-epoch", "2",
                          "--patch-size", "12", "--filters", "4", "--quiet",
                          "--variant", "conv-interp-residual-vae", "--samples", "2",
                          "--draws", "2"],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    anat = out / "sub-02" / "ses-A" / "anat"
    assert sorted(os.listdir(anat)) == sorted(
        f"sub-02_ses-A_acq-axial_run-1_desc-{desc}_FLAIR{ext}"
        for desc in ("imputed", "imputedstd", "imputeddraw01", "imputeddraw02")
        for ext in (".json", ".nii.gz"))
    with open(anat / "sub-02_ses-A_acq-axial_run-1_desc-imputedstd_FLAIR.json") as file:
        assert json.load(file)["StdCalibration"]["scale"] > 0
    assert not (out / "sub-01").exists()
    _assert_valid_bids(out)
    for arguments, message in [
            (["--bids", str(dataset), "--participant-label", "07"], "--participant-label 07"),
            (["--bids", str(dataset), str(dataset)], "one of the two"),
            (["--participant-label", "01"], "one of the two"),
            ([str(dataset), "--suffix", "T2w"], "need --bids")]:
        run = subprocess.run([COMMAND, *arguments, "--out", str(tmp_path / "x")],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 2, (arguments, run.stderr)
        lines = run.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], run.stderr
