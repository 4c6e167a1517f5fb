"""Batch normalization on the fused kernel.

Keras 3's `BatchNormalization` computes the batch moments and the
normalization as separate element-wise ops (and, under a bfloat16 policy,
upcasts the whole activation to float32 first); its gradient is the autodiff
of those ops. `FusedBatchNorm` does the same arithmetic with TensorFlow's
fused kernel (`FusedBatchNormV3` and its gradient, lowered to XLA's
BatchNormTraining on TPU), which reads and writes each activation once: on a
CPU a forward + backward batch norm takes about a third of the time.

Same variables, names and update rule as `keras.layers.BatchNormalization`
(channels last; gamma, beta, moving_mean, moving_variance; the moving
variance averages the *biased* batch variance), so checkpoints are
interchangeable; `tests/modeling/test_batch_norm.py` holds it to the Keras
layer.
"""

import keras
import tensorflow as tf


def _count_per_channel(inputs):
    """Values per channel of `inputs` [N, H, W, C]: a Python float when static."""
    if inputs.shape[:-1].is_fully_defined():
        return float(inputs.shape[:-1].num_elements())
    return tf.cast(tf.size(inputs) // tf.shape(inputs)[-1], tf.float32)


class FusedBatchNorm(keras.layers.Layer):
    """Channels-last batch normalization on the fused kernel.

    In training (and when trainable) it normalizes with the batch moments and
    moves the moving statistics by `momentum`; otherwise it normalizes with
    the moving statistics. Computation follows the input dtype (bfloat16 or
    float16 inputs stay in that dtype; statistics and parameters are float32).

    Input and output: `[batch, ..., channels]`, rank 2 to 5.
    """

    def __init__(
        self,
        momentum=0.99,
        epsilon=1e-3,
        gamma_initializer="ones",
        trainable=True,
        **kwargs,
    ):
        """Initializes the layer.

        Args:
          momentum: moving-average momentum of the batch statistics.
          epsilon: added to the variance to avoid dividing by zero.
          gamma_initializer: initializer of the scale.
          trainable: if False, normalizes with the moving statistics in
            training too (the frozen batch norm).
          **kwargs: `keras.layers.Layer` arguments (name, dtype).
        """
        super().__init__(trainable=trainable, **kwargs)
        self.momentum = momentum
        self.epsilon = epsilon
        self.gamma_initializer = keras.initializers.get(gamma_initializer)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"{self.name}: the channel dimension must be known, got {input_shape}")
        shape = (channels,)

        def weight(name, initializer, trainable):
            return self.add_weight(
                shape=shape, name=name, initializer=initializer, trainable=trainable, autocast=False
            )

        self.gamma = weight("gamma", self.gamma_initializer, True)
        self.beta = weight("beta", "zeros", True)
        self.moving_mean = weight("moving_mean", "zeros", False)
        self.moving_variance = weight("moving_variance", "ones", False)

    def call(self, inputs, training=None):
        shape = inputs.shape
        # The kernel takes [N, H, W, C]; the moments are over every axis but
        # channels, so any other rank folds into that form without changing them.
        folded = inputs if shape.rank == 4 else tf.reshape(inputs, [1, -1, 1, shape[-1]])
        if folded.dtype not in (tf.float32, tf.bfloat16, tf.float16):
            folded = tf.cast(folded, tf.float32)
        if training and self.trainable:
            outputs, mean, variance = tf.compat.v1.nn.fused_batch_norm(
                folded, self.gamma, self.beta, epsilon=self.epsilon, is_training=True
            )
            # The kernel returns the unbiased (n / (n - 1)) variance for the
            # moving average; Keras averages the biased one, as do we.
            count = _count_per_channel(folded)
            variance = variance * ((count - 1.0) / count)
            self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
            self.moving_variance.assign(
                self.moving_variance * self.momentum + variance * (1.0 - self.momentum)
            )
        else:
            outputs, _, _ = tf.compat.v1.nn.fused_batch_norm(
                folded,
                self.gamma,
                self.beta,
                mean=self.moving_mean,
                variance=self.moving_variance,
                epsilon=self.epsilon,
                is_training=False,
            )
        if shape.rank != 4:
            # The input's static shape where known (a contract of the XLA/TPU steps).
            outputs = tf.reshape(
                outputs, shape.as_list() if shape.is_fully_defined() else tf.shape(inputs)
            )
        return tf.cast(outputs, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "gamma_initializer": keras.initializers.serialize(self.gamma_initializer),
            }
        )
        return config
