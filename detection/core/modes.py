"""Modes: what one model-fn call computes, and what one run of `main.py` does."""

# Model-fn modes: the `mode` argument of `ModelFn.__call__` and `ModelFn.input_fn`.
TRAIN = "train"
EVAL = "eval"
PREDICT = "predict"
MODEL_FN_MODES = (TRAIN, EVAL, PREDICT)

# Run modes: `main.py --mode` and `detection.executor.run`.
TRAIN_AND_EVAL = "train_and_eval"
RUN_MODES = (TRAIN, EVAL, TRAIN_AND_EVAL)
