import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

import imputers
from imputers import initialization
from imputers import vector_field as ascent_lib

SHAPE = (4, 4, 1)
D = 16


def _projector(rng, rank=3):
    basis, _ = np.linalg.qr(rng.normal(size=(D, rank)))
    return basis @ basis.T


def _linear_autoencoder(projector, mean):
    """r(x) = mean + P (x - mean), as a Sequential model on (4, 4, 1) images."""
    dense = keras.layers.Dense(D)
    model = keras.Sequential([
        keras.Input(SHAPE), keras.layers.Reshape((D,)), dense, keras.layers.Reshape(SHAPE),
    ])
    dense.set_weights([projector.T.astype("float32"), (mean - projector @ mean).astype("float32")])
    return model


def _closed_form(x, observed, projector, mean):
    """x_J = mu_J - A_JJ^-1 A_JO (x_O - mu_O), A = I - P, per sample."""
    a = np.eye(D) - projector
    out = x.reshape(len(x), D).astype(np.float64).copy()
    for sample, seen in zip(out, observed.reshape(len(x), D)):
        J, O = ~seen, seen
        sample[J] = mean[J] - np.linalg.solve(a[np.ix_(J, J)], a[np.ix_(J, O)] @ (sample[O] - mean[O]))
    return out.reshape(x.shape)


@pytest.fixture
def linear_problem(rng):
    projector = _projector(rng)
    mean = rng.normal(size=D)
    x = rng.normal(size=(5,) + SHAPE).astype("float32")
    observed = np.zeros((5, D), bool)
    for sample in observed:
        sample[rng.choice(D, 10, replace=False)] = True
    observed = observed.reshape((5,) + SHAPE)
    return projector, mean, x, observed


@pytest.mark.parametrize("method", ["ascent", "pseudo_gibbs"])
def test_linear_autoencoder_converges_to_closed_form(linear_problem, method):
    projector, mean, x, observed = linear_problem
    model = _linear_autoencoder(projector, mean)
    dirty = np.where(observed, x, np.nan).astype("float32")
    if method == "ascent":
        imputed = imputers.vector_field_ascent(model, dirty, observed, step_size=0.5, max_steps=3000)
    else:
        imputed = imputers.pseudo_gibbs(model, dirty, observed.astype("float32"), max_steps=3000)
    np.testing.assert_allclose(imputed, _closed_form(x, observed, projector, mean), atol=2e-4)
    # Observed entries bit-exact.
    np.testing.assert_array_equal(imputed[observed], x[observed])


def test_per_sample_stopping(linear_problem):
    projector, mean, x, observed = linear_problem
    model = _linear_autoencoder(projector, mean)
    start = _closed_form(x, observed, projector, mean).astype("float32")
    start[1:] = np.where(observed[1:], x[1:], 5.0)  # sample 0 starts at its fixed point
    result = imputers.vector_field_ascent(
        model, x, observed, step_size=0.5, max_steps=400, tol=1e-4, init=start,
        return_steps=True,
    )
    assert result.steps[0] == 0
    assert np.all(result.steps[1:] > 10) and np.all(result.steps[1:] < 400)
    np.testing.assert_array_equal(result.imputed[0], start[0])
    # The others ran until their largest update fell below tol.
    np.testing.assert_allclose(
        result.imputed[1:], _closed_form(x, observed, projector, mean)[1:], atol=2e-3
    )


def test_trajectory_and_latent_trajectory(linear_problem, rng):
    projector, mean, x, observed = linear_problem
    encoder = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(3)])
    decoder = keras.Sequential([keras.Input((3,)), keras.layers.Dense(D), keras.layers.Reshape(SHAPE)])
    result = imputers.vector_field_ascent(
        (encoder, decoder), x, observed, step_size=0.2, max_steps=7, init="zeros",
        return_trajectory=True,
    )
    assert result.trajectory.shape == (8, 5) + SHAPE
    assert result.latent_trajectory.shape == (8, 5, 3)
    np.testing.assert_array_equal(result.trajectory[0][~observed], 0.0)
    np.testing.assert_allclose(result.trajectory[-1], result.imputed)
    # Each step is x + h (r(x) - x) on the missing entries.
    step = result.trajectory[3]
    reconstruction = decoder(encoder(step)).numpy()
    want = np.where(observed, step, step + 0.2 * (reconstruction - step))
    np.testing.assert_allclose(result.trajectory[4], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(result.latent_trajectory[2], encoder(result.trajectory[2]).numpy(), rtol=1e-5)


def test_num_imputations_with_noise_differ(linear_problem):
    projector, mean, x, observed = linear_problem
    model = _linear_autoencoder(projector, mean)
    imputed = imputers.vector_field_ascent(
        model, x, observed, init="noise", seed=3, num_imputations=3, max_steps=2
    )
    assert imputed.shape == (3, 5) + SHAPE
    assert not np.allclose(imputed[0], imputed[1]) and not np.allclose(imputed[1], imputed[2])
    for copy in imputed:
        np.testing.assert_array_equal(copy[observed], x[observed])
    again = imputers.vector_field_ascent(
        model, x, observed, init="noise", seed=3, num_imputations=3, max_steps=2
    )
    np.testing.assert_array_equal(again, imputed)


def test_model_kinds_and_batching(linear_problem):
    projector, mean, x, observed = linear_problem
    sequential = _linear_autoencoder(projector, mean)

    class Subclassed(keras.Model):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def call(self, inputs):
            return self.inner(inputs)

    want = imputers.vector_field_ascent(sequential, x, observed, max_steps=20)
    for model in (Subclassed(sequential), lambda batch: sequential(batch)):
        got = imputers.vector_field_ascent(model, x, observed, max_steps=20)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    chunked = imputers.vector_field_ascent(sequential, x, observed, max_steps=20, batch_size=2,
                                           verbose=1)
    np.testing.assert_allclose(chunked, want, rtol=1e-5, atol=1e-6)
    compiled = imputers.vector_field_ascent(sequential, x, observed, max_steps=20, jit_compile=True)
    np.testing.assert_allclose(compiled, want, rtol=1e-4, atol=1e-5)


def test_no_retracing_for_repeated_calls(linear_problem):
    projector, mean, x, observed = linear_problem
    model = _linear_autoencoder(projector, mean)
    for step_size, steps in [(0.1, 5), (0.3, 9), (0.2, 5)]:
        imputers.vector_field_ascent(model, x, observed, step_size=step_size, max_steps=steps)
    compiled, _ = ascent_lib.compiled_ascent_for(model)
    assert compiled.function().experimental_get_tracing_count() == 1


def test_all_observed_unchanged_and_all_missing_defined(linear_problem):
    projector, mean, x, observed = linear_problem
    model = _linear_autoencoder(projector, mean)
    full = imputers.vector_field_ascent(model, x, np.ones_like(x), max_steps=50)
    np.testing.assert_array_equal(full, x)
    observed = observed.copy()
    observed[2] = False
    empty = np.where(observed, x, np.nan)
    imputed = imputers.vector_field_ascent(model, empty, observed, max_steps=50, init="knn",
                                           reference=x + 1.0)
    assert np.all(np.isfinite(imputed))


def test_knn_fill_matches_brute_force(rng, monkeypatch):
    reference = rng.random((40, 5, 3)).astype("float32")
    x = rng.random((13, 5, 3)).astype("float32")
    mask = rng.random((13, 5, 3)) < 0.5
    monkeypatch.setattr(initialization, "_DISTANCE_BUDGET", 40 * 4)  # blocks of 4 queries
    got = imputers.knn_fill(np.where(mask, x, np.nan), mask, reference, k=3).numpy()
    for query, seen, filled in zip(x, mask, got):
        distances = [np.sum((query[seen] - r[seen]) ** 2) for r in reference]
        nearest = np.argsort(distances)[:3]
        want = np.where(seen, query, reference[nearest].mean(axis=0))
        np.testing.assert_allclose(filled, want, rtol=1e-5, atol=1e-6)


def test_knn_fill_with_distance_weights_matches_brute_force(rng, monkeypatch):
    reference = rng.random((40, 6, 5)).astype("float32")
    x = rng.random((11, 6, 5)).astype("float32")
    mask = rng.random((11, 6, 5)) < 0.6
    weights = rng.random((11, 6, 5)).astype("float32")
    weights[3] = 0.0                       # no weight anywhere: the reference mean
    weights[4, mask[4]] = 0.0
    weights[4, 0, 0], mask[4, 0, 0] = 2.0, True
    monkeypatch.setattr(initialization, "_DISTANCE_BUDGET", 40 * 4)  # blocks of 4 queries
    got = imputers.knn_fill(np.where(mask, x, np.nan), mask, reference, k=3,
                            distance_weights=weights).numpy()
    for index, (query, seen, weight, filled) in enumerate(zip(x, mask, weights, got)):
        if not np.any(weight[seen] > 0):
            want = np.where(seen, query, reference.mean(axis=0))
        else:
            distances = [np.sum(weight[seen] * (query[seen] - r[seen]) ** 2) for r in reference]
            want = np.where(seen, query, reference[np.argsort(distances)[:3]].mean(axis=0))
        np.testing.assert_allclose(filled, want, rtol=1e-5, atol=1e-6, err_msg=f"query {index}")
    # Weighting changes the neighbours here (else the test proves nothing).
    plain = imputers.knn_fill(np.where(mask, x, np.nan), mask, reference, k=3).numpy()
    assert not np.allclose(plain, got)


@pytest.mark.parametrize("width", [1, 2, 3])
def test_border_weights_match_a_euclidean_distance_transform(rng, width):
    from scipy import ndimage

    mask = rng.random((4, 9, 10, 2)) > 0.08
    mask[0] = True                          # nothing missing: far_weight everywhere
    mask[1, 2:6, 3:7, 0] = False
    got = imputers.border_weights(mask, width, far_weight=0.3).numpy()
    assert got.shape == mask.shape and got.dtype == np.float32
    for sample in range(4):
        for channel in range(2):
            observed = mask[sample, :, :, channel]
            distance = (ndimage.distance_transform_edt(observed) if not observed.all()
                        else np.full(observed.shape, np.inf))
            want = np.where(observed, np.where(distance <= width, 1.0, 0.3), 0.0)
            np.testing.assert_array_equal(got[sample, :, :, channel], want.astype(np.float32))
    # One channel given as (batch, height, width): the same weights.
    np.testing.assert_array_equal(imputers.border_weights(mask[..., 0], width, 0.3).numpy(),
                                  got[..., 0])


def test_border_weights_find_better_neighbours_across_the_hole_edge(rng):
    """References that continue the query across the hole's edge win with border weights."""
    size = 12
    rows = np.arange(size)[:, None] * np.ones((1, size))
    query = (rows % 4 < 2).astype("float32")                 # horizontal stripes
    mask = np.ones((size, size), bool)
    mask[4:8, 4:8] = False
    # A: the stripes near the hole, noise far away; B: the stripes shifted by
    # one row (wrong across the edge) but exact away from the hole.
    far = np.ones((size, size), bool)
    far[3:9, 3:9] = False
    a = np.where(far, rng.random((size, size)) * 0.6 + 0.2, query)
    b = np.where(far, query, np.roll(query, 1, axis=0))
    reference = np.stack([a, b]).astype("float32")[..., None]
    sparse = np.where(mask, query, np.nan)[None, ..., None].astype("float32")
    observed = mask[None, ..., None]
    plain = imputers.knn_fill(sparse, observed, reference, k=1).numpy()[0]
    border = imputers.knn_fill(sparse, observed, reference, k=1,
                               distance_weights=imputers.border_weights(observed)).numpy()[0]
    np.testing.assert_array_equal(plain[~mask], b[..., None][~mask])
    np.testing.assert_array_equal(border[~mask], a[..., None][~mask])


def test_mean_and_noise_fill(rng):
    x = rng.random((6, 3, 3)).astype("float32")
    mask = rng.random((6, 3, 3)) < 0.5
    mask[:, 0, 0] = False  # never observed
    reference = rng.random((10, 3, 3)).astype("float32")
    with_reference = imputers.mean_fill(x, mask, reference).numpy()
    np.testing.assert_allclose(
        with_reference, np.where(mask, x, reference.mean(axis=0)), rtol=1e-6
    )
    own = imputers.mean_fill(np.where(mask, x, np.nan), mask).numpy()
    column_mean = np.nanmean(np.where(mask, x, np.nan)[:, 1, 1])
    np.testing.assert_allclose(own[~mask[:, 1, 1], 1, 1], column_mean, rtol=1e-6)
    np.testing.assert_allclose(own[:, 0, 0], x[mask].mean(), rtol=1e-5)
    noise = imputers.noise_fill(x, mask, seed=1).numpy()
    assert noise[~mask].min() >= x[mask].min() and noise[~mask].max() <= x[mask].max()
    np.testing.assert_array_equal(noise, imputers.noise_fill(x, mask, seed=1).numpy())
    np.testing.assert_array_equal(noise[mask], x[mask])


def test_bad_input(linear_problem):
    projector, mean, x, observed = linear_problem
    model = _linear_autoencoder(projector, mean)
    with pytest.raises(ValueError, match="step_size must be finite and > 0; received step_size=0"):
        imputers.vector_field_ascent(model, x, observed, step_size=0.0)
    with pytest.raises(ValueError, match=r"mask shape \(5, 4, 3, 1\)"):
        imputers.vector_field_ascent(model, x, observed[:, :, :3])
    with pytest.raises(ValueError, match=r"Reference images have shape .*\(4, 4\)"):
        imputers.vector_field_ascent(model, x, observed, init="knn", reference=x[..., 0])
    with pytest.raises(ValueError, match="k=9 is larger than the reference set"):
        imputers.vector_field_ascent(model, x, observed, init="knn", reference=x, k=9)
    with pytest.raises(ValueError, match="needs `reference`"):
        imputers.vector_field_ascent(model, x, observed, init="knn")
    with pytest.raises(ValueError, match="init must be"):
        imputers.vector_field_ascent(model, x, observed, init="median")
    bad_model = keras.Sequential([keras.Input(SHAPE), keras.layers.Flatten(), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"input \(2, 4, 4, 1\) gave output \(2, 3\)"):
        imputers.vector_field_ascent(bad_model, x, observed)


@pytest.mark.process
def test_imputer_object_and_export_in_fresh_process(linear_problem, tmp_path):
    projector, mean, x, observed = linear_problem
    model = _linear_autoencoder(projector, mean)
    reference = x + 0.5
    imputer = imputers.VectorFieldImputer(model, step_size=0.3, max_steps=40, init="knn", k=2)
    imputer.fit(reference)
    imputed = imputer.impute(np.where(observed, x, np.nan), observed)
    want = imputers.vector_field_ascent(
        model, x, observed, step_size=0.3, max_steps=40, init="knn", k=2, reference=reference
    )
    np.testing.assert_allclose(imputed, want, rtol=1e-6)

    imputer.export(tmp_path / "imputer")
    np.save(tmp_path / "x.npy", np.where(observed, x, 0.0).astype("float32"))
    np.save(tmp_path / "mask.npy", observed.astype("float32"))
    script = textwrap.dedent(f"""
        import json, numpy as np, tensorflow as tf
        loaded = tf.saved_model.load({str(tmp_path / 'imputer')!r})
        serve = loaded.signatures["serving_default"]
        out = serve(image=tf.constant(np.load({str(tmp_path / 'x.npy')!r})),
                    mask=tf.constant(np.load({str(tmp_path / 'mask.npy')!r})))
        print(json.dumps({{"keys": sorted(out), "imputed": out["imputed"].numpy().tolist(),
                          "diverged": out["diverged"].numpy().tolist()}}))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    payload = json.loads(result.stdout.strip().splitlines()[-1])
    assert payload["keys"] == ["diverged", "imputed"]
    assert payload["diverged"] == [False] * len(x)
    np.testing.assert_allclose(payload["imputed"], imputed, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_knn_fill_at_scale_stays_bounded(rng):
    """10^4 queries x 10^4 references x 784 entries: bounded memory, exact.

    Slow-marked so that it runs in a fresh process (`pytest -m slow`), where
    the peak-memory growth it measures is this test's own.
    """
    import resource

    reference = rng.random((10_000, 28, 28, 1), dtype=np.float32)
    x = rng.random((10_000, 28, 28, 1), dtype=np.float32)
    mask = rng.random(x.shape) < 0.5
    # Five checked queries get five near copies each in the reference set, so
    # their nearest neighbours are unambiguous.
    checked = rng.choice(10_000, 5, replace=False)
    slots = rng.choice(10_000, (5, 5), replace=False)
    for query, places in zip(checked, slots):
        reference[places] = x[query] + 0.01 * rng.standard_normal((5, 28, 28, 1), dtype=np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # GiB
    filled = imputers.knn_fill(np.where(mask, x, np.nan), mask, reference, k=5).numpy()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20 - before
    # The full distance matrix alone would be 0.4 GiB, its temporaries several.
    assert grown < 1.5, f"peak memory grew by {grown:.2f} GiB"
    flat_reference = reference.reshape(10_000, -1)
    for query, places in zip(checked, slots):
        seen = mask[query].reshape(-1)
        distances = ((flat_reference[:, seen] - x[query].reshape(-1)[seen]) ** 2).sum(axis=1)
        assert set(np.argsort(distances)[:5]) == set(places)
        want = flat_reference[places].mean(axis=0)
        want = np.where(seen, x[query].reshape(-1), want)
        np.testing.assert_allclose(filled[query].reshape(-1), want, rtol=1e-4, atol=1e-5)
