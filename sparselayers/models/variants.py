"""Builders of the paper's model variants (§4.3.2) and baselines.

`build_variant(name, image_shape, latent_dim)` returns a `SparseVAE` ready to
`compile` and `fit` on (image, mask) pairs (``conv-interp-residual``: a plain
`keras.Model`):

* ``conv-zero``: missing pixels filled with zeros, ordinary conv encoder.
* ``conv-mean``: filled with the pixel-wise dataset mean (pass `pixel_mean`,
  or call `model.encoder.get_layer("fill").adapt(images, masks)`).
* ``conv-interp``: filled by linear interpolation along rows (in TF), or
  along the axis given by ``axis`` (1 for thick-slice cuts).
* ``conv-interp-wmask``: conv-interp plus the mask as input channels.
* ``conv-sparse``: sparsity-aware encoder of residual blocks of two
  `WeightedConv2D` 3x3 + ReLU, each block followed by 2x2 max-pooling of the
  features and of the mask.
* ``conv-FC-sparse``: conv-sparse followed by a `SparseDense` bottleneck
  (posterior mean and log-variance), enabling covariance across the image.
* ``conv-interp-residual``: for thick-slice images (rows along H observed
  every n-th): linear interpolation along H (`FillMissing(axis=1)`) plus the
  mask, then a stack of dilated 3x3 convolutions that predicts a correction
  added to the interpolation. Fully convolutional (images of any size:
  ``image_shape=(None, None, 1)``), deterministic (a plain `keras.Model`
  mapping ``[image, mask]`` to the filled image, not a VAE), and equal to
  linear interpolation before training (the correction starts at zero).
  Trained by hiding rows of fully observed images (the acquired slices of
  a thick-slice scan: see `sparselayers.mri.training`).
* ``conv-interp-residual-vae``: its sparse VAE form, with multiple
  imputation and a per-pixel predictive uncertainty: a `SparseVAE` with a
  spatial latent (H, W, latent_dim), of any image size. Encoder: the
  interpolation and mask, three dilated convolutions (1, 2, 4) of half the
  channels, 1x1 convolutions to the posterior mean and log-variance maps.
  Decoder, conditional and heteroscedastic (`sparse_vae_loss.decode`): the
  deterministic model's network on the interpolation, the mask and the
  latent map (through a zero-initialised 1x1 convolution), whose mean is the interpolation plus a correction (zero at
  the start, as above) and whose second output is a per-pixel log noise
  scale (one more convolution on the same features, which it does not train). Trained on (image, mask, scored_mask) triples: the encoder and
  decoder see the kept rows, the likelihood scores every known pixel.
  `latent_dim` is the latent's channel count.
* ``linear``: the linear subspace model (`LinearSubspaceVAE`, eqs. 13-15).
* ``volumetric``: `LocallyConnectedSparse3D` encoder for volumes
  (X, Y, Z, C); the decoder maps the latent to per-block codes and each block
  back to voxels (a transposed convolution with stride = block size).

The paper's 2-D variants share one decoder: Dense -> reshape -> `levels` x (2x
upsampling, two 3x3 convs + ReLU) -> 3x3 conv with `output_activation`. The
paper uses five levels on larger images; `levels` (default 2) must divide the
image size: 28 -> 14 -> 7 for MNIST.
"""

import keras
import numpy as np

from sparselayers.layers.fill_missing import FillMissing
from sparselayers.layers.image_and_mask import check_positive_int
from sparselayers.models.linear_subspace_vae import LinearSubspaceVAE
from sparselayers.layers.locally_connected_sparse import LocallyConnectedSparse3D
from sparselayers.layers.sparse_dense import SparseDense
from sparselayers.models.sparse_vae import SparseVAE
from sparselayers.layers.weighted_conv import WeightedConv2D

__all__ = ["VARIANTS", "build_variant"]

VARIANTS = (
    "conv-zero", "conv-mean", "conv-interp", "conv-interp-wmask", "conv-sparse",
    "conv-FC-sparse", "conv-interp-residual", "conv-interp-residual-vae", "linear", "volumetric",
)

_FILL = {
    "conv-zero": ("zero", False), "conv-mean": ("mean", False),
    "conv-interp": ("interp", False), "conv-interp-wmask": ("interp", True),
}


def build_variant(name, image_shape, latent_dim=10, *, filters=32, levels=2, noise_sigma=0.1,
                  learn_noise_sigma=False, num_samples=1, pixel_mean=None,
                  regularization=1e-3, output_activation=None, block_size=8,
                  block_units=16, dilations=(1, 2, 4, 8, 4, 2, 1), axis=None):
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
        output_activation: of the decoder's last layer. Default None: the
            Gaussian mean is linear, as usual for a Gaussian likelihood. A
            "sigmoid" mean keeps outputs in [0, 1] but can saturate early in
            training, when most pixels are background: on 3,000 sparse MNIST
            images (75% missing) conv-zero then stopped learning after one
            epoch (KL 0, every output near 0), while the linear mean trained.
        block_size, block_units: of the "volumetric" LocallyConnectedSparse3D.
        dilations: of the "conv-interp-residual" convolutions (one each,
            `filters` channels; the receptive field grows with their sum).
        axis: the interpolation axis (`FillMissing`'s) of the "conv-interp*"
            variants: 1 along H (thick-slice cuts, rows every n-th observed),
            -2 along W, "both" for scattered pixels. Default: 1 for
            "conv-interp-residual(-vae)", -2 (rows) for "conv-interp" and
            "conv-interp-wmask".

    Returns:
        An uncompiled `SparseVAE`; for "conv-interp-residual" an uncompiled
        `keras.Model` ``[image, mask] -> image``.

    Example:

    >>> model = build_variant("conv-sparse", (28, 28, 1), latent_dim=10)
    >>> refiner = build_variant("conv-interp-residual", (None, None, 1), filters=32)
    """
    image_shape = tuple(image_shape)
    check_positive_int(levels, "levels")
    check_positive_int(latent_dim, "latent_dim")
    check_positive_int(filters, "filters")
    common = dict(noise_sigma=noise_sigma, learn_noise_sigma=learn_noise_sigma,
                  num_samples=num_samples)
    if name == "linear":
        return LinearSubspaceVAE(image_shape, latent_dim, **common)
    if name == "conv-interp-residual":
        return _interp_residual(image_shape, filters, dilations, 1 if axis is None else axis)
    if name == "conv-interp-residual-vae":
        encoder, decoder = _interp_residual_vae(image_shape, latent_dim, filters, dilations,
                                                1 if axis is None else axis, noise_sigma)
        return SparseVAE(encoder, decoder, name="conv_interp_residual_vae", **common)
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
        features = FillMissing(method, append_mask, pixel_mean, axis=-2 if axis is None else axis,
                               name="fill")([image, mask])
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


def _interp_residual(image_shape, filters, dilations, axis):
    if len(image_shape) != 3:
        raise ValueError(f"'conv-interp-residual' needs image_shape (H, W, C); received "
                         f"{image_shape}.")
    channels = image_shape[-1]
    if channels is None:
        raise ValueError("'conv-interp-residual' needs a known channel count in image_shape.")
    if not dilations or any(int(d) < 1 for d in dilations):
        raise ValueError(f"dilations must be a non-empty list of ints >= 1; received {dilations}.")
    image = keras.Input(image_shape, name="image")
    mask = keras.Input(image_shape, name="mask")
    # (batch, H, W, 2C): the interpolation along `axis`, then the mask's values
    # where observed (0/1 for missing slices; each row's position relative to
    # the slices for thick-slice cuts, `sparselayers.mri.slice_profile.row_mask`).
    filled = FillMissing("interp", append_mask=True, axis=axis, mask_channel="values",
                         name="fill")([image, mask])
    interpolated = filled[..., :channels]
    x = filled
    for dilation in dilations:
        x = keras.layers.Conv2D(filters, 3, padding="same", dilation_rate=int(dilation),
                                activation="relu")(x)
    # Zero-initialised: the untrained model is linear interpolation itself.
    correction = keras.layers.Conv2D(channels, 3, padding="same", kernel_initializer="zeros",
                                     name="correction")(x)
    output = keras.layers.Add(name="imputed")([interpolated, correction])
    return keras.Model([image, mask], output, name="conv_interp_residual")


def _interp_residual_vae(image_shape, latent_channels, filters, dilations, axis, noise_sigma):
    _interp_residual(image_shape, filters, dilations, axis)  # the same argument checks
    channels = image_shape[-1]
    image = keras.Input(image_shape, name="image")
    mask = keras.Input(image_shape, name="mask")
    x = FillMissing("interp", append_mask=True, axis=axis, mask_channel="values",
                    name="fill")([image, mask])
    for dilation in (1, 2, 4):
        x = keras.layers.Conv2D(max(1, filters // 2), 3, padding="same", dilation_rate=dilation,
                                activation="relu")(x)
    mean = keras.layers.Conv2D(latent_channels, 1, name="mean")(x)
    log_variance = keras.layers.Conv2D(latent_channels, 1, name="log_variance")(x)
    encoder = keras.Model([image, mask], [mean, log_variance], name="encoder")

    latent = keras.Input(tuple(image_shape[:-1]) + (latent_channels,), name="latent")
    observed = keras.Input(image_shape, name="image")
    observed_mask = keras.Input(image_shape, name="mask")
    # (batch, H, W, 2C): the interpolation and the mask's values, as the
    # deterministic model's input, then the latent map.
    filled = FillMissing("interp", append_mask=True, axis=axis, mask_channel="values",
                         name="fill")([observed, observed_mask])
    interpolated = filled[..., :channels]
    # The latent enters through a zero-initialised 1x1 convolution: the
    # untrained decoder is the deterministic model itself, not disturbed by
    # the latent's noise while it learns the correction.
    gated = keras.layers.Conv2D(latent_channels, 1, use_bias=False, kernel_initializer="zeros",
                                name="latent_gate")(latent)
    x = keras.layers.Concatenate()([filled, gated])
    for dilation in dilations:
        x = keras.layers.Conv2D(filters, 3, padding="same", dilation_rate=int(dilation),
                                activation="relu")(x)
    correction = keras.layers.Conv2D(channels, 3, padding="same", kernel_initializer="zeros",
                                     name="correction")(x)
    output = keras.layers.Add(name="imputed")([interpolated, correction])
    # The noise scale: its own convolution on the mean's features, which it
    # reads but does not train (stop_gradient): trained through a shared
    # trunk, the scale's likelihood held the mean's correction near zero
    # (no better than interpolation after 600 steps on the cohort). It
    # starts at the model's sigma everywhere.
    scale_features = keras.layers.Conv2D(filters, 3, padding="same", activation="relu",
                                         name="scale_features")(keras.ops.stop_gradient(x))
    log_scale = keras.layers.Conv2D(
        channels, 3, padding="same", kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(float(np.log(noise_sigma))),
        name="log_scale")(scale_features)
    decoder = keras.Model([latent, observed, observed_mask], [output, log_scale], name="decoder")
    return encoder, decoder


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
