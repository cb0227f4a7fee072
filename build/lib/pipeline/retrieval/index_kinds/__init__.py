"""Index kinds, one module each; ``vector_index.index_kinds()`` imports every module here."""
