"""Names shared by the command line, the executor, the model fns and the input pipelines.

Everything here but `model_fn` is free of TensorFlow, so `main.py --print_config` and flag
errors stay instant.
"""
