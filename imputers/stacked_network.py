"""Copies of one Keras network, each with its own weights, run as one model.

A Deep Image Prior fits a separate network to every image. Run as separate
networks, even side by side in one graph, every step launches every op of
every network once per image. `stack_networks` builds instead ONE Keras model
whose weights carry a leading copy axis: sample g of its batch goes through
copy g, and each layer does the work of all copies at once:

* `Dense`: one batched matrix product, kernels (copies, in, out);
* `Conv1D`, `Conv2D`, `Conv1DTranspose`, `Conv2DTranspose`: one grouped
  convolution with a group per copy, where the device can differentiate
  grouped convolutions (`grouped_convolution_supported`);
* `BatchNormalization`: each copy normalises its sample with the sample's own
  statistics (training mode; a copy's batch is its one sample), then applies
  its own scale and offset;
* layers without weights: as they are, on the whole batch (Keras' own treat
  each sample separately);
* any other layer with weights: its copies called one after another, each on
  its sample, inside the same graph.

Example:

>>> copies = [keras.models.clone_model(generator) for _ in range(16)]
>>> stacked = stack_networks(copies)       # batch of 16: one sample per copy
>>> images = stacked(z, training=True)     # images[g] = copies[g](z[g:g+1])[0]
"""

import functools

import keras
import numpy as np
import tensorflow as tf

# Keras exports no public name for Functional models; `clone_model` accepts a
# `clone_function` only for them and for Sequential models.
from keras.src.models.functional import Functional

__all__ = ["stack_networks", "grouped_convolution_supported"]


def stack_networks(networks):
    """Returns one Keras model running `networks[g]` on sample g of its batch.

    Args:
        networks: a list of G built Keras models of one architecture, e.g.
            clones made by `keras.models.clone_model`.

    Returns:
        A Keras model taking a batch of exactly G inputs, with
        `output[g] == networks[g](input[g:g+1], training=True)[0]` (up to
        float rounding). Layers that can be stacked (see the module docstring)
        get new variables holding the G networks' weights along a leading
        axis; any other layer with weights is the networks' own layers, so
        training the stacked model trains those layers of the networks in
        place. BatchNormalization always normalises with each sample's own
        statistics, as in training mode, and keeps no moving statistics.

    Raises:
        ValueError: if `networks` is empty or its models differ in
            architecture.
    """
    networks = list(networks)
    if not networks:
        raise ValueError("stack_networks needs at least one network; received none.")
    copies_of = _corresponding_layers(networks)
    count = len(networks)

    def stack_layer(layer):
        if not layer.weights:
            return layer.__class__.from_config(layer.get_config())
        return _stacked_layer(copies_of[id(layer)])

    template = networks[0]
    if not isinstance(template, (keras.Sequential, Functional)):
        # A subclassed model can only be run copy by copy.
        input_shape = template.get_build_config()["input_shape"]
        inputs = keras.Input(batch_shape=(count,) + tuple(input_shape[1:]))
        return keras.Model(inputs, _PerCopy(networks)(inputs))
    inputs = [keras.Input(batch_shape=(count,) + tuple(tensor.shape[1:]))
              for tensor in template.inputs]
    return keras.models.clone_model(
        template, input_tensors=inputs if len(inputs) > 1 else inputs[0],
        clone_function=stack_layer, recursive=True,
    )


def _corresponding_layers(networks):
    """Maps id(layer of networks[0]) to that layer in every network."""
    copies_of = {}

    def visit(models):
        names = [type(model).__name__ for model in models]
        sizes = [len(model.layers) for model in models]
        if len(set(names)) > 1 or len(set(sizes)) > 1:
            raise ValueError(
                f"stack_networks needs networks of one architecture; received models "
                f"{names} with {sizes} layers."
            )
        for layers in zip(*(model.layers for model in models)):
            shapes = [[tuple(w.shape) for w in layer.weights] for layer in layers]
            if len({type(layer) for layer in layers}) > 1 or any(s != shapes[0] for s in shapes):
                raise ValueError(
                    f"stack_networks needs networks of one architecture; layer "
                    f"'{layers[0].name}' differs between them (classes "
                    f"{[type(layer).__name__ for layer in layers]}, weight shapes {shapes})."
                )
            copies_of[id(layers[0])] = list(layers)
            if isinstance(layers[0], keras.Model):
                visit(layers)

    visit(networks)
    return copies_of


def grouped_convolution_supported(dtype="float32"):
    """Whether the default device differentiates grouped convolutions in `dtype`.

    GPUs do, and x86 CPUs with oneDNN (TensorFlow's default) do in float32;
    without oneDNN the CPU gradient kernels raise "Gradients for grouped
    convolutions are not supported on CPU", and with oneDNN float16 works only
    on CPUs with AVX-512 FP16 (bfloat16 on those with AVX-512 BF16). So the
    answer is probed, never assumed: once per dtype and device (eagerly, even
    when called while tracing), and cached.

    Args:
        dtype: the convolution's compute dtype, e.g. "float32" or "float16".
    """
    with tf.init_scope():
        device = tf.constant(0.0).device  # where a new op lands: GPU:0 if any
    return _probe_grouped_convolution(tf.as_dtype(dtype).name, device)


@functools.cache
def _probe_grouped_convolution(dtype, device):
    strides = [1, 1, 1, 1]
    with tf.init_scope(), tf.device(device):
        # A grouped convolution (2 groups of 2 channels) and its two gradient
        # kernels, called directly: tapes do not record in an init_scope.
        try:
            tf.raw_ops.Conv2D(
                input=tf.ones((1, 3, 3, 4), dtype), filter=tf.ones((3, 3, 2, 2), dtype),
                strides=strides, padding="SAME")
            tf.raw_ops.Conv2DBackpropInput(
                input_sizes=[1, 3, 3, 4], filter=tf.ones((3, 3, 2, 2), dtype),
                out_backprop=tf.ones((1, 3, 3, 2), dtype), strides=strides, padding="SAME")
            tf.raw_ops.Conv2DBackpropFilter(
                input=tf.ones((1, 3, 3, 4), dtype), filter_sizes=[3, 3, 2, 2],
                out_backprop=tf.ones((1, 3, 3, 2), dtype), strides=strides, padding="SAME")
        except (tf.errors.InvalidArgumentError, tf.errors.UnimplementedError,
                tf.errors.NotFoundError):
            return False
    return True


def _stacked_layer(copies):
    """The stacked version of `copies` (one layer of each network)."""
    layer = copies[0]
    kind = type(layer)  # exact types only: a subclass may change call()
    plain = (not getattr(layer, "lora_enabled", False)
             and getattr(layer, "quantization_mode", None) is None)
    if kind is keras.layers.Dense and plain:
        return _StackedDense(copies)
    convolutions = (keras.layers.Conv1D, keras.layers.Conv2D,
                    keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose)
    if (kind in convolutions and plain and layer.data_format == "channels_last"
            and getattr(layer, "groups", 1) == 1 and layer.padding in ("valid", "same")
            and grouped_convolution_supported(layer.compute_dtype)):
        return _StackedConvolution(copies)
    if kind is keras.layers.BatchNormalization and layer.axis in (
            -1, len(layer.get_build_config()["input_shape"]) - 1):
        return _StackedBatchNormalization(copies)
    return _PerCopy(copies)


class _StackedLayer(keras.layers.Layer):
    """Base of the stacked layers: the copies' weights, stacked on axis 0."""

    def __init__(self, copies, weight_names, autocast=True):
        super().__init__(dtype=copies[0].dtype_policy, name=copies[0].name)
        self.copies = len(copies)
        for name in weight_names:
            variables = [getattr(copy, name) for copy in copies]
            if variables[0] is None:  # e.g. use_bias=False
                setattr(self, name, None)
                continue
            values = np.stack([keras.ops.convert_to_numpy(v) for v in variables])
            setattr(self, name, self.add_weight(
                shape=values.shape, initializer=lambda shape, dtype=None, v=values: v,
                dtype=variables[0].dtype, trainable=variables[0].trainable,
                autocast=autocast, name=name,
            ))

    def _per_copy(self, weight, rank):
        """A (copies, C) weight as (copies, 1, ..., 1, C), to broadcast over a rank-`rank` batch."""
        return tf.reshape(weight, (self.copies,) + (1,) * (rank - 2) + (weight.shape[-1],))


class _StackedDense(_StackedLayer):
    def __init__(self, copies):
        super().__init__(copies, ("kernel", "bias"))
        self.activation = copies[0].activation

    def call(self, inputs):
        outputs = tf.einsum("g...i,gio->g...o", inputs, self.kernel)  # kernel (copies, in, out)
        if self.bias is not None:
            outputs += self._per_copy(self.bias, len(outputs.shape))
        return self.activation(outputs)


class _StackedConvolution(_StackedLayer):
    """Conv1D/2D and their transposes as ONE convolution with a group per copy.

    The batch (copies, *spatial, C) becomes one sample (1, *spatial, copies*C)
    and the kernels one grouped kernel, so copy g's channels meet only copy
    g's filters.
    """

    def __init__(self, copies):
        super().__init__(copies, ("kernel", "bias"))
        layer = copies[0]
        self.rank = layer.rank
        self.transpose = isinstance(layer, (keras.layers.Conv1DTranspose,
                                            keras.layers.Conv2DTranspose))
        self.strides, self.dilation_rate = layer.strides, layer.dilation_rate
        self.padding = layer.padding.upper()
        self.activation = layer.activation
        # (None, *spatial, filters), from the layer's own shape rule.
        self.output_shape_of_copy = tuple(
            layer.compute_output_shape(layer.get_build_config()["input_shape"]))

    def call(self, inputs):
        rank, copies = self.rank, self.copies
        # (copies, *spatial, C) -> (*spatial, copies, C) -> (1, *spatial, copies * C)
        grouped = tf.transpose(inputs, list(range(1, rank + 1)) + [0, rank + 1])
        grouped = tf.reshape(grouped, (1,) + tuple(inputs.shape[1:-1]) + (-1,))
        # Kernel (copies, *size, a, b) -> (*size, a, copies * b): conv kernels
        # are (*size, C, filters), transposed ones (*size, filters, C).
        kernel = tf.transpose(self.kernel, list(range(1, rank + 2)) + [0, rank + 2])
        kernel = tf.reshape(kernel, tuple(self.kernel.shape[1:-1]) + (-1,))
        if self.transpose:
            output_shape = (1,) + self.output_shape_of_copy[1:-1] + (
                copies * self.output_shape_of_copy[-1],)
            outputs = tf.nn.conv_transpose(grouped, kernel, output_shape, self.strides,
                                           self.padding, dilations=self.dilation_rate)
        else:
            outputs = tf.nn.convolution(grouped, kernel, self.strides, self.padding,
                                        dilations=self.dilation_rate)
        # (1, *spatial', copies * filters) -> (copies, *spatial', filters)
        outputs = tf.reshape(outputs, tuple(outputs.shape[1:-1]) + (copies, -1))
        outputs = tf.transpose(outputs, [rank] + list(range(rank)) + [rank + 1])
        if self.bias is not None:
            outputs += self._per_copy(self.bias, rank + 2)
        return self.activation(outputs)


class _StackedBatchNormalization(_StackedLayer):
    """Each copy normalises its own sample (training mode), in float32."""

    def __init__(self, copies):
        # float32 weights even under mixed precision, as Keras' own layer.
        super().__init__(copies, ("gamma", "beta"), autocast=False)
        self.epsilon = copies[0].epsilon

    def call(self, inputs, mask=None):
        if mask is not None:
            raise ValueError(f"Stacked BatchNormalization '{self.name}' does not take Keras masks.")
        values = tf.cast(inputs, tf.float32)
        rank = len(values.shape)
        # Statistics of each sample over all but its channel axis; a sample
        # of shape (channels,) alone is its own mean, with variance 0.
        mean, variance = tf.nn.moments(values, list(range(1, rank - 1)), keepdims=True)
        outputs = (values - mean) * tf.math.rsqrt(variance + self.epsilon)
        if self.gamma is not None:
            outputs *= self._per_copy(self.gamma, rank)
        if self.beta is not None:
            outputs += self._per_copy(self.beta, rank)
        return tf.cast(outputs, inputs.dtype)


class _PerCopy(keras.layers.Layer):
    """Any layer: copy g called on sample g, one after another, in one graph."""

    def __init__(self, copies):
        super().__init__(dtype=copies[0].dtype_policy, name=copies[0].name)
        self.copy_layers = list(copies)

    def call(self, inputs, training=None, **kwargs):
        outputs = []
        for g, layer in enumerate(self.copy_layers):
            # Sample g of every tensor argument; other arguments as they are.
            args, sample_kwargs = keras.tree.map_structure(
                lambda x, g=g: x[g:g + 1] if tf.is_tensor(x) else x, (inputs, kwargs))
            outputs.append(layer(args, training=training, **sample_kwargs))
        return keras.tree.map_structure(lambda *parts: tf.concat(parts, 0), *outputs)
