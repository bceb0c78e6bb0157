"""Train a sparse VAE briefly, export it for TF Serving, reload and query it.

Writes a SavedModel with `SparseVAE.export_imputer`: its ``serving_default``
signature takes ``image`` and ``mask`` and returns ``imputed`` and
``latent_mean``. The script reloads it with plain `tf.saved_model.load` (what
TF Serving does) and prints a request / response round trip in the JSON form of
TF Serving's REST API. Offline: scikit-learn's 8x8 digits.

    python examples/export_serving.py --out outputs/sparse_vae_imputer

Serve it with TF Serving (Docker), then POST the printed request:

    docker run -p 8501:8501 -v "$PWD/outputs/sparse_vae_imputer:/models/imputer/1" \\
        -e MODEL_NAME=imputer tensorflow/serving
    curl -d @request.json http://localhost:8501/v1/models/imputer:predict
"""

import argparse
import json
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import sparselayers  # noqa: E402
from example_utils import load_images, save_grid  # noqa: E402
from sparselayers import masks  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variant", default="conv-sparse")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--missing", type=float, default=0.75)
    parser.add_argument("--out", default="outputs/sparse_vae_imputer")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    # The figure goes beside the SavedModel folder, as export_serving.png.
    args = parser.parse_args(argv)

    keras.utils.set_random_seed(0)
    images = load_images("digits")
    mask = masks.random_missing(images.shape[:-1], args.missing, seed=0)[..., None]
    sparse = np.where(mask > 0, images, np.nan).astype("float32")
    model = sparselayers.build_variant(args.variant, images.shape[1:], 10, filters=16,
                                       noise_sigma=0.2)
    model.compile(keras.optimizers.Adam(1e-3))
    model.fit((sparse, mask), batch_size=64, epochs=args.epochs, verbose=0 if args.quiet else 1)

    model.export_imputer(args.out, num_samples=10, seed=0)
    print(f"SavedModel written to {args.out}")

    served = tf.saved_model.load(args.out).signatures["serving_default"]
    request = {"inputs": {"image": np.nan_to_num(sparse[:2]).tolist(), "mask": mask[:2].tolist()}}
    with open(os.path.join(os.path.dirname(args.out) or ".", "request.json"), "w") as handle:
        json.dump(request, handle)
    outputs = served(image=tf.constant(request["inputs"]["image"], tf.float32),
                     mask=tf.constant(request["inputs"]["mask"], tf.float32))
    response = {"outputs": {name: value.numpy().round(3).tolist() for name, value in outputs.items()}}
    print("request:  inputs image (2, 8, 8, 1) and mask (2, 8, 8, 1); first mask row:",
          np.asarray(request["inputs"]["mask"])[0, 0, :, 0].tolist())
    print("response: outputs", {k: np.shape(v) for k, v in response["outputs"].items()})
    print("  latent_mean[0] =", response["outputs"]["latent_mean"][0])
    print("  imputed[0] row 0 =", np.asarray(response["outputs"]["imputed"])[0, 0, :, 0].tolist())
    in_process = model.impute(sparse[:2], mask[:2], num_samples=10)
    observed_kept = np.allclose(np.asarray(response["outputs"]["imputed"])[mask[:2] > 0],
                                images[:2][mask[:2] > 0], atol=1e-3)
    print(f"observed pixels kept: {observed_kept}; missing-pixel MSE served "
          f"{np.mean((outputs['imputed'].numpy() - images[:2])[mask[:2] == 0] ** 2):.4f}, "
          f"in process {np.mean((in_process - images[:2])[mask[:2] == 0] ** 2):.4f}")
    figure = os.path.join(os.path.dirname(args.out) or ".", "export_serving.png")
    save_grid(figure, [images[:2], mask[:2], np.clip(outputs["imputed"].numpy(), 0, 1)],
              ["truth", "mask", "served"])
    print(f"figure: {figure}")
    return response


if __name__ == "__main__":
    main()
