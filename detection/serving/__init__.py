"""Serving: a trained model as a SavedModel or TFLite file that does its own preprocessing.

    raw input (tensor, encoded image, tf.Example) -> decode -> the evaluation preprocessing
    (`preprocessing.py`) -> model fn in PREDICT mode -> outputs per model kind (`outputs.py`)

`factory.py` maps each model type to its serving kind (detection, classification,
segmentation); `module.py` builds the exportable `tf.Module`; `tflite.py` converts it;
`loaded.py` runs an exported model from the host (evaluation, inference tools).
"""
