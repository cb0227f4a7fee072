"""Keras encoders, the fusion network and the jointly trained cross-modal model."""
