"""Cross-modal retrieval pipeline: datasets, tf.data inputs, Keras encoders, search."""

__version__ = "0.1.0"
