"""The run's quality-control page (`sparselayers.mri.report`): one section per
volume, every picture a decodable, non-blank PNG, the training loss curve whole
after a resume; a slow test renders it in headless Chromium when installed."""

import base64
import html.parser
import io
import json
import os
import shutil
import subprocess

import keras
import numpy as np
import pytest

nibabel = pytest.importorskip("nibabel")
matplotlib_image = pytest.importorskip("matplotlib.image")

from sparselayers import mri  # noqa: E402
from tests.test_slice_workflow import smooth_volume  # noqa: E402
from tests.test_slice_workflow import sparse_copy  # noqa: E402
from tests.test_slice_workflow import write_nifti  # noqa: E402
from tests.training_hooks import fit_callbacks  # noqa: E402


class _Page(html.parser.HTMLParser):
    """Sections (class "volume", their data-source), images (alt, PNG bytes), text."""

    def __init__(self):
        super().__init__()
        self.sources, self.images, self.text, self.external = [], [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section" and attrs.get("class") == "volume":
            self.sources.append(attrs["data-source"])
        if tag == "img":
            prefix = "data:image/png;base64,"
            assert attrs["src"].startswith(prefix), attrs["src"][:40]
            self.images.append((attrs["alt"], base64.b64decode(attrs["src"][len(prefix):])))
        for name in ("src", "href"):
            if name in attrs and not attrs[name].startswith("data:"):
                self.external.append(attrs[name])

    def handle_data(self, data):
        self.text.append(data)


def _parse(path):
    page = _Page()
    with open(path, encoding="utf-8") as file:
        page.feed(file.read())
    return page


@pytest.fixture
def collection(tmp_path):
    """A zero-slice volume (every 3rd axial slice) and a thick-slice file (6 mm voxels)."""
    folder = tmp_path / "in"
    folder.mkdir()
    sparse, _ = sparse_copy(smooth_volume((20, 24, 27), 3), 2, 3, 0)
    write_nifti(folder / "sparse.nii.gz", sparse)
    fine = smooth_volume((22, 20, 24), 4)
    thick = fine.reshape(22, 20, 8, 3).mean(axis=3)
    write_nifti(folder / "thick.nii.gz", thick, zooms=(2.0, 2.0, 6.0))
    return folder


def test_report_has_every_volume_and_every_picture_decodes(collection, tmp_path):
    out = tmp_path / "out"
    stop_after_two_epochs = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: (_ for _ in ()).throw(KeyboardInterrupt)
        if epoch == 1 else None)
    with fit_callbacks(last=[stop_after_two_epochs]), pytest.raises(KeyboardInterrupt):
        mri.impute_slices([collection], out, steps=8, steps_per_epoch=2, patch_size=12,
                          filters=4, verbose=0)
    assert not (out / "report.html").exists()
    # The resumed run's report shows all 4 epochs, the 2 before the interruption too.
    mri.impute_slices([collection], out, steps=8, steps_per_epoch=2, patch_size=12, filters=4,
                      verbose=0, resume=True)
    page = _parse(out / "report.html")
    assert sorted(os.path.basename(s) for s in page.sources) == ["sparse.nii.gz", "thick.nii.gz"]
    text = " ".join(page.text)
    assert "4 epochs of 2 steps" in text
    assert "every 3" in text and "box profile 6 mm thick" in text
    assert page.external == []   # self-contained: readable offline
    assert [alt for alt, _ in page.images] == [
        "training loss", "self-validation", "sparse.nii.gz: three orthogonal planes",
        "thick.nii.gz: three orthogonal planes"]
    for alt, png in page.images:
        picture = matplotlib_image.imread(io.BytesIO(png), format="png")
        assert picture.shape[0] > 100 and picture.shape[1] > 300, alt
        assert picture[..., :3].std() > 0.05, f"{alt}: a blank picture"


def test_reused_model_report_says_no_training_and_no_report_option(collection, tmp_path):
    mri.impute_slices([collection / "sparse.nii.gz"], tmp_path / "a", steps=2,
                      steps_per_epoch=2, patch_size=12, filters=4, verbose=0, report=False)
    assert not (tmp_path / "a" / "report.html").exists()
    mri.impute_slices([collection / "sparse.nii.gz"], tmp_path / "b",
                      model=str(tmp_path / "a" / "model.keras"), verbose=0)
    page = _parse(tmp_path / "b" / "report.html")
    assert "No training in this run" in " ".join(page.text)
    assert len(page.sources) == 1 and len(page.images) == 2   # self-validation, planes


def test_sparse_vae_report_shows_the_spread(collection, tmp_path):
    mri.impute_slices([collection / "sparse.nii.gz"], tmp_path / "out", steps=2,
                      steps_per_epoch=2, patch_size=12, filters=4, samples=2, verbose=0,
                      variant="conv-interp-residual-vae", montage=False)
    page = _parse(tmp_path / "out" / "report.html")
    _, png = page.images[2]
    rows_with_std = matplotlib_image.imread(io.BytesIO(png), format="png").shape[0]
    plain_page = _parse_plain(collection, tmp_path)
    _, plain = plain_page.images[2]
    assert rows_with_std > 1.2 * matplotlib_image.imread(io.BytesIO(plain), format="png").shape[0]
    assert "std calibration" in " ".join(page.text)
    assert "std calibration" not in " ".join(plain_page.text)        # no std, no row


def test_sparse_vae_report_says_how_each_std_was_calibrated(collection, tmp_path):
    """One "std calibration" row per volume, with the figures of self_validation.json."""
    out = tmp_path / "out"
    sources = [str(collection / "sparse.nii.gz"), str(collection / "thick.nii.gz")]
    mri.impute_slices(sources, out, steps=2, steps_per_epoch=2, patch_size=12, filters=4,
                      samples=2, verbose=0, variant="conv-interp-residual-vae", montage=False,
                      validation_share=0.3)
    with open(out / "self_validation.json") as file:
        calibrations = json.load(file)["std_calibration"]
    text = " ".join(_parse(out / "report.html").text)
    assert text.count("std calibration") == 2
    for source in sources:
        calibration = calibrations[source]
        assert f"std x {calibration['scale']:.3g} of the model's" in text
        assert f"x {calibration['averaging_factor']:.3f} for the mean of two" in text
    kept = calibrations[sources[1]]["kept_detail_share"]            # the thick file only
    assert "kept_detail_share" not in calibrations[sources[0]]
    assert f"of which x {1 / np.sqrt(kept):.3g} for the fine detail" in text
    assert text.count("for the fine detail") == 1
    # Nothing held out: the row says the std is the model's own.
    mri.impute_slices(sources[:1], tmp_path / "none", steps=2, steps_per_epoch=2, patch_size=12,
                      filters=4, samples=2, verbose=0, variant="conv-interp-residual-vae",
                      montage=False, validation_share=0)
    text = " ".join(_parse(tmp_path / "none" / "report.html").text)
    assert "std calibration" in text and "not calibrated" in text and "std x" not in text


def _parse_plain(collection, tmp_path):
    mri.impute_slices([collection / "sparse.nii.gz"], tmp_path / "plain", steps=2,
                      steps_per_epoch=2, patch_size=12, filters=4, verbose=0, montage=False)
    return _parse(tmp_path / "plain" / "report.html")


@pytest.mark.slow  # starts a browser
def test_report_renders_in_headless_chromium(collection, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed")
    mri.impute_slices([collection], tmp_path / "out", steps=2, steps_per_epoch=2,
                      patch_size=12, filters=4, verbose=0)
    screenshot = tmp_path / "report.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
                    "--window-size=1200,2400", f"--screenshot={screenshot}",
                    (tmp_path / "out" / "report.html").as_uri()],
                   capture_output=True, timeout=120, check=True)
    picture = matplotlib_image.imread(str(screenshot))
    assert picture.shape[:2] == (2400, 1200)
    assert picture[..., :3].std() > 0.05   # not a blank page
    # The pictures were drawn: dark pixels (the brains' background) cover part of it.
    assert np.mean(picture[..., :3].mean(axis=-1) < 0.2) > 0.05
