"""Builders of the paper's model variants (§4.3.2) and baselines.

`build_variant(name, image_shape, latent_dim)` returns a `SparseVAE` ready to
`compile` and `fit` on (image, mask) pairs:

* ``conv-zero``: missing pixels filled with zeros, ordinary conv encoder.
* ``conv-mean``: filled with the pixel-wise dataset mean (pass `pixel_mean`,
  or call `model.encoder.get_layer("fill").adapt(images, masks)`).
* ``conv-interp``: filled by linear interpolation along rows (in TF).
* ``conv-interp-wmask``: conv-interp plus the mask as input channels.
* ``conv-sparse``: sparsity-aware encoder of residual blocks of two
  `WeightedConv2D` 3x3 + ReLU, each block followed by 2x2 max-pooling of the
  features and of the mask.
* ``conv-FC-sparse``: conv-sparse followed by a `SparseDense` bottleneck
  (posterior mean and log-variance), enabling covariance across the image.
* ``linear``: the linear subspace model (`LinearSubspaceVAE`, eqs. 13-15).
* ``volumetric``: `LocallyConnectedSparse3D` encoder for volumes
  (X, Y, Z, C); the decoder maps the latent to per-block codes and each block
  back to voxels (a transposed convolution with stride = block size).

All 2-D variants share one decoder: Dense -> reshape -> `levels` x (2x
upsampling, two 3x3 convs + ReLU) -> 3x3 conv with `output_activation`. The
paper uses five levels on larger images; `levels` (default 2) must divide the
image size: 28 -> 14 -> 7 for MNIST.
"""

import keras

from sparselayers.fill_missing import FillMissing
from sparselayers.linear_subspace_vae import LinearSubspaceVAE
from sparselayers.locally_connected_sparse import LocallyConnectedSparse3D
from sparselayers.sparse_dense import SparseDense
from sparselayers.sparse_vae import SparseVAE
from sparselayers.weighted_conv import WeightedConv2D

VARIANTS = (
    "conv-zero", "conv-mean", "conv-interp", "conv-interp-wmask", "conv-sparse",
    "conv-FC-sparse", "linear", "volumetric",
)

_FILL = {
    "conv-zero": ("zero", False), "conv-mean": ("mean", False),
    "conv-interp": ("interp", False), "conv-interp-wmask": ("interp", True),
}


def build_variant(name, image_shape, latent_dim=10, *, filters=32, levels=2, noise_sigma=0.1,
                  learn_noise_sigma=False, num_samples=1, pixel_mean=None,
                  regularization=1e-3, output_activation="sigmoid", block_size=8,
                  block_units=16):
    """Builds one of `VARIANTS` as a `SparseVAE`.

    Args:
        name: a name from `VARIANTS`.
        image_shape: (H, W, C) for 2-D variants, (X, Y, Z, C) for "volumetric".
        latent_dim: d.
        filters: channels of the first level (doubled at each level).
        levels: pooling / upsampling levels; H and W must be multiples of 2**levels.
        noise_sigma, learn_noise_sigma, num_samples: as `SparseVAE`.
        pixel_mean: pixel-wise mean for "conv-mean" (else adapt the layer).
        regularization: lambda of SparseDense layers ("conv-FC-sparse",
            "volumetric"); "linear" uses lambda = noise_sigma**2 (eq. 15).
        output_activation: of the decoder's last layer ("sigmoid" for [0, 1]).
        block_size, block_units: of the "volumetric" LocallyConnectedSparse3D.

    Returns:
        An uncompiled `SparseVAE`.
    """
    image_shape = tuple(image_shape)
    common = dict(noise_sigma=noise_sigma, learn_noise_sigma=learn_noise_sigma,
                  num_samples=num_samples)
    if name == "linear":
        return LinearSubspaceVAE(image_shape, latent_dim, **common)
    if name == "volumetric":
        encoder, decoder = _volumetric(image_shape, latent_dim, block_size, block_units,
                                       regularization, output_activation)
        return SparseVAE(encoder, decoder, name="volumetric", **common)
    if name not in VARIANTS:
        raise ValueError(f"Unknown variant {name!r}; choose one of {', '.join(VARIANTS)}.")
    if len(image_shape) != 3:
        raise ValueError(f"Variant {name!r} needs image_shape (H, W, C); received {image_shape}.")
    if any(size % 2**levels for size in image_shape[:2]):
        raise ValueError(
            f"Image size {image_shape[:2]} is not a multiple of 2**levels = {2**levels}."
        )
    image = keras.Input(image_shape, name="image")
    mask = keras.Input(image_shape, name="mask")
    if name in _FILL:
        method, append_mask = _FILL[name]
        features = FillMissing(method, append_mask, pixel_mean, name="fill")([image, mask])
        for level in range(levels):
            for _ in range(2):
                features = keras.layers.Conv2D(filters * 2**level, 3, padding="same",
                                               activation="relu")(features)
            features = keras.layers.MaxPooling2D(2)(features)
        flat = keras.layers.Flatten()(features)
        mean = keras.layers.Dense(latent_dim, name="mean")(flat)
        log_variance = keras.layers.Dense(latent_dim, name="log_variance")(flat)
    else:
        features, feature_mask = image, mask
        for level in range(levels):
            features, feature_mask = _weighted_residual_block(
                features, feature_mask, filters * 2**level)
            features = keras.layers.MaxPooling2D(2)(features)
            feature_mask = keras.layers.MaxPooling2D(2)(feature_mask)
        if name == "conv-FC-sparse":
            mean = SparseDense(latent_dim, regularization=regularization, name="mean")(
                [features, feature_mask])
            log_variance = SparseDense(latent_dim, regularization=regularization,
                                       name="log_variance")([features, feature_mask])
        else:
            flat = keras.layers.Flatten()(features)
            mean = keras.layers.Dense(latent_dim, name="mean")(flat)
            log_variance = keras.layers.Dense(latent_dim, name="log_variance")(flat)
    encoder = keras.Model([image, mask], [mean, log_variance], name="encoder")
    decoder = _conv_decoder(image_shape, latent_dim, filters, levels, output_activation)
    return SparseVAE(encoder, decoder, name=name.replace("-", "_"), **common)


def _weighted_residual_block(features, mask, filters):
    """Two WeightedConv2D 3x3 + ReLU, the second with a residual connection."""
    first, mask = WeightedConv2D(filters, 3, activation="relu")([features, mask])
    second, mask = WeightedConv2D(filters, 3, activation="relu")([first, mask])
    return keras.layers.Add()([first, second]), mask


def _conv_decoder(image_shape, latent_dim, filters, levels, output_activation):
    height, width, channels = image_shape
    scale = 2**levels
    top = filters * 2 ** (levels - 1)
    latent = keras.Input((latent_dim,), name="latent")
    x = keras.layers.Dense((height // scale) * (width // scale) * top, activation="relu")(latent)
    x = keras.layers.Reshape((height // scale, width // scale, top))(x)
    for level in reversed(range(levels)):
        x = keras.layers.UpSampling2D(2)(x)
        for _ in range(2):
            x = keras.layers.Conv2D(filters * 2**level, 3, padding="same", activation="relu")(x)
    output = keras.layers.Conv2D(channels, 3, padding="same", activation=output_activation)(x)
    return keras.Model(latent, output, name="decoder")


def _volumetric(image_shape, latent_dim, block_size, block_units, regularization,
                output_activation):
    if len(image_shape) != 4:
        raise ValueError(f"'volumetric' needs image_shape (X, Y, Z, C); received {image_shape}.")
    image = keras.Input(image_shape, name="image")
    mask = keras.Input(image_shape, name="mask")
    codes = LocallyConnectedSparse3D(block_units, block_size, regularization=regularization,
                                     name="blocks")([image, mask])
    flat = keras.layers.Flatten()(codes)
    mean = keras.layers.Dense(latent_dim, name="mean")(flat)
    log_variance = keras.layers.Dense(latent_dim, name="log_variance")(flat)
    encoder = keras.Model([image, mask], [mean, log_variance], name="encoder")
    grid = tuple(codes.shape[1:4])
    latent = keras.Input((latent_dim,), name="latent")
    x = keras.layers.Dense(int(grid[0] * grid[1] * grid[2]) * block_units, activation="relu")(latent)
    x = keras.layers.Reshape(grid + (block_units,))(x)
    output = keras.layers.Conv3DTranspose(image_shape[-1], block_size, strides=block_size,
                                          activation=output_activation)(x)
    decoder = keras.Model(latent, output, name="decoder")
    return encoder, decoder
