"""One quality-control report per run: ``report.html`` in the output folder.

As fMRIPrep and MRIQC users expect, one self-contained HTML page to scroll
through (every picture embedded as a PNG data URI, no script, no network):
the run's settings, the training loss curve, the self-validation (the
model against linear interpolation on held-out acquired slices,
`self_validation`), and per volume its detected
acquisition, where it was written, and three orthogonal planes through the
middle of the volume of what the user would try first beside what the
model wrote (`montage.point_comparison` / `montage.thick_comparison`:
acquired / linear interpolation / imputed, or acquired thick slices / cubic
interpolation / restored; the sparse VAE's per-voxel standard deviation
too, and how it was calibrated). Pictures need matplotlib (the ``mri``
extra); without it the report holds the text only.

Example:

>>> report = Report("imputed/")
>>> report.add_volume("scan.nii.gz", "every 3", "imputed/scan_imputed.nii.gz",
...                   comparison, zooms=(1.0, 1.0, 1.0))
>>> report.write(losses=[0.02, 0.01], steps_per_epoch=100, settings={"--steps": 200})
'imputed/report.html'
"""

import base64
import html
import io
import os

import numpy as np

__all__ = ["Report", "orthogonal_views_png", "loss_curve_png", "validation_png", "REPORT_NAME"]

REPORT_NAME = "report.html"
PLANES = ("sagittal plane (axis 0)", "coronal plane (axis 1)", "axial plane (axis 2)")

_STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-top: 1px solid #ccc;
padding-top: 0.8em; } table { border-collapse: collapse; }
td, th { padding: 2px 10px; text-align: left; border-bottom: 1px solid #eee; }
img { max-width: 100%; } .note { color: #555; font-size: 0.9em; }
"""


def _pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _png(figure, plt):
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def orthogonal_views_png(volumes, titles, zooms, high, spread=None):
    """PNG bytes: a row per volume, a column per plane through the volume's centre.

    Args:
        volumes: 3-D arrays on one grid (acquired, interpolation, model output).
        titles: one per volume.
        zooms: voxel sizes (3,) in mm: each plane is drawn to scale.
        high: the grey level shown white.
        spread: an optional per-voxel standard deviation, shown as a last row
            (its own colour scale, with a colour bar).

    Returns:
        The PNG's bytes, or None without matplotlib.
    """
    plt = _pyplot()
    if plt is None:
        return None
    rows = list(zip(volumes, titles)) + ([(spread, "std")] if spread is not None else [])
    figure, axes = plt.subplots(len(rows), 3, figsize=(10, 2.9 * len(rows)), squeeze=False)
    for row, (volume, title) in enumerate(rows):
        is_spread = spread is not None and row == len(rows) - 1
        top = float(np.percentile(volume, 99.5)) if is_spread else high
        for plane in range(3):
            index = [slice(None)] * 3
            index[plane] = volume.shape[plane] // 2
            shown_axes = [axis for axis in range(3) if axis != plane]
            # First remaining axis across, second up; each voxel to scale.
            picture = axes[row, plane].imshow(
                volume[tuple(index)].T, cmap="magma" if is_spread else "gray", vmin=0,
                vmax=max(top, 1e-12), origin="lower",
                aspect=float(zooms[shown_axes[1]]) / float(zooms[shown_axes[0]]))
            axes[row, plane].set_xticks([])
            axes[row, plane].set_yticks([])
            if row == 0:
                axes[row, plane].set_title(PLANES[plane], fontsize=11)
        axes[row, 0].set_ylabel(title, fontsize=12)
        if is_spread:
            figure.colorbar(picture, ax=axes[row, :].tolist(), shrink=0.8, label="std")
    return _png(figure, plt)


def loss_curve_png(losses, steps_per_epoch):
    """PNG bytes of the mean training loss per epoch against the step, or None."""
    plt = _pyplot()
    if plt is None or not losses:
        return None
    figure, axis = plt.subplots(figsize=(7, 3.2))
    steps = steps_per_epoch * np.arange(1, len(losses) + 1)
    axis.plot(steps, losses, marker="o", markersize=3)
    if np.all(np.asarray(losses) > 0):
        axis.set_yscale("log")
    axis.set_xlabel("training step")
    axis.set_ylabel("mean loss of the epoch")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return _png(figure, plt)


def validation_png(scored):
    """PNG bytes: per input, the model's and linear interpolation's held-out MSE, or None."""
    plt = _pyplot()
    if plt is None:
        return None
    names = [name for name, _ in scored]
    positions = np.arange(len(names))
    figure, axis = plt.subplots(figsize=(7, 0.5 * len(names) + 1.5))
    axis.barh(positions + 0.2, [s["linear_mse"] for _, s in scored], 0.4,
              label="linear interpolation", color="#999999")
    axis.barh(positions - 0.2, [s["model_mse"] for _, s in scored], 0.4, label="model",
              color="#1f77b4")
    axis.set_yticks(positions, names)
    axis.invert_yaxis()
    axis.set_xlabel("MSE on held-out slices (normalised units)")
    axis.legend(loc="lower right")
    figure.tight_layout()
    return _png(figure, plt)


def _image(png, alt):
    if png is None:
        return '<p class="note">(no picture: matplotlib is not installed)</p>'
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


class Report:
    """Collects a run's volumes, then writes ``report.html`` in `out`.

    Only each volume's PNG is kept (not its voxels), so memory does not grow
    with the collection beyond the pictures.
    """

    def __init__(self, out):
        self.out = str(out)
        self.sections = []
        self.validation = ""

    def add_volume(self, source, description, written, comparison, zooms, spread=None,
                   std_calibration=None):
        """Adds one volume's section.

        Args:
            source: the input's path.
            description: its detected acquisition (one line).
            written: the output's path.
            comparison: a `montage.Comparison` on the output's grid.
            zooms: the output's voxel sizes (3,), mm.
            spread: the sparse VAE's per-voxel std on the same grid, or None.
            std_calibration: how that std was calibrated (one line, as the
                log's), or None.
        """
        png = orthogonal_views_png(comparison.volumes, comparison.titles, zooms,
                                   comparison.high, spread)
        name = os.path.basename(str(source))
        self.sections.append(
            f'<section class="volume" data-source="{html.escape(str(source))}">'
            f"<h2>{html.escape(name)}</h2><table>"
            f"<tr><th>input</th><td>{html.escape(str(source))}</td></tr>"
            f"<tr><th>acquisition</th><td>{html.escape(description)}</td></tr>"
            f"<tr><th>shown</th><td>{html.escape(comparison.caption)}</td></tr>"
            f"<tr><th>written</th><td>{html.escape(str(written))}</td></tr>"
            + ("" if std_calibration is None else
               f"<tr><th>std calibration</th><td>{html.escape(std_calibration)}</td></tr>")
            + "</table>"
            f"{_image(png, name + ': three orthogonal planes')}</section>")

    def add_validation(self, sources, validation):
        """Adds the self-validation (`self_validation.validate`'s result) for `sources`."""
        from sparselayers.mri.self_validation import summary_line

        rows = "".join(
            f"<tr><th>{html.escape(os.path.basename(str(source)))}</th>"
            f"<td>{html.escape(summary_line(scores))}</td></tr>"
            for source, scores in zip(sources, validation["inputs"]))
        scored = [(os.path.basename(str(source)), scores)
                  for source, scores in zip(sources, validation["inputs"]) if scores]
        png = validation_png(scored) if scored else None
        self.validation = (
            '<section id="self-validation"><h2>Self-validation: expected improvement over '
            "interpolation on these scans</h2>"
            f"<p><b>All inputs: {html.escape(summary_line(validation['overall']))}</b></p>"
            '<p class="note">A share of each scan\'s acquired slices was never trained on; '
            "each was degraded as the scan was acquired and filled in by the model and by "
            "linear interpolation (sparselayers.mri.self_validation). On held-out brains "
            "(benchmarks/self_validation.py) it was within a few points of the true improvement "
            "for missing slices, but about twice the true improvement for thick slices: read "
            "it as an upper bound for thick-slice files.</p>"
            f"<table>{rows}</table>"
            + (_image(png, "self-validation") if png is not None else "") + "</section>")

    def write(self, losses=None, steps_per_epoch=1, settings=None, title=None):
        """Writes the report (under a temporary name, then renamed); returns its path.

        Args:
            losses: mean training loss per epoch (empty or None: no training
                in this run, e.g. a reused ``--model``).
            steps_per_epoch: steps per entry of `losses`.
            settings: dict of option -> value shown in a table.
            title: the page's heading.
        """
        title = title or f"sparselayers-impute-slices: {len(self.sections)} volume(s)"
        rows = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
                       for k, v in (settings or {}).items())
        if losses:
            training = (f"<p>{len(losses)} epochs of {steps_per_epoch} steps; last loss "
                        f"{losses[-1]:.4g}.</p>"
                        + _image(loss_curve_png(losses, steps_per_epoch), "training loss"))
        else:
            training = '<p class="note">No training in this run (a trained model was reused).</p>'
        page = (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
                f"<h1>{html.escape(title)}</h1><table>{rows}</table>"
                f'<section id="training"><h2>Training</h2>{training}</section>'
                + self.validation + "".join(self.sections) + "</body></html>\n")
        os.makedirs(self.out, exist_ok=True)
        path = os.path.join(self.out, REPORT_NAME)
        temporary = os.path.join(self.out, ".partial." + REPORT_NAME)
        with open(temporary, "w", encoding="utf-8") as file:
            file.write(page)
        os.replace(temporary, path)
        return path
