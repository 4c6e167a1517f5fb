"""Batch normalization followed by an optional activation.

Every convolution of the ResNet backbone, the FPN and the RetinaNet head is
followed by the same "batch norm + activation" step, configured once from the
`batch_norm_activation` section of the params tree. `NormActivationConfig`
carries those settings (so a part takes one argument instead of five) and
builds one fresh `NormActivation` layer per use site.
"""

import dataclasses

import keras
import tensorflow as tf

from detection.modeling.layers.batch_norm import FusedBatchNorm

_ACTIVATIONS = {
    "relu": tf.nn.relu,
    "swish": tf.nn.swish,
}


def get_activation(name):
    """Returns the activation function called `name`.

    Args:
      name: 'relu' or 'swish'.

    Returns:
      A function mapping a tensor to a tensor of the same shape.

    Raises:
      ValueError: if `name` is not a supported activation.
    """
    if name not in _ACTIVATIONS:
        raise ValueError(
            f"activation: unsupported value {name!r}; expected one of {sorted(_ACTIVATIONS)}"
        )
    return _ACTIVATIONS[name]


class NormActivation(keras.layers.Layer):
    """Batch normalization, then the activation unless `apply_activation=False`.

    The batch norm is `FusedBatchNorm` (the fused kernel), or Keras'
    synchronized `BatchNormalization` with `use_sync_bn`; both keep the same
    variables, so a checkpoint loads into either.

    With `trainable=False` the batch norm is frozen: it always normalizes with
    its moving statistics (Keras runs a non-trainable BatchNormalization in
    inference mode), as the original framework did with
    `training=is_training and trainable`.

    Input and output: `[batch, height, width, channels]` (any rank, channels
    last).
    """

    def __init__(
        self,
        momentum=0.997,
        epsilon=1e-4,
        trainable=True,
        use_sync_bn=False,
        activation="relu",
        apply_activation=True,
        init_zero=False,
        **kwargs,
    ):
        """Initializes the layer.

        Args:
          momentum: moving-average momentum of the batch statistics.
          epsilon: added to the variance to avoid dividing by zero.
          trainable: if False, gamma/beta are frozen and the moving statistics
            are used in training too.
          use_sync_bn: if True, batch statistics are averaged across replicas
            (`keras.layers.BatchNormalization(synchronized=True)`).
          activation: 'relu' or 'swish'.
          apply_activation: if False, only the batch norm is applied.
          init_zero: if True, gamma starts at 0 (the block's output starts as
            the identity shortcut).
          **kwargs: `keras.layers.Layer` arguments (name, dtype).
        """
        super().__init__(trainable=trainable, **kwargs)
        self._activation_name = activation
        self._activation_fn = get_activation(activation)
        self._apply_activation = apply_activation
        self._config = {
            "momentum": momentum,
            "epsilon": epsilon,
            "use_sync_bn": use_sync_bn,
            "activation": activation,
            "apply_activation": apply_activation,
            "init_zero": init_zero,
        }
        if use_sync_bn:
            # Cross-replica moments need Keras' synchronized layer (no fused kernel).
            self._bn = keras.layers.BatchNormalization(
                axis=-1,
                momentum=momentum,
                epsilon=epsilon,
                gamma_initializer="zeros" if init_zero else "ones",
                synchronized=True,
                trainable=trainable,
                dtype=self.dtype_policy,
                name="batch_norm",
            )
        else:
            self._bn = FusedBatchNorm(
                momentum=momentum,
                epsilon=epsilon,
                gamma_initializer="zeros" if init_zero else "ones",
                trainable=trainable,
                dtype=self.dtype_policy,
                name="batch_norm",
            )

    def build(self, input_shape):
        # Building the batch norm here spares Keras a symbolic run of `call` to find it.
        self._bn.build(input_shape)

    def call(self, inputs, training=None):
        outputs = self._bn(inputs, training=training)
        if self._apply_activation:
            outputs = self._activation_fn(outputs)
        return outputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(self._config)
        return config


@dataclasses.dataclass(frozen=True)
class NormActivationConfig:
    """Settings shared by every batch norm + activation of a network.

    Mirrors the `batch_norm_activation` params section:
    `batch_norm_momentum`, `batch_norm_epsilon`, `batch_norm_trainable`,
    `use_sync_bn`, `activation`.
    """

    momentum: float = 0.997
    epsilon: float = 1e-4
    trainable: bool = True
    use_sync_bn: bool = False
    activation: str = "relu"

    def __post_init__(self):
        get_activation(self.activation)
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"batch_norm_momentum: must be in [0, 1), got {self.momentum}")
        if self.epsilon <= 0.0:
            raise ValueError(f"batch_norm_epsilon: must be > 0, got {self.epsilon}")

    def build(self, apply_activation=True, init_zero=False, name=None, dtype=None):
        """Returns a new `NormActivation` layer with these settings.

        Args:
          apply_activation: False for a batch norm alone.
          init_zero: start gamma at 0.
          name: layer name.
          dtype: dtype policy (parents pass their own: Keras does not
            propagate a policy to sublayers).
        """
        return NormActivation(
            momentum=self.momentum,
            epsilon=self.epsilon,
            trainable=self.trainable,
            use_sync_bn=self.use_sync_bn,
            activation=self.activation,
            apply_activation=apply_activation,
            init_zero=init_zero,
            name=name,
            dtype=dtype,
        )

    @property
    def activation_fn(self):
        """The activation function itself (for places without a norm)."""
        return get_activation(self.activation)
