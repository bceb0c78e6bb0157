"""The ``sparselayers-impute-slices`` command.

    sparselayers-impute-slices scans/*.nii.gz --out imputed/
    sparselayers-impute-slices new_scan.nii.gz --model imputed/model.keras --out more/
    sparselayers-impute-slices --bids /data/study --out /data/study/derivatives/sparselayers

reads a collection of volumes (NIfTI, MGH, NumPy, or folders of DICOM
series, converted by dcm2niix into ``<out>/converted/``), each acquired every
n-th slice (missing slices stored as zero/constant slices, or thick voxels in
the header), trains one
model on all their acquired slices (`sparselayers.mri.training`), each
degraded as its own scan was acquired, and writes for every input, in the
output folder:

* ``<name>_imputed<suffix>``: the filled volume in the input's header and
  intensity units. Missing slices stored as zero slices (point profile):
  the input's own grid, acquired voxels bit-exact. A thick-slice file (thick
  voxels in the header; box profile by default, or ``--slice-profile
  gaussian``): the fine grid covering the whole slab at ``--resolution``
  (default the in-plane voxel size), the affine placing each fine voxel in
  the input's world coordinates; the acquired slices are deblurred, and the
  slice profile applied to the output reproduces them (to float32
  rounding). ``--slice-profile point`` keeps the former n-fold refined grid,
  acquired voxels bit-exact;
* ``<name>_montage.png``: a cut through the acquisition axis, acquired /
  linearly interpolated / imputed, or for thick slices acquired (thick) /
  cubic interpolation / restored (when matplotlib is installed);
* ``model.keras``: the trained model, for ``--model`` on new scans;
* ``report.html``: one self-contained quality-control page for the run
  (`sparselayers.mri.report`): the settings, the training loss curve, and
  per volume its detected acquisition and three orthogonal planes of
  acquired / interpolation / imputed (``--no-report``: none);
* with ``--variant conv-interp-residual-vae`` (a sparse VAE), also
  ``<name>_std<suffix>``: the per-voxel standard deviation of the posterior
  predictive (the spread of ``--samples`` posterior draws and the
  likelihood's own noise), calibrated on the held-out acquired slices
  (`sparselayers.mri.uncertainty`; ``mean +- m * std`` is a central
  interval, m per level in ``self_validation.json``); and with
  ``--draws K``, ``<name>_draw-01<suffix>``...: K multiple imputations,
  acquired voxels unchanged. For thick-slice files, ``--std-reference FILE``
  (a fine scan of the same contrast and protocol) measures the std's
  through-plane factor instead of estimating it
  (`sparselayers.mri.reference_calibration`).

Every option, input, the ``--model`` (called once on one cut) and the output
folder are checked before any training: a mistake is one line and exit
status 2. Outputs are written under a temporary name and renamed when
complete; nothing non-finite is written; an input is never overwritten; a
magnitude image (every acquired voxel >= 0) gets no negative voxel.
Training saves a backup every ``--steps-per-epoch`` steps, atomically
(`sparselayers.mri.training_backup`); after an interruption (Ctrl-C: exit
status 130, or a kill), the same command with ``--resume`` continues from
it and ends with the model an uninterrupted run would have trained; a
backup made with other settings is refused, naming the setting.
`sparselayers.mri.workflow.impute_slices` is the same from Python. With
``--bids ROOT``, the inputs are a BIDS dataset's anatomical images and the
output folder becomes a BIDS derivatives dataset (`sparselayers.mri.bids`).
"""

import argparse
import functools
import sys

from sparselayers import console  # TensorFlow is imported later: --help stays fast
from sparselayers.mri import options

__all__ = ["build_parser", "main"]


class _DefaultsOnceFormatter(argparse.HelpFormatter):
    """Shows an option's default once: not where its help already says it, nor for
    flags and options whose absence means "detected" (None)."""

    def _get_help_string(self, action):
        text = action.help or ""
        if ("default" in text or action.default is None or action.default is False
                or action.default == argparse.SUPPRESS):
            return text
        return text + " (default: %(default)s)"


class _OneLineErrorParser(argparse.ArgumentParser):
    """Reports a usage mistake in one line (not argparse's usage block) and exits 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser():
    parser = _OneLineErrorParser(
        prog="sparselayers-impute-slices",
        description="Fill in the missing slices of thick-slice volumes (NIfTI, MGH, NumPy, "
                    "DICOM), "
                    "learning from the collection's own acquired slices.",
        formatter_class=_DefaultsOnceFormatter)
    parser.add_argument("inputs", nargs="*",
                        help="volume files (.nii, .nii.gz, .mgz, .npy, .npz), folders of them, or "
                             "folders of DICOM series (converted by dcm2niix); or --bids")
    parser.add_argument("--out", required=True,
                        help="output folder (with --bids: the derivatives dataset, e.g. "
                             "ROOT/derivatives/sparselayers)")
    parser.add_argument("--bids", default=None, metavar="ROOT",
                        help="a BIDS dataset: its anatomical images with thick or missing slices "
                             "in, a BIDS derivatives dataset out")
    parser.add_argument("--participant-label", nargs="+", default=None,
                        help="with --bids: these participants only (01 or sub-01)")
    parser.add_argument("--session-label", nargs="+", default=None,
                        help="with --bids: these sessions only")
    parser.add_argument("--suffix", nargs="+", default=None,
                        help="with --bids: images with these suffixes (T2w, FLAIR...), thick or "
                             "not; default: every anatomical image with thick or missing slices")
    parser.add_argument("--axis", default=None,
                        help="acquisition axis: 0, 1, 2 (array axes) or sagittal, coronal, "
                             "axial (through each file's affine); default: detected")
    parser.add_argument("--every", type=int, default=None,
                        help="spacing n of the acquired slices; default: detected")
    parser.add_argument("--slice-profile", default=None, choices=["point", "box", "gaussian"],
                        help="how each slice averages the tissue across its thickness; "
                             "default: box for thick voxels in the header, point for missing "
                             "slices stored as zero slices")
    parser.add_argument("--slice-thickness", type=float, default=None,
                        help="slice thickness in mm (box width, Gaussian FWHM); default: the "
                             "JSON sidecar's SliceThickness, else the slice spacing")
    parser.add_argument("--resolution", type=float, default=None,
                        help="output voxel size in mm along the acquisition axis of a "
                             "thick-slice file (box or Gaussian profile); default: the finest "
                             "in-plane voxel size")
    parser.add_argument("--key", default=None, help="array name in .npz files holding several")
    parser.add_argument("--model", default=None,
                        help="a trained .keras model to reuse (no training unless --steps)")
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps (default 3000; 0 with --model)")
    parser.add_argument("--steps-per-epoch", type=int, default=100,
                        help="steps between backups")
    parser.add_argument("--resume", action="store_true",
                        help="continue a stopped training from the output folder's backup")
    parser.add_argument("--variant", default="conv-interp-residual",
                        choices=["conv-interp-residual", "conv-interp-residual-vae"],
                        help="the model to train: deterministic, or its sparse VAE form "
                             "(multiple imputation, per-voxel uncertainty)")
    parser.add_argument("--samples", type=int, default=10,
                        help="posterior draws per cut for a sparse VAE model")
    parser.add_argument("--draws", type=int, default=0,
                        help="with the sparse VAE: also write this many multiple imputations "
                             "per input (<name>_draw-01.nii.gz...), acquired voxels unchanged")
    parser.add_argument("--std-reference", action="append", default=None, metavar="FILE",
                        help="with the sparse VAE and thick-slice inputs: a fine scan of the "
                             "same contrast and protocol (not one of the inputs) on the "
                             "restored grid's voxel size; the std's through-plane factor is "
                             "measured on it, made into thick slices as each input was "
                             "acquired, instead of estimated in-plane (repeat for several: "
                             "their median)")
    parser.add_argument("--filters", type=int, default=32, help="channels of the model")
    parser.add_argument("--patch-size", type=int, default=48, help="training patch side")
    parser.add_argument("--batch-size", type=int, default=16, help="patches per step")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="Adam's, cosine decay")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of the initial weights and the training patches")
    parser.add_argument("--validation-share", type=float, default=0.1,
                        help="share of each volume's acquired slices held out of training to "
                             "measure the model against linear interpolation on these scans "
                             "(self-validation); 0: none")
    parser.add_argument("--no-montage", action="store_true", help="write no PNG montages")
    parser.add_argument("--no-report", action="store_true", help="write no report.html")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv=None):
    """Entry point of ``sparselayers-impute-slices``; returns the exit status."""
    console.interrupts_never_lost()   # a Ctrl-C in a finaliser or a C++ callback ends it too
    parser = build_parser()
    args = parser.parse_args(argv)  # before TensorFlow is imported: --help is fast
    if bool(args.inputs) == bool(args.bids):
        parser.error("give input volumes or --bids ROOT (one of the two)")
    if not args.bids and (args.participant_label or args.session_label or args.suffix):
        parser.error("--participant-label, --session-label and --suffix need --bids")
    try:
        # The checks that need no file content, before TensorFlow's import too.
        options.check_options(
            steps=args.steps, steps_per_epoch=args.steps_per_epoch, samples=args.samples,
            filters=args.filters, patch_size=args.patch_size, batch_size=args.batch_size,
            learning_rate=args.learning_rate, seed=args.seed, every=args.every, axis=args.axis,
            validation_share=args.validation_share, draws=args.draws)
        if args.draws and args.variant != "conv-interp-residual-vae" and args.model is None:
            raise ValueError(f"--draws {args.draws} needs a sparse VAE model (--variant "
                             "conv-interp-residual-vae)")
        if args.std_reference and args.variant != "conv-interp-residual-vae" and not args.model:
            raise ValueError("--std-reference calibrates a sparse VAE's std (--variant "
                             "conv-interp-residual-vae)")
        options.check_training(args.model, args.steps)
        options.check_out_folder(args.out)
        console.quiet_command_line()
        from sparselayers.mri.bids import impute_bids
        from sparselayers.mri.workflow import impute_slices

        if args.bids:
            run = functools.partial(impute_bids, args.bids,
                                    participant_label=args.participant_label,
                                    session_label=args.session_label, suffix=args.suffix)
        else:
            run = functools.partial(impute_slices, args.inputs)
        run(args.out, axis=args.axis, every=args.every, key=args.key,
            model=args.model, steps=args.steps, steps_per_epoch=args.steps_per_epoch,
            resume=args.resume, variant=args.variant, samples=args.samples,
            filters=args.filters, patch_size=args.patch_size,
            batch_size=args.batch_size, learning_rate=args.learning_rate, seed=args.seed,
            montage=not args.no_montage, report=not args.no_report,
            verbose=0 if args.quiet else 1,
            slice_profile=args.slice_profile, slice_thickness=args.slice_thickness,
            resolution=args.resolution, validation_share=args.validation_share,
            draws=args.draws, std_reference=args.std_reference)
    except BaseException as error:
        # A Ctrl-C that landed in a callback of TensorFlow's C++ code can surface as another
        # exception (SystemError, a TensorFlow error): reported as the interruption it is.
        if isinstance(error, KeyboardInterrupt) or (isinstance(error, Exception)
                                                    and console.interrupt_received()):
            print("sparselayers-impute-slices: interrupted; the same command with --resume "
                  "continues a training from its last backup.", file=sys.stderr)
            return 130
        if isinstance(error, (ValueError, ImportError)):
            print(f"sparselayers-impute-slices: error: {error}", file=sys.stderr)
            return 2
        raise
    return 0


if __name__ == "__main__":
    sys.exit(main())
