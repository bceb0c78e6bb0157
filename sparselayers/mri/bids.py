"""BIDS in, BIDS derivatives out: `impute_bids`, the command's ``--bids ROOT``.

The dataset is read with pybids (`bids.BIDSLayout`, the ``mri`` extra), the
ecosystem's own parser of BIDS names, rather than by globbing: anatomical
NIfTI images (``sub-*/[ses-*/]anat/*.nii[.gz]``), filtered by participant,
session and suffix. Without a suffix filter, only the images whose slices
are thick (thick voxels in the header) or missing (constant slices between
acquired ones) are taken: a dataset's isotropic T1w is left alone.

The output folder becomes a BIDS derivatives dataset:

* ``dataset_description.json``: ``DatasetType`` "derivative",
  ``GeneratedBy`` this package and version, ``DatasetLinks`` naming the raw
  dataset ("raw"), so that ``Sources`` can be BIDS URIs;
* per input ``sub-X/[ses-Y/]anat/sub-X[_ses-Y][_...]_desc-imputed_<suffix>.nii.gz``
  with its JSON sidecar: ``Sources``, ``Description``, ``SkullStripped``
  (false), the detected acquisition and slice profile, the model and the
  settings, the self-validation (``SelfValidation``: the model against
  linear interpolation on held-out acquired slices), the package version; a sparse VAE's
  calibrated predictive standard deviation as ``..._desc-imputedstd_<suffix>.nii.gz``
  (its calibration in the sidecar's ``StdCalibration``) and its ``--draws`` as
  ``..._desc-imputeddraw01_<suffix>.nii.gz``...;
* the montages in ``sub-X/figures/``, and ``report.html``, ``model.keras``,
  ``self_validation.json`` and the training backup at the top, all listed in ``.bidsignore`` (as
  fMRIPrep does), so that the BIDS validator reports no error.

Example:

>>> outputs = impute_bids("/data/study", "/data/study/derivatives/sparselayers",
...                       participant_label=["01"])
>>> outputs["/data/study/sub-01/anat/sub-01_T2w.nii.gz"]
'/data/study/derivatives/sparselayers/sub-01/anat/sub-01_desc-imputed_T2w.nii.gz'
"""

import json
import os

from sparselayers.mri import acquisition
from sparselayers.mri import self_validation
from sparselayers.mri import volume_io

__all__ = ["find_bids_inputs", "derivative_names", "impute_bids", "DESCRIPTION"]

DESCRIPTION = "imputed"
STD_DESCRIPTION = "imputedstd"
BIDS_VERSION = "1.10.0"
# What the workflow writes beside the derivatives, hidden from BIDS tools.
# (Folders without a trailing slash: bids-validator-deno 3 matches them so.)
IGNORED = ("model.keras", "report.html", "self_validation.json", "training_backup",
           "sub-*/figures", "converted", ".partial.*")


def _labels(values, prefix):
    if values is None:
        return None
    values = [values] if isinstance(values, str) else list(values)
    return [value[len(prefix):] if value.startswith(prefix) else value for value in values]


def find_bids_inputs(root, participant_label=None, session_label=None, suffix=None):
    """The anatomical images of a BIDS dataset to impute.

    Args:
        root: the BIDS dataset's folder.
        participant_label: labels (``01`` or ``sub-01``), or None for all.
        session_label: labels (``A`` or ``ses-A``), or None for all.
        suffix: BIDS suffixes (``T2w``, ``FLAIR``...); None: every
            anatomical image whose slices are thick or missing.

    Returns:
        Sorted paths of the NIfTI images.

    Raises:
        ValueError: naming `root` if it is not a BIDS dataset, a label that
            is not in it, or the filters if they select no image.
        ImportError: if pybids is not installed.
    """
    try:
        from bids import BIDSLayout
    except ImportError:
        raise ImportError("Reading a BIDS dataset needs pybids: pip install \".[mri]\" (from a "
                          "clone of sparselayers), or pip install pybids.") from None
    root = os.path.abspath(str(root))
    if not os.path.isfile(os.path.join(root, "dataset_description.json")):
        raise ValueError(f"{root}: not a BIDS dataset (no dataset_description.json).")
    layout = BIDSLayout(root, validate=False)
    subjects = _labels(participant_label, "sub-")
    sessions = _labels(session_label, "ses-")
    for name, given, known in (("--participant-label", subjects, layout.get_subjects()),
                               ("--session-label", sessions, layout.get_sessions())):
        unknown = sorted(set(given or ()) - set(known))
        if unknown:
            raise ValueError(f"{root}: {name} {', '.join(unknown)} not in the dataset (it has "
                             f"{', '.join(known) or 'none'}).")
    query = {"datatype": "anat", "extension": [".nii", ".nii.gz"], "return_type": "filename"}
    for key, value in (("subject", subjects), ("session", sessions),
                       ("suffix", _labels(suffix, ""))):
        if value is not None:
            query[key] = value
    files = sorted(layout.get(**query))
    if suffix is None:
        files = [path for path in files if _thick_or_missing(path)]
    if not files:
        what = f"suffix {', '.join(_labels(suffix, ''))}" if suffix is not None else \
            "thick or missing slices"
        raise ValueError(f"{root}: no anatomical image with {what} (participants "
                         f"{', '.join(subjects or ['all'])}, sessions "
                         f"{', '.join(sessions or ['all'])}).")
    return files


def _thick_or_missing(path):
    volume = volume_io.read_volume(path)
    return acquisition.has_thick_or_missing_slices(volume.data, volume.zooms)


def _split_name(path):
    """(relative folder, entities 'sub-01_ses-A', suffix 'T2w', extension '.nii.gz')."""
    name = os.path.basename(path)
    extension = volume_io.volume_suffix(name)
    stem = name[:-len(extension)]
    entities, _, suffix = stem.rpartition("_")
    return entities, suffix, extension


def derivative_names(root):
    """An ``output_names(path, out)`` for `impute_slices` naming BIDS derivatives."""
    root = os.path.abspath(str(root))

    def names(path, out):
        folder = os.path.dirname(os.path.relpath(os.path.abspath(path), root))
        entities, suffix, extension = _split_name(path)
        subject = entities.split("_")[0]
        target = os.path.join(str(out), folder)
        return (os.path.join(target, f"{entities}_desc-{DESCRIPTION}_{suffix}{extension}"),
                os.path.join(str(out), subject, "figures",
                             f"{entities}_desc-{DESCRIPTION}_{suffix}.png"),
                os.path.join(target, f"{entities}_desc-{STD_DESCRIPTION}_{suffix}{extension}"))

    return names


def impute_bids(root, out, participant_label=None, session_label=None, suffix=None,
                verbose=1, **options):
    """`impute_slices` on a BIDS dataset's images, written as BIDS derivatives.

    Args:
        root: the BIDS dataset.
        out: the derivatives folder (e.g. ``root/derivatives/sparselayers``).
        participant_label, session_label, suffix: see `find_bids_inputs`.
        verbose: 1 for progress output.
        **options: `impute_slices`' other arguments (``steps``, ``model``...).

    Returns:
        dict: input path -> imputed derivative path.
    """
    from sparselayers import __version__
    from sparselayers.mri.inputs import PreparedVolume
    from sparselayers.mri.inputs import draw_path
    from sparselayers.mri.volume_outputs import describe
    from sparselayers.mri.workflow import impute_slices

    root = os.path.abspath(str(root))
    out = str(out)
    files = find_bids_inputs(root, participant_label, session_label, suffix)
    names = derivative_names(root)
    outputs = impute_slices(files, out, verbose=verbose, output_names=names, **options)
    volume_io.write_json(os.path.join(out, "dataset_description.json"), {
        "Name": "sparselayers: thick-slice imputation",
        "BIDSVersion": BIDS_VERSION, "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "sparselayers", "Version": __version__,
                         "Description": "sparselayers-impute-slices: missing and thick slices "
                                        "filled in by a model trained on the scans' own "
                                        "acquired slices."}],
        "DatasetLinks": {"raw": _file_uri(root)}})
    with open(os.path.join(out, ".bidsignore"), "w", encoding="utf-8") as file:
        file.write("\n".join(IGNORED) + "\n")
    with open(os.path.join(out, self_validation.FILE_NAME), encoding="utf-8") as file:
        validation = json.load(file)
    model = options.get("model")
    settings = {key: value for key, value in options.items()
                if key != "model" and isinstance(value, (int, float, str, bool, type(None)))}
    for path in files:
        # Read once more for its description: impute_slices returns paths only.
        prepared = PreparedVolume(path, options.get("axis"), options.get("every"), options.get("key"),
                                  options.get("slice_profile"), options.get("slice_thickness"),
                                  options.get("resolution"))
        grid = prepared.slice_grid
        profile = grid.profile.kind if grid is not None else "point"
        sidecar = {
            "Description": "Missing or thick slices filled in by sparselayers-impute-slices.",
            "Sources": [f"bids:raw:{os.path.relpath(path, root)}"],
            "SkullStripped": False,
            "Acquisition": {"Axis": prepared.axis, "Detected": describe(prepared),
                            "SliceProfile": profile},
            "Model": str(model) if model is not None else
            options.get("variant", "conv-interp-residual"),
            "Settings": settings,
            "SelfValidation": {"ThisImage": validation["inputs"].get(path),
                               "AllImages": validation["overall"],
                               "Method": validation["method"]},
            "SoftwareVersion": __version__,
        }
        if path in validation.get("std_calibration", {}):
            sidecar["StdCalibration"] = validation["std_calibration"][path]
        imputed_path, _, std_path = names(path, out)
        descriptions = {imputed_path: "", std_path: (
            " Per-voxel standard deviation of the posterior predictive (posterior draws and "
            "the likelihood's noise), calibrated on held-out acquired slices.")}
        for index in range(1, int(options.get("draws", 0)) + 1):
            descriptions[draw_path(std_path, index)] = (
                f" Multiple imputation {index} (a draw from the posterior predictive).")
        for written, description in descriptions.items():
            if os.path.exists(written):
                volume_io.write_json(written[:-len(volume_io.volume_suffix(written))] + ".json",
                                     {**sidecar,
                                      "Description": sidecar["Description"] + description})
    return outputs


def _file_uri(path):
    return "file://" + os.path.abspath(path).replace(os.sep, "/")
