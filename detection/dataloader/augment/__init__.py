"""Image augmentation policies: AutoAugment for detection and RandAugment (pure TF ops).

Entry points: `autoaugment.build_policy` (images + boxes + optional masks) and
`randaugment.RandAugment` (images only). The other modules hold the ops they share.
"""
