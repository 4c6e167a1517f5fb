"""Backbone networks: images -> multilevel feature maps {'2': C2, ...}."""
