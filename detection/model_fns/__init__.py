"""Model fns: one small object per model type, joining network, losses, inputs and evaluator.

The executor runs them through the contract in `detection.core.model_fn`; `factory` is the one
list of them.
"""
