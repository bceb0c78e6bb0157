"""Initial fillings of the missing entries: mean, k-NN, noise, zeros.

Every function takes images ``x`` (batch, *shape) and ``mask`` of the same
shape (1 = observed; bool, or float > 0.5), missing entries holding anything
(NaN included), and returns float32 images whose observed entries are those of
``x`` exactly and whose missing entries are filled. They are TensorFlow
functions, usable inside `tf.function` and exported graphs.

One sample's values never reach another sample's filling: statistics taken
over the batch (the mean and the noise range without a reference) use finite
observed values only, so a NaN or Inf at an observed entry of one image stays
in that image.
"""

import numpy as np
import tensorflow as tf

from sparselayers.layers.image_and_mask import check_positive_int

__all__ = ["mean_fill", "noise_fill", "knn_fill", "border_weights"]

# Bound on the elements of one (queries x reference) distance block in k-NN.
_DISTANCE_BUDGET = 1 << 24


def observed_bool(mask, shape):
    mask = tf.convert_to_tensor(mask)
    observed = mask if mask.dtype == tf.bool else mask > tf.cast(0.5, mask.dtype)
    return tf.broadcast_to(observed, shape)


def _prepare(x, mask):
    x = tf.convert_to_tensor(x, tf.float32)
    observed = observed_bool(mask, tf.shape(x))
    return tf.where(observed, x, 0.0), observed


def check_reference_images(reference, caller):
    """Reference images as a float32 array (n >= 1, *shape), all finite.

    Raises:
        ValueError: naming `caller`, for a set that is empty or not a batch,
            or naming the first image that holds NaN or Inf.
    """
    reference = np.asarray(reference, np.float32)
    if reference.ndim < 2 or len(reference) == 0:
        raise ValueError(
            f"{caller}: the reference must be a non-empty batch of complete images "
            f"(n >= 1, *shape); received shape {reference.shape}.")
    finite = np.isfinite(reference.reshape(len(reference), -1)).all(axis=1)
    if not finite.all():
        raise ValueError(
            f"{caller}: reference image {int(np.argmin(finite))} holds NaN or Inf; "
            "reference images must be complete (finite everywhere).")
    return reference


def _check_reference(reference, caller):
    """The reference as a float32 tensor, checked by `check_reference_images`
    when its values are known (arrays, eager tensors), else by a graph assertion."""
    reference = tf.convert_to_tensor(reference, tf.float32)
    values = tf.get_static_value(reference)
    if values is not None:
        check_reference_images(values, caller)
    else:
        tf.debugging.assert_all_finite(
            reference, f"{caller}: reference images must be complete (finite everywhere).")
    return reference


def pixel_mean(reference):
    """Per-entry mean of complete reference images, (1, *shape)."""
    reference = _check_reference(reference, "pixel_mean")
    # In float64: a float32 sum of values near 3e38 overflows, their mean does not.
    return tf.cast(tf.reduce_mean(tf.cast(reference, tf.float64), axis=0, keepdims=True),
                   tf.float32)


def mean_fill(x, mask, reference=None):
    """Fills missing entries with the per-entry mean.

    Args:
        x, mask: images (batch, *shape) and their mask.
        reference: complete images (n >= 1, *shape) whose mean is used; if
            None, the mean of the finite observed values of ``x`` at each
            entry (over the batch), and the mean of all finite observed
            values where an entry is never observed (0 if nothing at all is).

    Returns:
        float32 images (batch, *shape).
    """
    x, observed = _prepare(x, mask)
    if reference is not None:
        mean = pixel_mean(reference)
    else:
        # Sums in float64: float32 values near 3e38 overflow a float32 sum,
        # while their mean is a float32 value.
        usable = tf.logical_and(observed, tf.math.is_finite(x))
        values = tf.where(usable, tf.cast(x, tf.float64), 0.0)
        weights = tf.cast(usable, tf.float64)
        counts = tf.reduce_sum(weights, axis=0, keepdims=True)
        overall = tf.math.divide_no_nan(tf.reduce_sum(values), tf.reduce_sum(weights))
        mean = tf.where(
            counts > 0, tf.math.divide_no_nan(tf.reduce_sum(values, axis=0, keepdims=True), counts),
            overall,
        )
        mean = tf.cast(mean, tf.float32)
    return tf.where(observed, x, mean)


def noise_fill(x, mask, low=None, high=None, seed=None):
    """Fills missing entries with uniform noise in [low, high).

    Args:
        x, mask: images and mask.
        low, high: noise range; default: the range of the finite observed
            values of ``x`` over the batch (0 and 1 if there is none).
        seed: int or None; the same seed gives the same noise
            (`tf.random.stateless_uniform`).
    """
    if seed is not None and not isinstance(seed, (int, np.integer, tf.Tensor, tf.Variable)):
        raise TypeError(f"seed must be an int or None; received seed={seed!r}.")
    x, observed = _prepare(x, mask)
    if low is None or high is None:
        usable = tf.logical_and(observed, tf.math.is_finite(x))
        any_usable = tf.reduce_any(usable)
        usable_min = tf.reduce_min(tf.where(usable, x, float("inf")))
        usable_max = tf.reduce_max(tf.where(usable, x, float("-inf")))
        low = tf.where(any_usable, usable_min, 0.0) if low is None else low
        high = tf.where(any_usable, usable_max, 1.0) if high is None else high
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    else:
        seed = tf.stack([tf.cast(seed, tf.int32), 0])
    noise = tf.random.stateless_uniform(tf.shape(x), seed=seed)
    noise = tf.cast(low, tf.float32) + noise * tf.cast(high - low, tf.float32)
    return tf.where(observed, x, noise)


def knn_fill(x, mask, reference, k=5, distance_weights=None):
    """Fills missing entries with the mean of the k nearest reference images.

    The distance from a query to a reference image is the squared Euclidean
    distance on the query's observed entries only, each entry weighted by
    `distance_weights` if given (``sum_j w_j (x_j - r_j)^2``; e.g.
    `border_weights`, which counts the observed entries bordering the hole
    most); a query with no observed entry (or only zero weights) gets the
    mean of all reference images (every reference is then at distance 0).
    Computed in blocks of queries with matrix products, so memory stays
    bounded (each block of distances holds at most 2**24 values) for, e.g.,
    10^4 queries against 10^4 references of 784 entries.

    Two passes. The matrix-product form |x|^2 - 2 x.r + |r|^2 of every
    distance, in float32 on data centred on the reference mean, shortlists
    the ``k + max(k, 16)`` nearest candidates; their exact distances, summed
    in float64 from the differences, pick the k (ties to the lower reference
    index). The product form cancels catastrophically when images share a
    large offset (MRI intensities of 500-4000, say), which centring removes;
    float32 round-off (about 1e-7 of the centred images' squared norms) can
    only swap references whose distances are that close, and the shortlist
    keeps max(k, 16) spare places for them: the neighbours are those of the
    exact distances unless more than that many references tie with the k-th
    within round-off. (Float32 products run about 4x faster than float64 on
    CPUs; this is what makes k-NN fills of 10^5 MNIST images take minutes.)

    Args:
        x, mask: images (batch, *shape) and mask.
        reference: complete (finite) images (n, *shape), n >= k.
        k: number of neighbours, a positive int.
        distance_weights: None (every observed entry weighs 1), or finite
            weights >= 0 of the images' shape (or broadcastable to it, e.g. 1
            channel), one per entry; those at missing entries are ignored.

    Returns:
        float32 images (batch, *shape); an empty batch gives an empty result.

    Example:

    ```python
    filled = imputers.knn_fill(sparse, mask, x_train, k=5,
                               distance_weights=imputers.border_weights(mask))
    ```
    """
    k = check_positive_int(k, "k")
    x, observed = _prepare(x, mask)
    weights = _distance_weights(distance_weights, observed)  # (batch, *shape), 0 where missing
    reference = _check_reference(reference, "knn_fill")
    count = reference.shape[0]
    if count is not None and k > count:
        raise ValueError(f"knn_fill: k={k} is larger than the reference set ({count} images).")
    if x.shape[1:] != reference.shape[1:]:
        raise ValueError(
            f"knn_fill: reference images have shape {tuple(reference.shape[1:])}, "
            f"queries {tuple(x.shape[1:])}."
        )
    image_shape = tf.shape(x)
    flat_x = tf.reshape(x, [image_shape[0], -1])  # (Q, D), 0 where missing
    seen = tf.reshape(observed, tf.shape(flat_x))  # (Q, D), bool
    flat_weights = tf.reshape(weights, tf.shape(flat_x))  # (Q, D), 0 where missing
    flat_reference = tf.reshape(reference, [tf.shape(reference)[0], -1])  # (N, D)
    reference_mean = tf.reduce_mean(flat_reference, axis=0, keepdims=True)  # (1, D)
    centred_reference = flat_reference - reference_mean  # (N, D); see the docstring
    reference_squares = tf.square(centred_reference)
    # The shortlist: every reference when the set is small.
    shortlist = k + max(k, 16) if count is None else min(int(count), k + max(k, 16))
    entries = int(np.prod(x.shape[1:])) if x.shape[1:].is_fully_defined() else 1
    # Each block holds (queries, N) coarse distances and a few float64
    # (queries, shortlist, D) temporaries of the exact distances: 2**24
    # elements at most in all.
    queries_per_block = max(
        1, _DISTANCE_BUDGET // max(int(count or 1), 4 * shortlist * entries, 1))

    def fill_block(start):
        size = tf.minimum(queries_per_block, tf.shape(flat_x)[0] - start)
        block = tf.slice(flat_x, [start, 0], [size, -1])
        block_seen = tf.slice(seen, [start, 0], tf.shape(block))
        block_weights = tf.slice(flat_weights, [start, 0], tf.shape(block))
        centred = tf.where(block_seen, block - reference_mean, 0.0)
        # sum_j w_j (x_j - r_j)^2 = sum w x^2 - 2 (w x) . r + w . r^2, float32
        coarse = (
            tf.reduce_sum(block_weights * tf.square(centred), axis=1, keepdims=True)
            - 2.0 * tf.matmul(block_weights * centred, centred_reference, transpose_b=True)
            + tf.matmul(block_weights, reference_squares, transpose_b=True)
        )  # (queries, N)
        _, candidates = tf.math.top_k(
            -coarse, k=tf.minimum(shortlist, tf.shape(coarse)[1]))  # (queries, shortlist)
        candidates = tf.sort(candidates, axis=1)  # ties go to the lower index
        differences = tf.where(
            block_seen[:, None, :],
            tf.cast(block[:, None, :], tf.float64)
            - tf.cast(tf.gather(flat_reference, candidates), tf.float64),
            0.0,
        )  # (queries, shortlist, D)
        exact = tf.reduce_sum(tf.cast(block_weights, tf.float64)[:, None, :]
                              * tf.square(differences), axis=2)  # (queries, shortlist)
        _, places = tf.math.top_k(-exact, k=k)
        nearest = tf.gather(candidates, places, batch_dims=1)  # (queries, k)
        neighbours = tf.reduce_mean(tf.gather(flat_reference, nearest), axis=1)
        has_observed = tf.reduce_any(block_weights > 0, axis=1, keepdims=True)
        neighbours = tf.where(has_observed, neighbours, reference_mean)
        return tf.where(block_seen, block, neighbours)

    num_queries = tf.shape(flat_x)[0]
    blocks = tf.TensorArray(tf.float32, size=0, dynamic_size=True, infer_shape=False)

    def add_block(index, start, blocks):
        return index + 1, start + queries_per_block, blocks.write(index, fill_block(start))

    _, _, blocks = tf.while_loop(
        lambda index, start, blocks: start < num_queries,
        add_block,
        (0, 0, blocks),
        parallel_iterations=1,
    )
    # An empty TensorArray cannot be concatenated: an empty batch is returned as is.
    filled = tf.cond(num_queries > 0, blocks.concat, lambda: flat_x)  # (Q, D)
    return tf.reshape(filled, image_shape)


def _distance_weights(distance_weights, observed):
    """float32 weights of `observed`'s shape: 1 (or the given weight) where
    observed, 0 where missing; ValueError for negative or non-finite ones."""
    if distance_weights is None:
        return tf.cast(observed, tf.float32)
    weights = tf.convert_to_tensor(distance_weights, tf.float32)
    try:
        weights = tf.broadcast_to(weights, tf.shape(observed))
    except (ValueError, tf.errors.InvalidArgumentError):
        raise ValueError(f"distance_weights of shape {tuple(weights.shape)} do not match the "
                         f"images' shape {tuple(observed.shape)}.") from None
    values, observed_values = tf.get_static_value(weights), tf.get_static_value(observed)
    if values is not None and observed_values is not None:
        bad = ~(np.isfinite(values) & (values >= 0)) & observed_values
        if bad.any():
            sample = int(np.argwhere(bad)[0][0])
            raise ValueError(f"distance_weights must be finite and >= 0 at observed entries; "
                             f"sample {sample} holds {values[bad][0]!r}.")
    else:
        used = tf.where(observed, weights, 0.0)
        message = "distance_weights must be finite and >= 0 at observed entries."
        tf.debugging.assert_all_finite(used, message)
        tf.debugging.assert_greater_equal(used, 0.0, message)
    return tf.where(observed, weights, 0.0)


def border_weights(mask, width=1, far_weight=0.2):
    """k-NN distance weights that count most the observed entries bordering a hole.

    The observed entries within Euclidean distance `width` (in pixels) of a
    missing entry of the same image and channel weigh 1, the other observed
    entries `far_weight`, missing ones 0: a neighbour is then chosen mostly
    by how well it continues the image across the hole's edge. On MNIST with
    13x13 holes, width 1 and far_weight 0.2 (chosen on held-out training
    images) gave k-NN fills 0.014 SSIM better than plain distances (0.831
    against 0.817), and the vector-field ascent from them 0.006-0.008 better
    (`benchmarks/RESULTS.md`, paper Table 1).

    Args:
        mask: (batch, height, width) or (batch, height, width, channels), 1
            (or True, or > 0.5) where observed.
        width: a positive int, the border's width in pixels.
        far_weight: a finite weight >= 0 of the observed entries farther away.

    Returns:
        float32 weights of the mask's shape, for `knn_fill`'s `distance_weights`.
    """
    width = check_positive_int(width, "width")
    if (isinstance(far_weight, bool) or not isinstance(far_weight, (int, float, np.number))
            or not np.isfinite(far_weight) or far_weight < 0):
        raise ValueError(f"far_weight must be a finite number >= 0; received {far_weight!r}.")
    mask = tf.convert_to_tensor(mask)
    if mask.shape.rank not in (3, 4):
        raise ValueError("border_weights takes a mask of images (batch, height, width) or "
                         f"(batch, height, width, channels); received shape {tuple(mask.shape)}.")
    observed = observed_bool(mask, tf.shape(mask))
    planes = observed[..., None] if mask.shape.rank == 3 else observed  # (batch, H, W, C)
    channels = planes.shape[-1]
    if channels is None:
        raise ValueError("border_weights needs the mask's number of channels to be known.")
    offsets = np.arange(-width, width + 1)
    disk = (offsets[:, None] ** 2 + offsets[None] ** 2 <= width ** 2).astype(np.float32)
    # Each channel on its own: a missing pixel within the disk makes a pixel near.
    near = tf.nn.depthwise_conv2d(1.0 - tf.cast(planes, tf.float32),
                                  np.repeat(disk[:, :, None, None], channels, axis=2),
                                  [1, 1, 1, 1], "SAME") > 0.5
    near = tf.reshape(near, tf.shape(mask))
    return tf.where(observed, tf.where(near, 1.0, float(far_weight)), 0.0)


def initial_fill(init, x, mask, reference=None, k=5, seed=None):
    """Dispatches ``init`` ("mean", "knn", "noise", "zeros" or an array)."""
    if isinstance(init, str):
        if init == "mean":
            return mean_fill(x, mask, reference)
        if init == "knn":
            if reference is None:
                raise ValueError("init='knn' needs `reference` images.")
            return knn_fill(x, mask, reference, k)
        if init == "noise":
            return noise_fill(x, mask, seed=seed)
        if init == "zeros":
            x, observed = _prepare(x, mask)
            return x
        raise ValueError(
            f"init must be 'mean', 'knn', 'noise', 'zeros' or an array; received {init!r}."
        )
    x, observed = _prepare(x, mask)
    init = tf.convert_to_tensor(init, tf.float32)
    if init.shape != x.shape:
        raise ValueError(
            f"An init array must have the images' shape {tuple(x.shape)}; received "
            f"{tuple(init.shape)}."
        )
    bad = tf.reduce_any(tf.reshape(tf.logical_and(tf.logical_not(observed),
                                                  tf.logical_not(tf.math.is_finite(init))),
                                   [tf.shape(x)[0], -1]), axis=1).numpy()
    if bad.any():
        samples = np.flatnonzero(bad)
        raise ValueError(
            f"An init array must be finite at the missing entries it fills; sample "
            f"{int(samples[0])} holds NaN or Inf there ({len(samples)} sample(s) do: "
            f"{samples[:10].tolist()}).")
    return tf.where(observed, x, init)
