"""Settings shared by every layer family, read from the params tree."""

from detection.hyperparameters import ParamsError
from detection.modeling.layers.norm_activation import NormActivationConfig


def norm_activation_from_params(params):
    """The `batch_norm_activation` section as a NormActivationConfig."""
    p = params.batch_norm_activation
    try:
        return NormActivationConfig(
            momentum=p.batch_norm_momentum,
            epsilon=p.batch_norm_epsilon,
            trainable=p.batch_norm_trainable,
            use_sync_bn=p.use_sync_bn,
            activation=p.activation,
        )
    except ValueError as error:
        raise ParamsError(f"batch_norm_activation: {error}") from None
