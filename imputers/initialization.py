"""Initial fillings of the missing entries: mean, k-NN, noise, zeros.

Every function takes images ``x`` (batch, *shape) and ``mask`` of the same
shape (1 = observed; bool, or float > 0.5), missing entries holding anything
(NaN included), and returns float32 images whose observed entries are those of
``x`` exactly and whose missing entries are filled. They are TensorFlow
functions, usable inside `tf.function` and exported graphs.
"""

import tensorflow as tf

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


def pixel_mean(reference):
    """Per-entry mean of complete reference images, (1, *shape)."""
    return tf.reduce_mean(tf.convert_to_tensor(reference, tf.float32), axis=0, keepdims=True)


def mean_fill(x, mask, reference=None):
    """Fills missing entries with the per-entry mean.

    Args:
        x, mask: images (batch, *shape) and their mask.
        reference: complete images (n, *shape) whose mean is used; if None, the
            mean of the observed values of ``x`` at each entry (over the batch),
            and the mean of all observed values where an entry is never
            observed (0 if nothing at all is observed).

    Returns:
        float32 images (batch, *shape).
    """
    x, observed = _prepare(x, mask)
    if reference is not None:
        mean = pixel_mean(reference)
    else:
        weights = tf.cast(observed, tf.float32)
        counts = tf.reduce_sum(weights, axis=0, keepdims=True)
        overall = tf.math.divide_no_nan(tf.reduce_sum(x), tf.reduce_sum(weights))
        mean = tf.where(
            counts > 0, tf.math.divide_no_nan(tf.reduce_sum(x, axis=0, keepdims=True), counts),
            overall,
        )
    return tf.where(observed, x, mean)


def noise_fill(x, mask, low=None, high=None, seed=None):
    """Fills missing entries with uniform noise in [low, high).

    Args:
        x, mask: images and mask.
        low, high: noise range; default: the range of the observed values of
            ``x`` (0 and 1 if nothing is observed).
        seed: int or None; the same seed gives the same noise
            (`tf.random.stateless_uniform`).
    """
    x, observed = _prepare(x, mask)
    if low is None or high is None:
        any_observed = tf.reduce_any(observed)
        observed_min = tf.reduce_min(tf.where(observed, x, float("inf")))
        observed_max = tf.reduce_max(tf.where(observed, x, float("-inf")))
        low = tf.where(any_observed, observed_min, 0.0) if low is None else low
        high = tf.where(any_observed, observed_max, 1.0) if high is None else high
    if seed is None:
        seed = tf.random.uniform([2], maxval=2**31 - 1, dtype=tf.int32)
    else:
        seed = tf.stack([tf.cast(seed, tf.int32), 0])
    noise = tf.random.stateless_uniform(tf.shape(x), seed=seed)
    noise = tf.cast(low, tf.float32) + noise * tf.cast(high - low, tf.float32)
    return tf.where(observed, x, noise)


def knn_fill(x, mask, reference, k=5):
    """Fills missing entries with the mean of the k nearest reference images.

    The distance from a query to a reference image is the squared Euclidean
    distance on the query's observed entries only. Computed in blocks of
    queries with matrix products, so memory stays bounded (each block of
    distances holds at most 2**24 floats) for, e.g., 10^4 queries against 10^4
    references of 784 entries.

    Args:
        x, mask: images (batch, *shape) and mask.
        reference: complete images (n, *shape), n >= k.
        k: number of neighbours.

    Returns:
        float32 images (batch, *shape).
    """
    x, observed = _prepare(x, mask)
    reference = tf.convert_to_tensor(reference, tf.float32)
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
    weights = tf.cast(tf.reshape(observed, tf.shape(flat_x)), tf.float32)
    flat_reference = tf.reshape(reference, [tf.shape(reference)[0], -1])  # (N, D)
    reference_squares = tf.square(flat_reference)
    queries_per_block = max(1, _DISTANCE_BUDGET // max(int(count or 1), 1))

    def fill_block(start):
        size = tf.minimum(queries_per_block, tf.shape(flat_x)[0] - start)
        block = tf.slice(flat_x, [start, 0], [size, -1])
        block_weights = tf.slice(weights, [start, 0], tf.shape(block))
        # sum_j w_j (x_j - r_j)^2 = sum w x^2 - 2 (w x) . r + w . r^2
        distances = (
            tf.reduce_sum(block_weights * tf.square(block), axis=1, keepdims=True)
            - 2.0 * tf.matmul(block_weights * block, flat_reference, transpose_b=True)
            + tf.matmul(block_weights, reference_squares, transpose_b=True)
        )  # (queries, N)
        _, nearest = tf.math.top_k(-distances, k=k)  # (queries, k)
        neighbours = tf.reduce_mean(tf.gather(flat_reference, nearest), axis=1)
        return tf.where(block_weights > 0, block, neighbours)

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
    filled = blocks.concat()  # (Q, D)
    return tf.reshape(filled, image_shape)


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
    return tf.where(observed, x, init)
