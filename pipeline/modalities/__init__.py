"""One module per modality, found through a small registry.

A modality says what its files are (extensions, magic bytes, MIME types), how one file's
bytes become a model input (the one preprocessing function training, search and the
TF Serving export all use), how its encoder is built and how its export is called. The
built-in ones are ``text``, ``image`` and ``audio``; another is one class and a
``register_modality`` call (see ``tests/test_toy_modality.py``).
"""

from pipeline.modalities.base import (
    Modality,
    TowerContext,
    file_modalities,
    modalities,
    modality,
    modality_names,
    register_modality,
    unregister_modality,
)

__all__ = [
    "Modality",
    "TowerContext",
    "file_modalities",
    "modalities",
    "modality",
    "modality_names",
    "register_modality",
    "unregister_modality",
]
