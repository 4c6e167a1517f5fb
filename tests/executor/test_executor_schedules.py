"""Learning-rate schedules, optimizer factory and variable selection vs hand-computed values."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from detection.executor import learning_rates, optimizers, variable_selection
from detection.hyperparameters.params_dict import ParamsDict


def _lr_params(**overrides):
    values = {
        "type": "step",
        "warmup_learning_rate": 0.0067,
        "warmup_steps": 500,
        "init_learning_rate": 0.08,
        "learning_rate_levels": [0.008, 0.0008],
        "learning_rate_steps": [15000, 20000],
    }
    values.update(overrides)
    return ParamsDict(values)


def _at(schedule, step):
    return float(schedule(step))


def test_step_schedule_matches_hand_values():
    schedule = learning_rates.learning_rate_schedule(_lr_params(), total_steps=22500)
    expected = {
        0: 0.0067,
        250: 0.0067 + 250 / 500 * (0.08 - 0.0067),
        499: 0.0067 + 499 / 500 * (0.08 - 0.0067),
        500: 0.08,
        14999: 0.08,
        15000: 0.008,
        19999: 0.008,
        20000: 0.0008,
        30000: 0.0008,
    }
    for step, value in expected.items():
        assert _at(schedule, step) == pytest.approx(value, rel=1e-6), step


def test_step_schedule_without_warmup():
    schedule = learning_rates.learning_rate_schedule(
        _lr_params(warmup_steps=0, learning_rate_levels=[0.01], learning_rate_steps=[10]), 100
    )
    assert [_at(schedule, s) for s in (0, 9, 10)] == pytest.approx([0.08, 0.08, 0.01])


def test_cosine_schedule_matches_hand_values():
    schedule = learning_rates.learning_rate_schedule(
        _lr_params(
            type="cosine", warmup_learning_rate=0.0, warmup_steps=100, init_learning_rate=0.4
        ),
        total_steps=1100,
    )

    def cosine(step):
        return 0.4 * (math.cos(math.pi * (step - 100) / 1000) + 1) / 2

    expected = {
        0: 0.0,
        50: 0.2,
        100: 0.4,
        350: cosine(350),
        600: 0.2,
        1099: cosine(1099),
        1100: 0.0,
        1500: 0.0,
    }
    for step, value in expected.items():
        assert _at(schedule, step) == pytest.approx(value, rel=1e-5, abs=1e-7), step


def test_schedule_errors_name_the_key():
    with pytest.raises(ValueError, match="learning_rate_levels"):
        learning_rates.learning_rate_schedule(_lr_params(learning_rate_steps=[10]), 100)
    with pytest.raises(ValueError, match="must increase"):
        learning_rates.learning_rate_schedule(_lr_params(learning_rate_steps=[20, 10]), 100)
    with pytest.raises(ValueError, match="train.learning_rate.type='linear'"):
        learning_rates.learning_rate_schedule(_lr_params(type="linear"), 100)
    with pytest.raises(ValueError, match="warmup_steps"):
        learning_rates.learning_rate_schedule(
            _lr_params(type="cosine", warmup_steps=100), total_steps=100
        )


def test_schedule_roundtrips_through_keras_config():
    schedule = learning_rates.learning_rate_schedule(_lr_params(), 22500)
    clone = type(schedule).from_config(schedule.get_config())
    assert _at(clone, 15000) == pytest.approx(0.008)


@pytest.mark.parametrize(
    "kind,cls",
    [
        ("momentum", keras.optimizers.SGD),
        ("sgd", keras.optimizers.SGD),
        ("adam", keras.optimizers.Adam),
        ("adagrad", keras.optimizers.Adagrad),
        ("rmsprop", keras.optimizers.RMSprop),
    ],
)
def test_optimizer_types(kind, cls):
    optimizer = optimizers.build_optimizer(ParamsDict({"type": kind, "momentum": 0.9}), 0.1)
    assert isinstance(optimizer, cls)
    if kind == "momentum":
        assert optimizer.momentum == pytest.approx(0.9) and not optimizer.nesterov
    if kind == "sgd":
        assert optimizer.momentum == 0.0
    if kind == "rmsprop":
        assert optimizer.momentum == pytest.approx(0.9) and optimizer.rho == pytest.approx(0.9)


def test_momentum_nesterov_and_bad_type():
    optimizer = optimizers.build_optimizer(
        ParamsDict({"type": "momentum", "momentum": 0.5, "nesterov": True}), 0.1
    )
    assert optimizer.nesterov and optimizer.momentum == pytest.approx(0.5)
    with pytest.raises(ValueError, match="train.optimizer.type='lamb'"):
        optimizers.build_optimizer(ParamsDict({"type": "lamb"}), 0.1)


def test_momentum_update_matches_hand_computation():
    # One replica: the optimizer must behave exactly like SGD with momentum.
    variable = keras.Variable(np.array([1.0, -2.0], np.float32), name="w")
    optimizer = optimizers.build_optimizer(ParamsDict({"type": "momentum", "momentum": 0.9}), 0.1)
    grads = [np.array([0.5, 1.0], np.float32), np.array([-1.0, 2.0], np.float32)]
    velocity, value = np.zeros(2), np.array([1.0, -2.0])
    for grad in grads:
        optimizer.apply([grad], [variable])
        velocity = 0.9 * velocity - 0.1 * grad
        value = value + velocity
    np.testing.assert_allclose(variable.numpy(), value, rtol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_fused_momentum_equals_keras_sgd_with_a_changing_rate(nesterov):
    # The fused kernel must reproduce Keras' own momentum rule, in a tf.function too.
    rng = np.random.default_rng(0)
    start = rng.normal(size=(3, 4)).astype(np.float32)
    grads = [rng.normal(size=(3, 4)).astype(np.float32) for _ in range(4)]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay([1, 2], [0.1, 0.05, 0.01])
    results = []
    for cls in (optimizers.SGD, keras.optimizers.SGD):
        variable = keras.Variable(start, name="w")
        optimizer = cls(learning_rate=schedule, momentum=0.9, nesterov=nesterov)
        optimizer.build([variable])
        step = tf.function(lambda g: optimizer.apply([g], [variable]))
        for grad in grads:
            step(tf.constant(grad))
        results.append((variable.numpy(), optimizer.momentums[0].numpy()))
    (ours, our_velocity), (reference, reference_velocity) = results
    np.testing.assert_allclose(ours, reference, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(our_velocity, reference_velocity, rtol=1e-6, atol=1e-7)
    assert not np.allclose(ours, start)


def test_l2_gradients_equal_the_gradient_of_the_penalty():
    rng = np.random.default_rng(1)
    kernel = keras.Variable(rng.normal(size=(3, 2)).astype(np.float32), name="kernel")
    bias = keras.Variable(rng.normal(size=(2,)).astype(np.float32), name="bias")
    unused = keras.Variable(rng.normal(size=(2,)).astype(np.float32), name="unused_kernel")
    x = tf.constant(rng.normal(size=(5, 3)).astype(np.float32))
    variables, penalized = [kernel, bias, unused], [kernel, unused]
    with tf.GradientTape(persistent=True) as tape:
        loss = tf.reduce_sum(tf.sin(x @ kernel + bias))
        total = loss + variable_selection.l2_loss(penalized, 0.3)
    expected = tape.gradient(total, variables)
    grads = variable_selection.add_l2_gradients(
        tape.gradient(loss, variables), variables, penalized, 0.3
    )
    for got, want in zip(grads, expected):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    # Only the penalty reaches `unused`; a variable outside it and the loss keeps None.
    assert variable_selection.add_l2_gradients([None], [bias], penalized, 0.3) == [None]
    assert variable_selection.add_l2_gradients([None], [bias], [bias], 0.0) == [None]


def _small_model():
    inputs = keras.Input((6, 6, 2))
    x = keras.layers.Conv2D(3, 3, name="backbone_conv")(inputs)
    x = keras.layers.BatchNormalization(name="backbone_bn")(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(2, name="head_dense")(x)
    return keras.Model(inputs, outputs, name="selection_net")


def test_tf1_names_and_default_regularization_regex():
    model = _small_model()
    names = [variable_selection.tf1_name(v) for v in model.trainable_variables]
    assert names == [
        "backbone_conv/kernel:0",
        "backbone_conv/bias:0",
        "backbone_bn/gamma:0",
        "backbone_bn/beta:0",
        "head_dense/kernel:0",
        "head_dense/bias:0",
    ]
    selected = variable_selection.regularized(model.trainable_variables, r".*(kernel|weight):0$")
    assert [v.path for v in selected] == ["backbone_conv/kernel", "head_dense/kernel"]
    assert len(variable_selection.regularized(model.trainable_variables, None)) == 6
    with pytest.raises(ValueError, match="regularization_variable_regex"):
        variable_selection.regularized(model.trainable_variables, "(")


def test_frozen_prefix_is_anchored_at_the_start():
    model = _small_model()
    trained, frozen = variable_selection.split_frozen(model.trainable_variables, r"backbone_")
    assert [v.path for v in frozen] == [
        "backbone_conv/kernel",
        "backbone_conv/bias",
        "backbone_bn/gamma",
        "backbone_bn/beta",
    ]
    assert [v.path for v in trained] == ["head_dense/kernel", "head_dense/bias"]
    # re.match semantics: a pattern that only occurs mid-name freezes nothing.
    trained, frozen = variable_selection.split_frozen(model.trainable_variables, "conv")
    assert not frozen and len(trained) == 6


def test_l2_loss_is_half_sum_of_squares():
    model = _small_model()
    kernels = variable_selection.regularized(model.trainable_variables, r".*kernel:0$")
    expected = 1e-3 * sum(np.sum(np.square(v.numpy())) for v in kernels) / 2
    assert float(variable_selection.l2_loss(kernels, 1e-3)) == pytest.approx(expected, rel=1e-5)
    assert float(variable_selection.l2_loss(kernels, 0.0)) == 0.0


def test_linear_warmup_wraps_any_decay():
    class Halving(keras.optimizers.schedules.LearningRateSchedule):
        def __call__(self, step):
            return 0.8 * 0.5 ** (keras.ops.cast(step, "float32") // 10)

    schedule = learning_rates.LinearWarmup(Halving(), warmup_steps=20, warmup_learning_rate=0.0)
    # The warmup climbs towards the decay's value where it ends: 0.8 / 4 at step 20.
    expected = {0: 0.0, 10: 0.1, 19: 0.19, 20: 0.2, 30: 0.1, 45: 0.8 / 16}
    for step, value in expected.items():
        assert _at(schedule, step) == pytest.approx(value, rel=1e-6), step
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(
            learning_rates.learning_rate_schedule(_lr_params(), 22500)
        )
    )
    assert [_at(restored, s) for s in (0, 250, 15000)] == pytest.approx([0.0067, 0.04335, 0.008])
