"""The ``Modality`` interface and the registry of modalities by name."""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np

BUILT_IN = ("text", "image", "audio")


@dataclasses.dataclass(frozen=True)
class TowerContext:
    """What building a tower may need beyond the config: the text vocabulary size, GloVe
    rows, and the audio frame count."""

    vocab_size: int = 0
    embedding_matrix: object = None
    audio_frames: int | None = None


def first_line(error: Exception) -> str:
    """An error's first line, for a short reason (TensorFlow's messages run on)."""
    text = getattr(error, "message", None) or str(error)
    return text.strip().split("\n")[0].strip().rstrip(".") or type(error).__name__


class Modality:
    """A kind of data the pipeline trains on, indexes and searches.

    Class attributes:
        name: the manifest column, config name and batch key (``text``, ``image``, ...).
        stored_as_file: its manifest values are file paths (text is inline).
        extensions: file name endings the folder adapter picks up.
        media_types: MIME types a service upload of this modality may declare.
        formats: the formats it reads, for messages ("JPEG, PNG, GIF or BMP").
        noun: "an image", for messages.

    Preprocessing is split in two so that ``tf.data`` can cache the deterministic part:
    ``decode`` (bytes → decoded, cacheable) and ``finish`` (augmentation in training, then the
    model's input). ``prepare`` is the two for one file outside training: what search and the
    TF Serving export run, so the three never drift apart.

    Example:
        >>> image = modality("image")
        >>> pixels = image.prepare(tf.io.read_file("photo.jpg"), input_config)  # doctest: +SKIP
    """

    name: str = ""
    stored_as_file: bool = True
    extensions: tuple[str, ...] = ()
    media_types: tuple[str, ...] = ()
    formats: str = ""
    noun: str = ""

    @property
    def plural(self) -> str:
        """How counts of it are headed ("images"); ``<name>s`` unless a modality says otherwise."""
        return f"{self.name}s"

    # ------------------------------------------------------------ files

    def sniff(self, header: bytes) -> str | None:
        """The format name when ``header`` (a file's first bytes) is one of this modality's."""
        return None

    def check(self, data: bytes, limits) -> object:
        """Checks a file's header (and its cost to decode) before any TensorFlow op sees it;
        raises ``media_check.MediaRejected`` with the reason."""
        return None

    def probe(self, data: bytes, input_config=None) -> str | None:
        """None when ``data`` decodes, else a short reason (the dataset check)."""
        import tensorflow as tf

        try:
            return self.decoded_problem(tf.constant(data), input_config)
        except (tf.errors.OpError, ValueError) as error:
            return f"cannot be decoded as {self.name} ({first_line(error)})"

    def decoded_problem(self, data, input_config) -> str | None:
        """Decodes ``data``; what is wrong with what came out, or None. A decoder's error
        propagates (``probe`` words it)."""
        self.decode(data, input_config, training=False)
        return None

    # ------------------------------------------------------------ preprocessing

    def decode(self, data, input_config, training: bool):
        """A file's bytes → the decoded value ``tf.data`` caches (deterministic)."""
        raise NotImplementedError

    def finish(self, decoded, seed, input_config, training: bool):
        """The decoded value → the model's input; in training, with augmentation from ``seed``."""
        return decoded

    def prepare(self, data, input_config, serving: bool = False):
        """One file's bytes → the model's input, as evaluation sees it. ``serving``: core ops
        only (the stock TF Serving binary lacks tensorflow-io's)."""
        return self.finish(self.decode(data, input_config, training=False), None, input_config, training=False)

    def input_spec(self, input_config):
        """The shape and type ``prepare`` gives for one file."""
        raise NotImplementedError

    # ------------------------------------------------------------ tf.data elements

    def load_element(self, element: dict, out: dict, input_config, training: bool) -> None:
        """``tf.data`` load stage: reads and decodes this modality's file of ``element`` into ``out``."""
        import tensorflow as tf

        out[self.name] = self.decode(tf.io.read_file(element[self.name]), input_config, training)

    def augment_element(self, element: dict, out: dict, seeds, input_config, training: bool) -> None:
        """``tf.data`` augment stage: ``seeds`` are the element's five stateless seeds."""
        if self.name in element:
            out[self.name] = self.finish(element[self.name], seeds[0], input_config, training)

    # ------------------------------------------------------------ model

    def config_section(self, config):
        """Its section of the experiment config (``config.image``), or None."""
        return getattr(config, self.name, None)

    def build_encoder(self, config, dim: int, context: TowerContext):
        """A ``keras.Model`` named ``<name>_encoder``: model inputs → unit vectors [batch, dim]."""
        raise NotImplementedError

    def dummy_input(self, config, context: TowerContext, batch: int) -> np.ndarray:
        """Zeros shaped as a batch of model inputs (building a model before loading weights)."""
        raise NotImplementedError

    @property
    def export_input(self) -> str:
        """The TF Serving export's input name: ``<name>_bytes``."""
        return f"{self.name}_bytes"


_REGISTRY: dict[str, Modality] = {}


def register_modality(instance: Modality) -> Modality:
    """Adds a modality; its name must be new (built-ins register themselves on first lookup)."""
    if not instance.name or not instance.name.isidentifier():
        raise ValueError(f"a modality needs a name that is an identifier, got {instance.name!r}")
    _load_built_in()
    if instance.name in _REGISTRY and type(_REGISTRY[instance.name]) is not type(instance):
        raise ValueError(f"modality {instance.name!r} is registered already")
    _REGISTRY[instance.name] = instance
    return instance


def unregister_modality(name: str) -> None:
    if name in BUILT_IN:
        raise ValueError(f"{name} is built in")
    _REGISTRY.pop(name, None)


def _load_built_in() -> None:
    if all(name in _REGISTRY for name in BUILT_IN):
        return
    for name in BUILT_IN:
        module = importlib.import_module(f"pipeline.modalities.{name}")
        _REGISTRY.setdefault(name, module.MODALITY)


def modalities() -> list[Modality]:
    """Every registered modality: the built-ins first (text, image, audio), then the others."""
    _load_built_in()
    return [_REGISTRY[n] for n in BUILT_IN] + [m for n, m in _REGISTRY.items() if n not in BUILT_IN]


def modality_names() -> tuple[str, ...]:
    """Names only: no modality module (nor TensorFlow) is imported for them."""
    return (*BUILT_IN, *(n for n in _REGISTRY if n not in BUILT_IN))


def file_modalities() -> list[Modality]:
    """The modalities whose manifest values are files."""
    return [m for m in modalities() if m.stored_as_file]


def modality(name: str) -> Modality:
    _load_built_in()
    if name not in _REGISTRY:
        raise KeyError(f"unknown modality {name!r}; known: {', '.join(modality_names())}")
    return _REGISTRY[name]
