"""Decoders (`architecture.multilevel_features`): backbone levels -> pyramid levels."""
