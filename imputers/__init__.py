"""imputers: test-time imputation with any trained Keras auto-encoder.

* `vector_field_ascent` / `pseudo_gibbs`: ascent along the auto-encoder's
  vector field, compiled as one `tf.function` loop.
* `VectorFieldImputer`: the same, holding the model and reference data, with
  SavedModel export.
* `mean_fill`, `knn_fill`, `noise_fill`: initial fillings.
* `select_by_observed_fit`: per image, the imputation (e.g. of ascents from
  several starts) whose reconstruction fits the observed entries best.
* `train_denoising_autoencoder`: a training recipe for a user's own
  auto-encoder so that the ascent works from noise, mean and k-NN starts.
* `fit_dip`: Deep Image Prior fitting (`stacked_network`: one model running
  a separate copy of a network per image).
* `metrics`: `ssim`, `psnr`, `masked_mse`.
"""

from sparselayers import __version__  # one version for the distribution
from imputers import metrics
from imputers import stacked_network
from imputers.deep_image_prior import fit_dip
from imputers.denoising_training import train_denoising_autoencoder
from imputers.initialization import border_weights
from imputers.initialization import knn_fill
from imputers.initialization import mean_fill
from imputers.initialization import noise_fill
from imputers.start_selection import select_by_observed_fit
from imputers.vector_field import AscentDivergedError
from imputers.vector_field import AscentResult
from imputers.vector_field import pseudo_gibbs
from imputers.vector_field import vector_field_ascent
from imputers.vector_field_imputer import VectorFieldImputer

__all__ = [
    "__version__",
    "AscentDivergedError",
    "AscentResult",
    "VectorFieldImputer",
    "border_weights",
    "fit_dip",
    "knn_fill",
    "mean_fill",
    "metrics",
    "noise_fill",
    "pseudo_gibbs",
    "select_by_observed_fit",
    "stacked_network",
    "train_denoising_autoencoder",
    "vector_field_ascent",
    "autoencoder",
    "deep_image_prior",
    "denoising_training",
    "initialization",
    "start_selection",
    "vector_field",
    "vector_field_imputer",
]
