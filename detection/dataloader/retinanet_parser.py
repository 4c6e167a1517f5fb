"""RetinaNet parser: the shared detection input path plus anchor targets per level.

Training labels: `cls_targets {level: [h_l, w_l, A] int32}` (class id, -1 negative,
-2 ignored), `box_targets {level: [h_l, w_l, A * 4] float32}`, `num_positives [] float32`.
Evaluation labels: the same targets (for eval losses), plus `groundtruths`.
"""

from detection.dataloader.anchor_labeler import AnchorLabeler
from detection.dataloader.base_parser import DetectionParser
from detection.ops.anchors import Anchors


class RetinaNetParser(DetectionParser):
    """Callable `serialized tf.Example -> (features, labels)` for one mode."""

    def __init__(self, anchors: Anchors, match_threshold=0.5, unmatched_threshold=0.5, **kwargs):
        """Builds the parser.

        Args:
          anchors: the Anchors for `output_size`.
          match_threshold, unmatched_threshold: IoU bounds of positive / negative anchors.
          **kwargs: `DetectionParser` arguments (output_size, num_classes, is_training,
            augmentation, max_num_instances, autoaugment...).
        """
        super().__init__(**kwargs)
        self._labeler = AnchorLabeler(anchors, match_threshold, unmatched_threshold)

    def _targets(self, instances):
        cls_targets, box_targets, num_positives = self._labeler.label_anchors(
            instances.boxes, instances.classes
        )
        return {
            "cls_targets": cls_targets,
            "box_targets": box_targets,
            "num_positives": num_positives,
        }

    def _train_labels(self, instances):
        return self._targets(instances)

    def _eval_labels(self, instances):
        return self._targets(instances)
