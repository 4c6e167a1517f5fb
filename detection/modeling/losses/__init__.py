"""Training losses (kept beside the model_fn, outside the network layers)."""
