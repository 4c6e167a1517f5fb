"""Reusable Keras layers shared by backbones, FPNs and heads."""
