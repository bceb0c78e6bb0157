"""Saves small .keras models with the code before the layout change (issue 19).

Run once, at commit 52e8ff4 (the flat layout), from the repository root:
    python tests/data/make_pre_layout_models.py
tests/test_layout.py loads them with the current code and checks their outputs.
"""
import os, numpy as np, keras
import sparselayers
from sparselayers import build_variant, SparseDense, WeightedConv1D, WeightedConv3D, LocallyConnectedSparse2D
keras.utils.set_random_seed(0)
out = "tests/data/pre_layout_models"
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(0)
arrays = {}
def save(name, model, inputs):
    model.save(f"{out}/{name}.keras")
    outputs = model(inputs, training=False)
    for i, x in enumerate(inputs):
        arrays[f"{name}_input{i}"] = np.asarray(x)
    arrays[f"{name}_output"] = np.asarray(outputs)
img = rng.normal(size=(2, 8, 8, 1)).astype("float32"); mask = (rng.random((2, 8, 8, 1)) > 0.4).astype("float32")
for variant in ["conv-zero", "conv-interp", "conv-FC-sparse", "linear", "conv-interp-residual", "conv-interp-residual-vae"]:
    shape = (None, None, 1) if variant.startswith("conv-interp-residual") else (8, 8, 1)
    m = build_variant(variant, shape, latent_dim=2, filters=2, levels=1, dilations=(1, 2))
    save(variant, m, [img, mask])
vol = rng.normal(size=(1, 8, 8, 8, 1)).astype("float32"); vmask = (rng.random((1, 8, 8, 8, 1)) > 0.4).astype("float32")
save("volumetric", build_variant("volumetric", (8, 8, 8, 1), latent_dim=2, block_size=4, block_units=2), [vol, vmask])
# The layers the variants do not use, in one functional model each.
x1 = keras.Input((8, 1)); m1 = keras.Input((8, 1))
y, _ = WeightedConv1D(2, 3)([x1, m1])
seq = rng.normal(size=(2, 8, 1)).astype("float32"); smask = (rng.random((2, 8, 1)) > 0.4).astype("float32")
save("weighted_conv1d", keras.Model([x1, m1], y), [seq, smask])
x3 = keras.Input((8, 8, 8, 1)); m3 = keras.Input((8, 8, 8, 1))
y, _ = WeightedConv3D(2, 3)([x3, m3])
save("weighted_conv3d", keras.Model([x3, m3], y), [vol, vmask])
x2 = keras.Input((8, 8, 1)); m2 = keras.Input((8, 8, 1))
y = LocallyConnectedSparse2D(2, 4)([x2, m2])
save("locally_connected_sparse2d", keras.Model([x2, m2], y), [img, mask])
np.savez_compressed(f"{out}/inputs_outputs.npz", **arrays)
print({k: v.shape for k, v in arrays.items() if k.endswith("output")})
