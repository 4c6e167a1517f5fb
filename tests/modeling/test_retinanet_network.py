"""RetinaNetNetwork assembly, an XLA-compiled training step, size and FLOPs."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from detection.modeling import flops
from detection.modeling.backbones import resnet
from detection.modeling.decoders import fpn as fpn_lib
from detection.modeling.heads import retinanet_head
from detection.modeling.losses import retinanet_losses
from detection.modeling.networks import retinanet_network

NUM_CLASSES = 3
ANCHORS = 3


def tiny_network(dtype=None):
    return retinanet_network.RetinaNetNetwork(
        backbone=resnet.ResNet(10, dtype=dtype),
        fpn=fpn_lib.Fpn(3, 7, fpn_feat_dims=16, dtype=dtype),
        head=retinanet_head.RetinaNetHead(
            3, 7, NUM_CLASSES, ANCHORS, num_convs=1, num_filters=16, dtype=dtype
        ),
        dtype=dtype,
    )


def synthetic_labels(batch, size, seed=0):
    rng = np.random.default_rng(seed)
    cls_targets, box_targets = {}, {}
    for level in range(3, 8):
        side = -(-size // 2**level)
        labels = rng.choice([-2, -1, -1, -1, -1, 1, 2], size=(batch, side, side, ANCHORS))
        boxes = rng.normal(scale=0.1, size=(batch, side, side, ANCHORS, 4))
        boxes[labels <= 0] = 0.0
        cls_targets[str(level)] = tf.constant(labels, tf.int32)
        box_targets[str(level)] = tf.constant(
            boxes.reshape(batch, side, side, ANCHORS * 4), tf.float32
        )
    num_positives = tf.constant(
        [
            sum(int((cls_targets[k][i] > 0).numpy().sum()) for k in cls_targets)
            for i in range(batch)
        ],
        tf.float32,
    )
    return {"cls_targets": cls_targets, "box_targets": box_targets, "num_positives": num_positives}


def test_forward_shapes_and_dtype():
    network = tiny_network()
    outputs = network(tf.random.normal([2, 64, 64, 3]), training=False)
    assert sorted(outputs) == ["box_outputs", "class_outputs"]
    for level in range(3, 8):
        side = -(-64 // 2**level)
        cls = outputs["class_outputs"][str(level)]
        box = outputs["box_outputs"][str(level)]
        assert cls.shape == (2, side, side, ANCHORS * NUM_CLASSES)
        assert box.shape == (2, side, side, ANCHORS * 4)
        assert cls.dtype == tf.float32 and box.dtype == tf.float32


def test_mixed_precision_policy_reaches_every_sublayer():
    network = tiny_network("mixed_bfloat16")
    images = tf.random.normal([2, 64, 64, 3])
    outputs = network(images, training=True)
    features = network.fpn(network.backbone(images), training=False)
    assert all(f.dtype == tf.bfloat16 for f in features.values())
    assert all(v.dtype == tf.float32 for v in network.variables)
    assert outputs["class_outputs"]["3"].dtype == tf.float32
    assert np.all(np.isfinite(outputs["box_outputs"]["3"]))


def test_training_step_compiles_with_xla_and_lowers_the_loss():
    keras.utils.set_random_seed(0)
    network = tiny_network()
    images = tf.random.normal([2, 64, 64, 3], seed=1)
    labels = synthetic_labels(2, 64)
    network(images)  # Build the variables outside the compiled step.
    loss_fn = retinanet_losses.RetinaNetLoss(
        NUM_CLASSES, huber_loss_delta=0.1, box_loss_weight=50.0, normalizer_momentum=0.9
    )
    optimizer = keras.optimizers.SGD(learning_rate=0.01, momentum=0.9)
    optimizer.build(network.trainable_variables)

    @tf.function(jit_compile=True)
    def train_step(images, labels):
        with tf.GradientTape() as tape:
            outputs = network(images, training=True)
            loss = loss_fn(outputs, labels, training=True)["total_loss"]
        grads = tape.gradient(loss, network.trainable_variables)
        optimizer.apply_gradients(zip(grads, network.trainable_variables))
        return loss

    before = [v.numpy().copy() for v in network.trainable_variables]
    losses = [float(train_step(images, labels)) for _ in range(3)]
    assert all(np.isfinite(losses))
    assert losses[-1] < losses[0]
    # Every kernel moves. (Some batch-norm betas legitimately get no
    # gradient: on the 1x1 P6/P7 maps a per-channel shift passes the next
    # 3x3 conv as a constant, which the head's batch norm then removes.)
    for b, v in zip(before, network.trainable_variables):
        if "kernel" in v.path:
            assert not np.array_equal(b, v.numpy()), v.path
    assert float(loss_fn.normalizer.moving_normalizer.numpy()) > 1.0


@pytest.fixture(scope="module")
def full_size_network():
    network = retinanet_network.RetinaNetNetwork(
        backbone=resnet.ResNet(50),
        fpn=fpn_lib.Fpn(3, 7, fpn_feat_dims=256),
        head=retinanet_head.RetinaNetHead(3, 7, num_classes=91, anchors_per_location=9),
    )
    network(tf.zeros([1, 64, 64, 3]))  # Parameters do not depend on size.
    return network


def _count(weights):
    return sum(int(np.prod(w.shape)) for w in weights)


def test_full_size_parameter_count(full_size_network):
    backbone = 25_557_032 - 2_049_000  # torchvision ResNet-50 without fc.
    fpn = (
        (512 + 1024 + 2048) * 256
        + 3 * 256  # 1x1 laterals.
        + 5 * (9 * 256 * 256 + 256)  # P3-P5 outputs, P6, P7.
        + 5 * 2 * 256
    )  # Batch norm gamma/beta.
    hidden = 4 * (9 * 256 * 256 + 256)
    head = (
        2 * hidden
        + 9 * 256 * 9 * 91
        + 9 * 91  # Class predictor.
        + 9 * 256 * 9 * 4
        + 9 * 4  # Box predictor.
        + 2 * 4 * 5 * 2 * 256
    )  # Per-level batch norms.
    trainable = _count(full_size_network.trainable_weights)
    assert trainable == backbone + fpn + head
    # TF Model Garden's RetinaNet R50-FPN 640x640 table lists 34.0M params.
    assert abs(trainable / 1e6 - 34.0) < 0.15


def test_full_size_flops_at_640(full_size_network):
    report = flops.forward_flops(lambda x: full_size_network(x, training=False), (1, 640, 640, 3))
    # TF Model Garden lists 97.0 B (multiply-adds) for R50-FPN at 640x640.
    assert abs(report.gmacs - 97.0) / 97.0 < 0.02
    assert report.profiler_flops is not None
    ratio = report.profiler_flops / report.macs
    assert 2.1 > ratio > 1.95


def test_count_macs_on_hand_computed_layers():
    conv = keras.layers.Conv2D(5, 3, strides=2, padding="same")
    depthwise = keras.layers.DepthwiseConv2D(3, padding="same")
    dense = keras.layers.Dense(7)

    def fn(x):
        y = conv(x)  # [1, 8, 8, 5]
        z = depthwise(y)  # [1, 8, 8, 5]
        return dense(tf.reshape(z, [1, -1]))  # [1, 320] x [320, 7]

    fn(tf.zeros([1, 16, 16, 4]))
    expected = 8 * 8 * 5 * (3 * 3 * 4) + 8 * 8 * 5 * 9 + 320 * 7
    assert flops.count_macs(fn, (1, 16, 16, 4)) == expected
    with pytest.raises(ValueError, match="non-static"):
        flops.count_macs(fn, (None, 16, 16, 4))
    # A nested tf.function is counted once per call.
    inner = tf.function(conv)
    assert flops.count_macs(lambda x: inner(inner(x)[..., :4]), (1, 16, 16, 4)) == (
        8 * 8 * 5 * 36 + 4 * 4 * 5 * 36
    )


def test_count_macs_of_a_transposed_convolution():
    # The mask head's 2x2 stride-2 upsampling: each of the 4 x 4 x 3 input values spreads
    # over 2 x 2 x 6 outputs.
    deconv = keras.layers.Conv2DTranspose(6, 2, strides=2)
    deconv(tf.zeros([1, 4, 4, 3]))
    assert flops.count_macs(deconv, (1, 4, 4, 3)) == 4 * 4 * 3 * (2 * 2 * 6)
