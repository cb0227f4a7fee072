"""The built-in file modalities' names, in one place: code that handles one of them in
particular (an adapter for photo datasets, the image head, the audio phase) refers to it here.

Code that handles any modality loops over the registry (``pipeline.modalities``) instead.
"""

IMAGE = "image"
AUDIO = "audio"
