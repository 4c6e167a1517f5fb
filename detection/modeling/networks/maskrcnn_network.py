"""(Cascade) Faster / Mask R-CNN network: backbone -> FPN -> RPN -> proposals -> ROI heads.

    images -> backbone -> FPN {'2': P2, ..., '6': P6} -> RPN head -> proposals
      train: ROI sampling (fg/bg, targets) -> ROI align 7x7 -> box head
             [cascade: refined boxes -> relabel at a higher IoU -> ROI align -> next box head]
             -> mask sampling (the first foreground ROIs of the last stage) -> ROI align
             (mask_target_size / 2) -> mask head, mask targets cut from the groundtruth masks
      inference: ROI align -> box head [-> cascade stages] -> detection generator (decode,
             per-class NMS) -> ROI align of the detections -> mask head -> sigmoid

As the original framework (`mask_rcnn` / `cascade_mask_rcnn` models):

- Proposals and their sampling carry no gradient (the RPN learns from its own losses).
- Cascade stage k (k = 0 for the first) decodes its box deltas with weights
  `(k + 1) * (10, 10, 5, 5)`: the original's (10, 10, 5, 5), (20, 20, 10, 10), (30, 30, 15, 15).
  The next stage's ROIs are the stage's refined boxes, clipped to the image: the box of the
  groundtruth class in training, of the top-scoring class at inference (the one box with
  class-agnostic regression). In training they are relabelled at the stage's IoU threshold
  (foreground >= t, background < t) without subsampling.
- At inference with `class_ensemble` the class logits of all stages are averaged (each stage's
  logits are for its own input boxes, as the original); otherwise the last stage's.
- The detections are the last stage's boxes decoded from its input ROIs.

Only the network: the losses belong to the model fn. Every output is float32.
"""

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from detection.modeling.layers.composite import Composite
from detection.ops import boxes as box_ops
from detection.ops import masks as mask_ops
from detection.ops import proposals as proposal_ops
from detection.ops import roi_align
from detection.ops import roi_sampling

FIRST_STAGE_BOX_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
BOX_ROI_SIZE = 7


def stage_box_weights(stage):
    """Box-coder weights of cascade stage `stage` (0 is the first, (10, 10, 5, 5))."""
    return tuple((stage + 1) * w for w in FIRST_STAGE_BOX_WEIGHTS)


@dataclasses.dataclass(frozen=True)
class ProposalSettings:
    """One set of `roi_proposal` values (training or test)."""

    pre_nms_top_k: int = 2000
    post_nms_top_k: int = 1000
    nms_iou_threshold: float = 0.7
    score_threshold: float = 0.0
    min_size_threshold: float = 0.0


@dataclasses.dataclass(frozen=True)
class RoiSamplingSettings:
    """`roi_sampling` and `mask_sampling` values."""

    num_samples_per_image: int = 512
    fg_fraction: float = 0.25
    fg_iou_thresh: float = 0.5
    bg_iou_thresh_hi: float = 0.5
    bg_iou_thresh_lo: float = 0.0
    mix_gt_boxes: bool = True
    cascade_iou_thresholds: tuple = ()
    num_mask_samples_per_image: int = 128


def _float32(tensors):
    return tf.nest.map_structure(lambda t: tf.cast(t, tf.float32), tensors)


class MaskRCNNNetwork(Composite, keras.Model):
    """Composes already-built parts into one Keras model.

    Call: `inputs` dict with `images [b, H, W, 3]`, `image_info [b, 4, 2]` and, in training,
    `gt_boxes [b, M, 4]` (network-input pixels, -1 padded), `gt_classes [b, M]` (-1 padded),
    with masks `gt_masks [b, M, S, S]` (box-relative crops).

    Training returns `rpn_score_outputs {level: [b, h, w, A]}`, `rpn_box_outputs {level:
    [b, h, w, A * 4]}`, `stages`: one dict per box head with `rois [b, N, 4]`, `class_outputs
    [b, N, C]`, `box_outputs [b, N, 4 C]` (or `[b, N, 4]`), `class_targets [b, N]`,
    `box_targets [b, N, 4]`, `valid [b, N]` (N = num_samples_per_image), and with masks
    `mask_outputs`, `mask_targets [b, K, m, m]`, `mask_class_targets`, `mask_valid [b, K]`.

    Inference returns the RPN outputs and `num_detections [b]`, `detection_boxes [b, D, 4]`,
    `detection_classes [b, D]`, `detection_scores [b, D]` and with masks `detection_masks
    [b, D, m, m]` (foreground probabilities over each detection box).
    """

    def __init__(
        self,
        backbone,
        fpn,
        rpn_head,
        box_heads,
        mask_head,
        detection_generator,
        anchor_boxes,
        min_level,
        max_level,
        train_proposals=ProposalSettings(),
        test_proposals=ProposalSettings(1000, 1000),
        roi_sampling_settings=RoiSamplingSettings(),
        mask_target_size=28,
        class_ensemble=False,
        **kwargs,
    ):
        """Initializes the network.

        Args:
          backbone: layer mapping images to `{'2': C2, ...}`.
          fpn: layer mapping backbone features to `{str(min_level): P, ...}`, or None.
          rpn_head: layer mapping features to `(score_outputs, box_outputs)` per level.
          box_heads: one Fast R-CNN head per stage (`1 + len(cascade_iou_thresholds)`).
          mask_head: the mask head, or None (Faster R-CNN).
          detection_generator: `FastRCNNDetectionGenerator` (decode, per-class NMS).
          anchor_boxes: `{level: [h_l, w_l, A * 4]}` anchors of the network input size.
          min_level, max_level: the pyramid levels of the RPN and ROI align.
          train_proposals, test_proposals: `ProposalSettings`.
          roi_sampling_settings: `RoiSamplingSettings`.
          mask_target_size: side m of the predicted masks (even; ROI align gives m / 2).
          class_ensemble: average the stages' class logits at inference.
          **kwargs: `keras.Model` arguments.

        Raises:
          ValueError: inconsistent parts or sizes.
        """
        kwargs.setdefault("name", "mask_rcnn")
        super().__init__(**kwargs)
        thresholds = tuple(roi_sampling_settings.cascade_iou_thresholds)
        if len(box_heads) != 1 + len(thresholds):
            raise ValueError(
                f"{len(box_heads)} box heads for {1 + len(thresholds)} stages "
                f"(roi_sampling.cascade_iou_thresholds={list(thresholds)})"
            )
        if mask_head is not None and (mask_target_size < 2 or mask_target_size % 2):
            raise ValueError(
                f"architecture.mask_target_size must be even (the mask head upsamples 2x), "
                f"got {mask_target_size}"
            )
        self.backbone = backbone
        self.fpn = fpn
        self.rpn_head = rpn_head
        self.box_heads = list(box_heads)
        self.mask_head = mask_head
        self._generator = detection_generator
        self._anchor_boxes = {str(k): np.asarray(v, np.float32) for k, v in anchor_boxes.items()}
        self._min_level = min_level
        self._max_level = max_level
        self._train_proposals = train_proposals
        self._test_proposals = test_proposals
        self._sampling = roi_sampling_settings
        self._cascade_iou_thresholds = thresholds
        self._mask_target_size = mask_target_size
        self._class_ensemble = class_ensemble

    @property
    def include_mask(self):
        return self.mask_head is not None

    def _roi_features(self, features, rois, output_size):
        return roi_align.multilevel_roi_align(
            features,
            rois,
            output_size=output_size,
            min_level=self._min_level,
            max_level=self._max_level,
        )

    def _propose(self, rpn_scores, rpn_boxes, image_shape, training):
        settings = self._train_proposals if training else self._test_proposals
        anchors = {k: tf.constant(v) for k, v in self._anchor_boxes.items()}
        rois, _ = proposal_ops.multilevel_proposals(
            rpn_scores,
            rpn_boxes,
            anchors,
            image_shape,
            pre_nms_top_k=settings.pre_nms_top_k,
            post_nms_top_k=settings.post_nms_top_k,
            nms_iou_threshold=settings.nms_iou_threshold,
            score_threshold=settings.score_threshold,
            min_size_threshold=settings.min_size_threshold,
        )
        return rois

    def _sample(self, rois, inputs, stage):
        """Training targets of a stage's ROIs (sampled in stage 0, all relabelled later)."""
        s = self._sampling
        rois = tf.stop_gradient(rois)
        if stage == 0:
            return roi_sampling.sample_rois(
                rois,
                inputs["gt_boxes"],
                inputs["gt_classes"],
                num_samples_per_image=s.num_samples_per_image,
                fg_fraction=s.fg_fraction,
                fg_iou_thresh=s.fg_iou_thresh,
                bg_iou_thresh_hi=s.bg_iou_thresh_hi,
                bg_iou_thresh_lo=s.bg_iou_thresh_lo,
                mix_gt_boxes=s.mix_gt_boxes,
                box_weights=stage_box_weights(0),
            )
        threshold = self._cascade_iou_thresholds[stage - 1]
        # Every refined box is kept in order and only relabelled (no subsampling, no
        # groundtruth mixing), foreground at >= the stage's IoU threshold, as the original.
        return roi_sampling.sample_rois(
            rois,
            inputs["gt_boxes"],
            inputs["gt_classes"],
            num_samples_per_image=rois.shape[1],
            fg_fraction=1.0,
            fg_iou_thresh=threshold,
            bg_iou_thresh_hi=threshold,
            bg_iou_thresh_lo=0.0,
            mix_gt_boxes=False,
            box_weights=stage_box_weights(stage),
            skip_subsampling=True,
        )

    def _refine(self, box_outputs, rois, classes, image_shape, stage):
        """The next stage's ROIs: this stage's boxes of `classes`, decoded and clipped."""
        if box_outputs.shape[-1] == 4:
            deltas = box_outputs
        else:
            num_classes = box_outputs.shape[-1] // 4
            per_class = tf.reshape(box_outputs, [-1, box_outputs.shape[1], num_classes, 4])
            one_hot = tf.one_hot(tf.cast(classes, tf.int32), num_classes, dtype=tf.float32)
            deltas = tf.einsum("bnkj,bnk->bnj", per_class, one_hot)
        boxes = box_ops.decode_boxes(deltas, rois, weights=stage_box_weights(stage))
        return box_ops.clip_boxes(boxes, image_shape[:, tf.newaxis, :])

    def call(self, inputs, training=None):
        training = bool(training)
        images = inputs["images"]
        image_shape = tf.cast(inputs["image_info"][:, 1, :], tf.float32)
        features = self.backbone(images, training=training)
        if self.fpn is not None:
            features = self.fpn(features, training=training)
        rpn_scores, rpn_boxes = _float32(self.rpn_head(features, training=training))
        outputs = {"rpn_score_outputs": rpn_scores, "rpn_box_outputs": rpn_boxes}
        # ROI align reads float32 features: its bilinear weights and level routing need the
        # precision, and the heads cast back to their compute dtype.
        features = _float32(
            {k: v for k, v in features.items() if self._min_level <= int(k) <= self._max_level}
        )
        rois = self._propose(rpn_scores, rpn_boxes, image_shape, training)

        stages = []
        all_class_outputs = []
        for stage, head in enumerate(self.box_heads):
            sampled = None
            if training:
                sampled = self._sample(rois, inputs, stage)
                rois = sampled["rois"]
            roi_features = self._roi_features(features, rois, BOX_ROI_SIZE)
            class_outputs, box_outputs = _float32(head(roi_features, training=training))
            all_class_outputs.append(class_outputs)
            stages.append(
                dict(
                    rois=rois, class_outputs=class_outputs, box_outputs=box_outputs, sampled=sampled
                )
            )
            if stage + 1 < len(self.box_heads):
                classes = (
                    sampled["class_targets"]
                    if training
                    else tf.argmax(class_outputs, axis=-1, output_type=tf.int32)
                )
                rois = self._refine(box_outputs, rois, classes, image_shape, stage)
                if training:
                    # Empty sample slots stay empty boxes, which are never candidates.
                    rois = tf.where(sampled["valid"][..., tf.newaxis], rois, 0.0)

        if training:
            outputs["stages"] = [
                dict(
                    rois=s["rois"],
                    class_outputs=s["class_outputs"],
                    box_outputs=s["box_outputs"],
                    class_targets=s["sampled"]["class_targets"],
                    box_targets=s["sampled"]["box_targets"],
                    valid=s["sampled"]["valid"],
                )
                for s in stages
            ]
            if self.include_mask:
                outputs.update(self._mask_training_outputs(features, stages[-1]["sampled"], inputs))
            return outputs

        last = stages[-1]
        class_outputs = last["class_outputs"]
        if self._class_ensemble and len(all_class_outputs) > 1:
            class_outputs = tf.add_n(all_class_outputs) / len(all_class_outputs)
        detections = self._generator(
            last["box_outputs"],
            class_outputs,
            last["rois"],
            image_shape,
            box_weights=stage_box_weights(len(stages) - 1),
        )
        outputs.update(detections)
        if self.include_mask:
            mask_features = self._roi_features(
                features, detections["detection_boxes"], self._mask_target_size // 2
            )
            logits = self.mask_head(mask_features, detections["detection_classes"], training=False)
            outputs["detection_masks"] = tf.sigmoid(tf.cast(logits, tf.float32))
        return outputs

    def _mask_training_outputs(self, features, sampled, inputs):
        masks = roi_sampling.sample_foreground_for_masks(
            sampled, self._sampling.num_mask_samples_per_image
        )
        targets = mask_ops.roi_mask_targets(
            inputs["gt_masks"],
            inputs["gt_boxes"],
            masks["rois"],
            masks["matched_gt_indices"],
            self._mask_target_size,
        )
        roi_features = self._roi_features(
            features, tf.stop_gradient(masks["rois"]), self._mask_target_size // 2
        )
        logits = self.mask_head(roi_features, masks["class_targets"], training=True)
        return {
            "mask_outputs": tf.cast(logits, tf.float32),
            "mask_targets": tf.stop_gradient(targets),
            "mask_class_targets": masks["class_targets"],
            "mask_valid": masks["valid"],
        }
