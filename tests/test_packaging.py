"""The distribution's metadata agrees with itself: one version in the package,
CITATION.cff and CHANGELOG.md; the citation names both papers; the wheel's
smoke test (.ci/wheel_smoke.py, run by .ci/run on a built wheel) exists."""

import configparser
import os
import re

import sparselayers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(name):
    with open(os.path.join(ROOT, name), encoding="utf-8") as file:
        return file.read()


def test_citation_cites_the_package_at_its_version_and_both_papers():
    citation = _read("CITATION.cff")
    assert re.search(r"^cff-version: 1\.2\.0$", citation, re.M)
    assert re.search(r"^version: (\S+)$", citation, re.M).group(1) == sparselayers.__version__
    assert "Unsupervised Data Imputation via Variational Inference of Deep Subspaces" in citation
    assert "Iterative imputation of missing data using auto-encoder dynamics" in citation
    assert "arXiv:1903.03503" in citation


def test_changelog_starts_at_the_current_version():
    headings = re.findall(r"^## (\S+)", _read("CHANGELOG.md"), re.M)
    assert headings[0] == "Unreleased"
    assert headings[1] == sparselayers.__version__


def test_mri_extra_brings_the_dicom_converter_and_ci_smoke_tests_the_wheel():
    config = configparser.ConfigParser()
    config.read(os.path.join(ROOT, "setup.cfg"))
    extras = config["options.extras_require"]
    assert "dcm2niix" in extras["mri"].split()
    assert {"dcm2niix", "pydicom"} <= set(extras["test"].split())
    ci = _read(".ci/run")
    assert "python -m build" in ci and "twine check" in ci and "wheel_smoke.py" in ci
    assert os.path.exists(os.path.join(ROOT, ".ci", "wheel_smoke.py"))
    for text in (_read("README.md"), _read(os.path.join("docs", "thick_slice_mri.md"))):
        assert 'pip install "sparselayers[' not in text   # not on an index: install from a clone
        assert 'pip install ".[mri]"' in text
