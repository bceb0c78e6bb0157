import numpy as np
import pytest

from imputers import metrics


def _ssim_reference(a, b, data_range=1.0):
    """NumPy SSIM: 11x11 Gaussian (sigma 1.5) window, valid positions, mean."""
    radius = 5
    offsets = np.arange(-radius, radius + 1)
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    window = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    height, width = a.shape
    values = []
    for i in range(height - 10):
        for j in range(width - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            mu_a, mu_b = (window * pa).sum(), (window * pb).sum()
            var_a = (window * pa**2).sum() - mu_a**2
            var_b = (window * pb**2).sum() - mu_b**2
            cov = (window * pa * pb).sum() - mu_a * mu_b
            values.append(
                (2 * mu_a * mu_b + c1) * (2 * cov + c2)
                / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
            )
    return np.mean(values)


def test_ssim_matches_numpy_reference(rng):
    a = rng.random((3, 28, 28))
    b = np.clip(a + 0.1 * rng.normal(size=a.shape), 0, 1)
    got = metrics.ssim(a, b)
    want = [_ssim_reference(x, y) for x, y in zip(a, b)]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(metrics.ssim(a, a), 1.0, rtol=1e-6)


def test_psnr_and_masked_mse(rng):
    a = rng.random((2, 16, 16, 1))
    b = a + 0.05
    np.testing.assert_allclose(metrics.psnr(a, b), 10 * np.log10(1 / 0.0025), rtol=1e-4)
    mask = np.ones_like(a)
    mask[:, :4] = 0
    b[:, :4] += 0.2  # only the missing rows differ more
    assert metrics.masked_mse(a, b, mask) == pytest.approx(0.25**2)
    assert metrics.masked_mse(a, b, np.ones_like(a)) == 0.0
    with pytest.raises(ValueError, match="shapes differ"):
        metrics.ssim(a, b[:, :8])
