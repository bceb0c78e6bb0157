import numpy as np
import pytest

from sparselayers import masks


@pytest.mark.parametrize("fraction", [0.0, 0.5, 0.9, 1.0])
def test_random_missing_exact_fraction_per_sample(fraction):
    mask = masks.random_missing((50, 28, 28), fraction, seed=3)
    assert mask.shape == (50, 28, 28) and mask.dtype == np.float32
    missing = (mask == 0).reshape(50, -1).sum(axis=1)
    np.testing.assert_array_equal(missing, round(fraction * 784))


def test_random_missing_seeded_and_varied():
    a = masks.random_missing((4, 10, 10), 0.5, seed=1)
    np.testing.assert_array_equal(a, masks.random_missing((4, 10, 10), 0.5, seed=1))
    assert not np.array_equal(a, masks.random_missing((4, 10, 10), 0.5, seed=2))
    assert not np.array_equal(a[0], a[1])
    # Every entry goes missing for some sample: places are uniform.
    many = masks.random_missing((2000, 5, 5), 0.5, seed=0)
    assert np.allclose(many.mean(axis=0), 0.52, atol=0.06)


@pytest.mark.parametrize("shape, patch", [((20, 28, 28), 13), ((5, 10, 12, 8), (3, 4, 5))])
def test_missing_patch_is_one_box(shape, patch):
    mask = masks.missing_patch(shape, patch, seed=0)
    size = np.prod(patch if isinstance(patch, tuple) else (patch,) * (len(shape) - 1))
    for sample in mask:
        holes = np.argwhere(sample == 0)
        assert len(holes) == size
        extent = holes.max(axis=0) - holes.min(axis=0) + 1
        assert np.prod(extent) == size
    corners = [tuple(np.argwhere(s == 0).min(axis=0)) for s in mask]
    assert len(set(corners)) > 1


def test_every_nth_slice():
    mask = masks.every_nth_slice((3, 12, 5, 7), n=6, axis=1, seed=0)
    for sample in mask:
        kept = np.where(sample[:, 0, 0] == 1)[0]
        assert len(kept) == 2 and kept[1] - kept[0] == 6
        assert np.all(sample == sample[:, :1, :1])
    fixed = masks.every_nth_slice((2, 4, 13), n=6, axis=-1, offset=1)
    np.testing.assert_array_equal(np.where(fixed[0, 0] == 1)[0], [1, 7])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: masks.random_missing((4, 4), 1.5), "missing_fraction"),
        (lambda: masks.random_missing((4,), 0.5), "shape"),
        (lambda: masks.missing_patch((2, 8, 8), 9), "patch_size"),
        (lambda: masks.missing_patch((2, 8, 8), (2, 2, 2)), "patch_size"),
        # Issue 21: 2.7 was silently used as 2.
        (lambda: masks.missing_patch((2, 8, 8), 2.7), r"patch_size must be an int .*2\.7"),
        (lambda: masks.missing_patch((2, 8, 8), (2, 3.5)), r"received \(2, 3\.5\)"),
        (lambda: masks.every_nth_slice((2, 8, 8), n=0), "n must"),
        (lambda: masks.every_nth_slice((2, 8, 8), axis=0), "axis"),
        (lambda: masks.every_nth_slice((2, 8, 8), n=3, offset=3), "offset"),
    ],
)
def test_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
