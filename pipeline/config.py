"""Experiment configuration: frozen dataclasses, named configs, and ``--set key=value`` overrides.

Named configs live in ``pipeline/configs/<name>.toml``; a path to a ``.toml`` or ``.json``
file works the same way. Only the keys that differ from the defaults need to be given.
Unknown keys and values of the wrong type are rejected with a message naming them.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
import typing
from pathlib import Path

from pipeline.modalities import modality_names
from pipeline.modalities.names import AUDIO, IMAGE

CONFIG_DIR = Path(__file__).resolve().parent / "configs"
CONFIG_FORMAT_VERSION = 1
FUSION_STRATEGIES = ("average", "weighted", "concat_dense", "gated")


class ConfigError(ValueError):
    """A configuration that cannot be used; the message names the key and what is expected."""


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Args: path: dataset folder, "default" for data/default, or "shared:NAME" for ../shared/datasets/NAME;
    format: adapter name or "" to detect;
    modalities: what the model is trained on; *_split: split names."""

    path: str = "default"
    format: str = ""
    modalities: tuple[str, ...] = ("text", IMAGE, AUDIO)
    train_split: str = "train"
    dev_split: str = "dev"
    test_split: str = "test"
    cache: str = "memory"


@dataclasses.dataclass(frozen=True)
class TextConfig:
    """Args: kind: conv | lstm | conv_lstm | serial | parallel | mixed | minilm (frozen
    all-MiniLM-L6-v2 over WordPiece ids, its features cached in training, then a head with an
    MLP branch of head_hidden units; GloVe, max_tokens and min_count do not apply); glove: start
    embeddings from GloVe 50-d (forces embedding_dim 50); kernel_sizes: Conv1D widths, one branch each; lstm_pooling:
    what the LSTM passes on, its final state ("last") or the mean of its outputs ("mean")."""

    kind: str = "serial"
    max_tokens: int = 10000
    min_count: int = 1
    sequence_length: int = 32
    embedding_dim: int = 128
    glove: bool = False
    conv_filters: int = 256
    kernel_sizes: tuple[int, ...] = (2, 3, 4)
    lstm_units: int = 256
    bidirectional: bool = True
    lstm_pooling: str = "last"
    dropout: float = 0.1
    head_hidden: int = 1024


@dataclasses.dataclass(frozen=True)
class ImageConfig:
    """Args: backbone: a keras.applications name (mobilenet_v2, ...) or "scratch" (a small CNN);
    weights: "imagenet" (looked up in the Keras cache), a path to a weights file, or "none";
    trainable_layers: top backbone layers to fine-tune (0 = frozen); cache_features: with a
    frozen backbone, compute its features once and cache them on disk; scratch_global_pool:
    the scratch CNN adds a global max pool of its last maps to the flattened grid;
    scratch_grid: the scratch CNN's features include its last maps flattened (where things
    are); scratch_grid_channels: those maps are first reduced to this many channels by a
    1x1 convolution (0 = flattened as they are);
    head_hidden: width of an MLP branch added to the head's linear projection (0 = linear only);
    pooling: how a keras.applications backbone's last maps become features: "avg", or
    "avg_max" (average and max pooled, concatenated); feature_flip: with cached features,
    also cache those of each image mirrored left to right, and train on one of the two at
    random each epoch (augmentation that costs one more pass of the backbone, once);
    feature_crops: as many more cached views, fixed crops at 80% of the side (corners, centre);
    test_views: when an image is embedded for evaluation and search, the embeddings of its
    first test_views views (as is, mirrored, the crops, in that order) are averaged
    (test-time augmentation; 1 = the image as is, each more view one more backbone pass)."""

    backbone: str = "scratch"
    weights: str = "imagenet"
    image_size: int = 64
    trainable_layers: int = 0
    cache_features: bool = True
    scratch_filters: tuple[int, ...] = (32, 64, 128, 256)
    scratch_convs_per_block: int = 2
    scratch_global_pool: bool = True
    scratch_grid: bool = True
    scratch_grid_channels: int = 0
    head_hidden: int = 0
    pooling: str = "avg"
    feature_flip: bool = False
    feature_crops: int = 0
    test_views: int = 1
    dropout: float = 0.1
    crop_min_area: float = 0.85
    flip: bool = False
    brightness: float = 0.1
    contrast: float = 0.15
    saturation: float = 0.15


@dataclasses.dataclass(frozen=True)
class AudioConfig:
    """Args: clip_seconds: audio is cropped/padded to this; filters: Conv1D blocks over time;
    recurrent: "" or "gru" (a bidirectional GRU after the convolutions); readout: how a clip
    becomes its embedding: "pool" (pooled frames → projection), "words" (the words the
    frame-word head hears, read by the text encoder: speech → transcript → text embedding;
    needs train.aux_frame_words), or "both" (the two averaged); init_from: a run (folder, or
    name under saved_models/runs) whose audio encoder's weights start this one's (layers of
    the same name and shape; "" = random start); mel_shift: in training, move the mel channels
    of a clip up or down by up to this many (another voice's pitch and formants; 0 = off)."""

    clip_seconds: float = 6.0
    n_mels: int = 64
    filters: tuple[int, ...] = (128, 192, 256)
    kernel_size: int = 5
    first_stride: int = 1
    recurrent: str = "gru"
    recurrent_units: int = 128
    dropout: float = 0.1
    time_masks: int = 2
    time_width: int = 20
    freq_masks: int = 2
    freq_width: int = 8
    readout: str = "pool"
    init_from: str = ""
    mel_shift: int = 0


@dataclasses.dataclass(frozen=True)
class FusionConfig:
    """Args: strategy: average | weighted | concat_dense | gated (see models/fusion.py);
    hidden: width of the Dense networks' hidden layer; modality_dropout: chance, in training,
    of hiding each modality of an item from the fusion (never all of them); text: an item's own
    words (a title, a caption, a transcript) enter its vector beside its image and sound."""

    strategy: str = "average"  # the best on hybrid items (benchmarks/results/fusion.md)
    hidden: int = 256
    modality_dropout: float = 0.3
    text: bool = True


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Args: loss: infonce (symmetric, learnable temperature) | vse (max-violation hinge);
    vse_warmup_steps: with vse, the first steps sum the violations of every negative
    instead of taking the hardest (out of the collapsed start; 0 = hardest from the start);
    pairs: modality pairs trained together ("text-image", "audio-image", "audio-text", "text-item");
    aux_words / aux_labels: weights of the auxiliary heads (0 = off);
    aux_ctc: weight of a CTC loss that reads the spoken caption's words off the audio
    encoder's frame sequence (needs the audio's own transcript; 0 = off);
    aux_frame_words: weight of a per-frame word classifier on the audio encoder's frame
    sequence, taught by word timings (manifest column ``audio_words``; 0 = off);
    audio_follows: audio pairs train only the audio side: the text and image embeddings audio
    is compared with are held fixed there (stop-gradient), so an audio encoder that has not
    learned yet cannot pull the text-image space apart;
    keep_contrast_groups: batch items that share a ``contrast_group`` (e.g. colour-swapped
    twins) together, so each is the other's hard negative;
    positives: what counts as a match, in the loss and in evaluation: "item" (an item's own
    caption, image, sound) or "label" (anything of the same class: spoken digits, sound
    categories; rows without a label match only their own item);
    audio_epochs: 0 trains every modality together from the first epoch; N > 0 trains text
    and images alone first, then audio for the last N of train.epochs with the text and image
    towers frozen, each phase with its own learning-rate schedule (audio costs most of an
    epoch, and text and images need many more epochs than audio);
    audio_batch_size: the batch size of that audio phase (0 = train.batch_size): smaller
    batches give an audio encoder learning from scratch more steps for the same work."""

    loss: str = "infonce"
    temperature: float = 0.07
    learn_temperature: bool = True
    margin: float = 0.2
    vse_warmup_steps: int = 0
    pairs: tuple[str, ...] = ("text-image", "audio-image", "audio-text", "text-item")
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    early_stopping_patience: int = 6
    aux_words: float = 0.0
    aux_labels: float = 0.0
    aux_ctc: float = 0.0
    aux_frame_words: float = 0.0
    dev_items: int = 1000
    projector_items: int = 200
    keep_contrast_groups: bool = True
    audio_follows: bool = False
    positives: str = "item"
    audio_epochs: int = 0
    audio_batch_size: int = 0

    @property
    def audio_phase_batch_size(self) -> int:
        """The batch size the audio phase trains with."""
        return self.audio_batch_size or self.batch_size


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    name: str = "default"
    seed: int = 0
    strategy: str = "default"
    embedding_dim: int = 256
    data: DataConfig = DataConfig()
    text: TextConfig = TextConfig()
    image: ImageConfig = ImageConfig()
    audio: AudioConfig = AudioConfig()
    fusion: FusionConfig = FusionConfig()
    train: TrainConfig = TrainConfig()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> ExperimentConfig:
        choices = {
            "strategy": (self.strategy, ("default", "mirrored", "multi_worker", "multiworker")),
            "text.kind": (self.text.kind, ("conv", "lstm", "conv_lstm", "serial", "parallel", "mixed", "minilm")),
            "fusion.strategy": (self.fusion.strategy, FUSION_STRATEGIES),
            "train.loss": (self.train.loss, ("infonce", "vse")),
            "audio.recurrent": (self.audio.recurrent, ("", "gru")),
            "audio.readout": (self.audio.readout, ("pool", "words", "both")),
            "image.pooling": (self.image.pooling, ("avg", "avg_max")),
            "text.lstm_pooling": (self.text.lstm_pooling, ("last", "mean")),
            "train.positives": (self.train.positives, ("item", "label")),
        }
        for key, (value, allowed) in choices.items():
            if value not in allowed:
                raise ConfigError(f"{key} = {value!r} is not one of {', '.join(map(repr, allowed))}")
        known = modality_names()
        for modality in self.data.modalities:
            if modality not in known:
                raise ConfigError(f"data.modalities: unknown modality {modality!r} ({', '.join(known)})")
        for pair in self.train.pairs:
            parts = pair.split("-")
            if len(parts) != 2 or any(p not in (*known, "item") for p in parts):
                raise ConfigError(f"train.pairs: {pair!r} is not of the form 'text-image' ({', '.join(known)}, item)")
            missing = [p for p in parts if p != "item" and p not in self.data.modalities]
            if missing:
                raise ConfigError(
                    f"train.pairs: {pair!r} needs {', '.join(missing)}, which is not in data.modalities {self.data.modalities}"
                )
        positive = {
            "embedding_dim": self.embedding_dim,
            "train.epochs": self.train.epochs,
            "train.batch_size": self.train.batch_size,
            "text.sequence_length": self.text.sequence_length,
            "image.image_size": self.image.image_size,
        }
        positive.update(
            {
                "text.embedding_dim": self.text.embedding_dim,
                "text.conv_filters": self.text.conv_filters,
                "text.lstm_units": self.text.lstm_units,
                "train.learning_rate": self.train.learning_rate,
                "train.temperature": self.train.temperature,
                "fusion.hidden": self.fusion.hidden,
            }
        )
        for key, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{key} must be positive, got {value}")
        if self.train.audio_epochs < 0:
            raise ConfigError(
                f"train.audio_epochs must be 0 (off) or a number of epochs, got {self.train.audio_epochs}"
            )
        if self.train.audio_batch_size < 0:
            raise ConfigError(
                f"train.audio_batch_size must be 0 (= train.batch_size) or a batch size, got {self.train.audio_batch_size}"
            )
        first_phase_pairs = [p for p in self.train.pairs if AUDIO not in p.split("-")]
        if AUDIO in self.data.modalities and self.train.audio_epochs > 0 and not first_phase_pairs:
            raise ConfigError(
                f"train.audio_epochs trains the other modalities first, and train.pairs {list(self.train.pairs)} has no pair "
                f"without audio (such as text-image) to train then. Set train.audio_epochs=0."
            )
        if AUDIO in self.data.modalities and self.train.audio_epochs >= self.train.epochs:
            raise ConfigError(
                f"train.audio_epochs ({self.train.audio_epochs}) must be fewer than train.epochs ({self.train.epochs}): audio trains in "
                f"the last train.audio_epochs epochs, after text and images. Lower it too (e.g. --set train.audio_epochs="
                f"{self.train.epochs // 3}), or set it to 0 to train every modality together."
            )
        if not self.text.kernel_sizes or min(self.text.kernel_sizes) < 1:
            raise ConfigError(
                f"text.kernel_sizes must be one or more widths of at least 1, got {list(self.text.kernel_sizes)}"
            )
        for key, value in {
            "text.dropout": self.text.dropout,
            "image.dropout": self.image.dropout,
            "audio.dropout": self.audio.dropout,
        }.items():
            if not 0 <= value < 1:
                raise ConfigError(f"{key} must be in [0, 1), got {value}")
        if not 0 < self.image.crop_min_area <= 1:
            raise ConfigError(f"image.crop_min_area must be in (0, 1], got {self.image.crop_min_area}")
        if not 0 <= self.image.feature_crops <= 5:
            raise ConfigError(
                f"image.feature_crops takes 0 to 5 (the corner and centre crops), got {self.image.feature_crops}"
            )
        views = 1 + int(self.image.feature_flip) + self.image.feature_crops
        if not 1 <= self.image.test_views <= views:
            raise ConfigError(
                f"image.test_views takes 1 to {views} (the views image.feature_flip and image.feature_crops "
                f"define), got {self.image.test_views}"
            )
        if self.image.scratch_grid_channels < 0:
            raise ConfigError(
                f"image.scratch_grid_channels must be 0 (as they are) or a channel count, got {self.image.scratch_grid_channels}"
            )
        if self.image.backbone == "scratch" and not (self.image.scratch_grid or self.image.scratch_global_pool):
            raise ConfigError(
                "image.scratch_grid and image.scratch_global_pool are both off: the scratch CNN would have no features"
            )
        if self.image.head_hidden < 0:
            raise ConfigError(f"image.head_hidden must be 0 (off) or a width, got {self.image.head_hidden}")
        if not 0 <= self.fusion.modality_dropout < 1:
            raise ConfigError("fusion.modality_dropout must be in [0, 1)")
        if self.audio.readout != "pool" and AUDIO in self.data.modalities:
            if "text" not in self.data.modalities or self.train.aux_frame_words <= 0:
                raise ConfigError(
                    f"audio.readout = {self.audio.readout!r} reads the words heard in a clip with the text encoder: it needs "
                    f"'text' in data.modalities and train.aux_frame_words > 0 (the head that hears them)"
                )
        if (
            "+" in self.image.backbone or self.image.backbone.startswith("efficientnet_lite")
        ) and self.image.trainable_layers:
            raise ConfigError(
                f"image.backbone={self.image.backbone!r} is used frozen (its features are cached): "
                "set image.trainable_layers = 0"
            )
        if self.text.kind == "minilm" and AUDIO in self.data.modalities:
            raise ConfigError(
                "text.kind = 'minilm' caches the features of the captions, not of transcripts: it trains "
                "text-image data; for data with audio, use another text.kind"
            )
        if self.image.backbone == "scratch" and self.image.image_size < 32:
            raise ConfigError("image.image_size must be at least 32 for the scratch CNN")
        return self


def content_modalities(config: ExperimentConfig) -> tuple[str, ...]:
    """The modalities of an item's files that the model has (every registered one but text,
    in the registry's order); an item's text is its words."""
    return tuple(m for m in modality_names() if m != "text" and m in config.data.modalities)


def fused_modalities(config: ExperimentConfig) -> tuple[str, ...]:
    """What the fusion network merges into an item's vector: its content and, with
    ``fusion.text``, its words. Empty when the model has no content modality."""
    content = content_modalities(config)
    if not content:
        return ()
    return (("text",) if config.fusion.text and "text" in config.data.modalities else ()) + content


def trains_items(config: ExperimentConfig) -> bool:
    """Whether a loss reaches the fused item (a pair with "item")."""
    return any("item" in pair.split("-") for pair in config.train.pairs)


def _field_types(cls) -> dict[str, typing.Any]:
    return typing.get_type_hints(cls)


def _coerce(value, hint, key: str):
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{key} is a section; give its keys ({', '.join(f.name for f in dataclasses.fields(hint))})"
            )
        return _build(hint, value, prefix=f"{key}.")
    if origin is tuple:
        (inner, *_rest) = typing.get_args(hint)
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} takes a list, got {value!r}")
        return tuple(_coerce(v, inner, key) for v in value)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key} takes true or false, got {value!r}")
    if hint in (int, float):
        try:
            number = hint(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key} takes a number ({hint.__name__}), got {value!r}") from None
        if hint is int and isinstance(value, float) and value != int(value):
            raise ConfigError(f"{key} takes a whole number, got {value!r}")
        return number
    if hint is str:
        return str(value)
    return value


def _build(cls, values: dict, prefix: str = ""):
    hints = _field_types(cls)
    unknown = [k for k in values if k not in hints]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, hints, n=1)
        hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
        raise ConfigError(
            f"unknown config key '{prefix}{key}'{hint}; known keys here: {', '.join(prefix + k for k in hints)}"
        )
    kwargs = {k: _coerce(v, hints[k], prefix + k) for k, v in values.items()}
    return cls(**kwargs)


def from_dict(values: dict) -> ExperimentConfig:
    values = {k: v for k, v in values.items() if k != "format_version"}
    return _build(ExperimentConfig, values).validate()


def _nested_update(base: dict, key: str, value) -> None:
    parts = key.split(".")
    node = base
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{part}' is not a section")
    node[parts[-1]] = value


def apply_overrides(values: dict, overrides: list[str]) -> dict:
    """Applies ``key=value`` strings (dotted keys) to a raw config dict."""
    values = json.loads(json.dumps(values))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set takes key=value, got {item!r}")
        _nested_update(values, key.strip(), raw.strip())
    return values


def named_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def read_config_file(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIG_DIR / f"{name_or_path}.toml"
        if not path.exists():
            raise ConfigError(
                f"no config named '{name_or_path}'; shipped: {', '.join(named_configs())}, or give a .toml/.json path"
            )
    if not path.exists():
        raise ConfigError(f"config file {path} not found")
    if path.suffix == ".json":
        return json.loads(path.read_text())
    with path.open("rb") as handle:
        return tomllib.load(handle)


def load_config(name_or_path: str, overrides: list[str] = ()) -> ExperimentConfig:
    return from_dict(apply_overrides(read_config_file(name_or_path), list(overrides)))


def to_toml(config: ExperimentConfig) -> str:
    """A TOML rendering that ``load_config`` reads back to an equal config."""

    def value(v):
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(v)

    data = config.to_dict()
    lines = [f"{k} = {value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for section, fields in data.items():
        if isinstance(fields, dict):
            lines += ["", f"[{section}]"] + [f"{k} = {value(v)}" for k, v in fields.items()]
    return "\n".join(lines) + "\n"
