"""Prediction heads over multilevel features."""
