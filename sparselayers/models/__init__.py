"""Models built from the layers: the sparse VAE and the paper's variants.

* `SparseVAE` (`sparse_vae`): a VAE trained on observed entries only, with
  conditional-mean and multiple imputation; its batched imputation entry
  points run through `sparse_vae_imputation`.
* `sparse_vae_loss`: the loss of eq. 9 (TFP likelihood of observed entries + KL).
* `LinearSubspaceVAE` (`linear_subspace_vae`): the linear special case (eqs. 13-15).
* `build_variant` (`variants`): the model variants of §4.3.2 by name.
"""

from sparselayers.models import sparse_vae_loss
from sparselayers.models.linear_subspace_vae import LinearSubspaceVAE
from sparselayers.models.sparse_vae import SparseVAE
from sparselayers.models.variants import VARIANTS
from sparselayers.models.variants import build_variant

__all__ = [
    "LinearSubspaceVAE",
    "SparseVAE",
    "VARIANTS",
    "build_variant",
    "sparse_vae_loss",
    "linear_subspace_vae",
    "sparse_vae",
    "sparse_vae_imputation",
    "variants",
]
