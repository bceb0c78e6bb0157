"""Train a sparse VAE briefly, export it for TF Serving, reload and query it.

Writes a SavedModel with `SparseVAE.export_imputer`: its ``serving_default``
signature takes ``image`` and ``mask`` and returns ``imputed`` and
``latent_mean``. The script reloads it with plain `tf.saved_model.load` (what
TF Serving does), sends it a request in the JSON form of TF Serving's REST API
(written beside the SavedModel folder as ``request.json``), and checks that the
served imputation equals the in-process one (same samples, same seed) and keeps
the observed pixels bit-exact. Offline: scikit-learn's 8x8 digits.

    python examples/export_serving.py --out outputs/sparse_vae_imputer

Serve it with TF Serving (Docker), then POST the request the script wrote:

    docker run -p 8501:8501 -v "$PWD/outputs/sparse_vae_imputer:/models/imputer/1" \\
        -e MODEL_NAME=imputer tensorflow/serving
    curl -d @outputs/request.json http://localhost:8501/v1/models/imputer:predict
"""

import json
import os

# Before TensorFlow is imported: hide its C++ log lines (see sparselayers.console).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from example_utils import VARIANT_NAMES  # noqa: E402
from example_utils import argument_parser  # noqa: E402
from example_utils import import_tensorflow  # noqa: E402
from example_utils import load_images  # noqa: E402
from example_utils import progress_verbosity  # noqa: E402
from example_utils import save_grid  # noqa: E402

NUM_SAMPLES = 10
SEED = 0


def build_parser():
    parser = argument_parser(__doc__)
    parser.add_argument("--variant", default="conv-sparse", choices=VARIANT_NAMES,
                        help="the sparse VAE variant to train and export")
    parser.add_argument("--epochs", type=int, default=10, help="training epochs")
    parser.add_argument("--missing", type=float, default=0.75, help="missing fraction")
    parser.add_argument("--out", default="outputs/sparse_vae_imputer",
                        help="SavedModel folder; request.json and export_serving.png go beside it")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    import_tensorflow()

    import keras
    import tensorflow as tf

    import sparselayers
    from sparselayers import masks
    from sparselayers.models import sparse_vae_imputation

    keras.utils.set_random_seed(0)
    images = load_images("digits")
    mask = masks.random_missing(images.shape[:-1], args.missing, seed=0)[..., None]
    sparse = np.where(mask > 0, images, np.nan).astype("float32")
    model = sparselayers.build_variant(args.variant, images.shape[1:], 10, filters=16,
                                       noise_sigma=0.2)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit((sparse, mask), batch_size=64, epochs=args.epochs,
              verbose=progress_verbosity(args.quiet))

    model.export_imputer(args.out, num_samples=NUM_SAMPLES, seed=SEED)
    print(f"SavedModel written to {args.out}")

    served = tf.saved_model.load(args.out).signatures["serving_default"]
    request = {"inputs": {"image": np.nan_to_num(sparse[:2]).tolist(), "mask": mask[:2].tolist()}}
    request_path = os.path.join(os.path.dirname(args.out) or ".", "request.json")
    with open(request_path, "w") as handle:
        json.dump(request, handle)
    outputs = served(image=tf.constant(request["inputs"]["image"], tf.float32),
                     mask=tf.constant(request["inputs"]["mask"], tf.float32))
    served_imputed = outputs["imputed"].numpy()
    print(f"request ({request_path}): image and mask, each (2, 8, 8, 1); first mask row:",
          [int(v) for v in mask[0, 0, :, 0]])
    print("response: imputed", served_imputed.shape, "and latent_mean",
          tuple(outputs["latent_mean"].shape))
    print("  latent_mean[0] =", np.array2string(outputs["latent_mean"].numpy()[0], precision=3))
    print("  imputed[0] row 0 =", np.array2string(served_imputed[0, 0, :, 0], precision=3))

    # The served signature draws NUM_SAMPLES posterior samples per image with
    # the fixed seed SEED: the same computation as
    # sparse_vae_imputation.impute_batch with that seed, so the in-process
    # result to compare with is that one.
    in_process, _ = sparse_vae_imputation.impute_batch(
        model, tf.constant(np.nan_to_num(sparse[:2])), tf.constant(mask[:2]),
        tf.constant(NUM_SAMPLES), tf.constant([SEED, 0]), False)
    in_process = np.where(mask[:2] > 0, sparse[:2], in_process.numpy().mean(axis=0))
    observed = mask[:2] > 0
    kept = bool(np.array_equal(served_imputed[observed], images[:2][observed]))
    largest_difference = float(np.max(np.abs(served_imputed - in_process)))
    missing_mse = float(np.mean((served_imputed - images[:2])[~observed] ** 2))
    print(f"observed pixels bit-exact: {kept}; served vs in process (same seed): largest "
          f"difference {largest_difference:.1e}; missing-pixel MSE {missing_mse:.4f}")
    if not kept or largest_difference > 1e-5:
        raise SystemExit("The served imputation differs from the in-process one.")
    figure = os.path.join(os.path.dirname(args.out) or ".", "export_serving.png")
    save_grid(figure, [images[:2], mask[:2], np.clip(served_imputed, 0, 1)],
              ["truth", "mask", "served"])
    print(f"figure: {figure}")
    return {"imputed": served_imputed, "in_process": in_process, "observed_kept": kept}


if __name__ == "__main__":
    main()
