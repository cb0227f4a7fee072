"""The jointly trained cross-modal model: towers, fusion and temperature; its loss is the sum of its tasks."""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from pipeline.config import ExperimentConfig, content_modalities, fused_modalities, trains_items
from pipeline.modalities import TowerContext
from pipeline.modalities import modalities as registered_modalities
from pipeline.modalities import modality as get_modality
from pipeline.modalities.base import BUILT_IN
from pipeline.modalities.names import AUDIO, IMAGE
from pipeline.models import tasks as tasks_lib
from pipeline.models.audio_encoder import build_audio_encoder, sequence_layer_name
from pipeline.models.fusion import build_fusion
from pipeline.models.image_encoder import (
    backbone_is_frozen,
    build_image_encoder,
    embed_image_features,
    embed_image_views,
)
from pipeline.models.layers import GreedyTranscript, L2Normalize
from pipeline.models.losses import infonce_loss, vse_hinge_loss
from pipeline.models.text_encoder import build_text_encoder
from pipeline.preprocessing.image_ops import test_view_names


@keras.saving.register_keras_serializable(package="pipeline")
class CrossModalModel(keras.Model):
    """Encoders for each modality trained into one space, plus the fusion network.

    Args:
        config: the experiment configuration (encoders, fusion, loss).
        vocab_size: size of the text vocabulary (TextVectorization's).
        audio_frames: time frames of the log-mel input.
        image_feature_dim: set when a frozen backbone's cached features are fed instead of pixels.
        label_count: classes for the auxiliary label head (0 = none).
        embedding_matrix: optional initial word embeddings (GloVe).

    ``call`` takes a dict with any of ``text`` (token ids), ``image`` (pixels) or
    ``image_features``, ``audio`` (log-mel), optional ``image_mask``/``audio_mask``, and, for
    the item's own words in the fusion, ``item_text`` (token ids of another of its captions
    than ``text``) with ``item_text_mask``; it returns unit vectors per modality and, when the
    item has content, the fused ``item``.

    Example:
        >>> model = CrossModalModel(load_config("smoke"), vocab_size=100, audio_frames=200)
        >>> model({"text": ids, IMAGE: pixels})["text"].shape
    """

    def __init__(
        self,
        config,
        vocab_size,
        audio_frames=None,
        image_feature_dim=None,
        label_count=0,
        embedding_matrix=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if isinstance(config, dict):
            from pipeline.config import from_dict

            config = from_dict(config)
        self.experiment = config
        self.vocab_size = int(vocab_size)
        self.audio_frames = audio_frames
        self.image_feature_dim = image_feature_dim
        self.label_count = int(label_count)
        dim = config.embedding_dim
        modalities = config.data.modalities
        if "text" in modalities:
            self.text_encoder = build_text_encoder(config.text, vocab_size, dim, embedding_matrix)
        if IMAGE in modalities:
            self.image_encoder = build_image_encoder(config.image, dim)
            self.image_head = self.image_encoder.get_layer("image_head")
        if AUDIO in modalities:
            self.audio_encoder = build_audio_encoder(config.audio, audio_frames, dim)
            if config.train.aux_ctc > 0 or config.train.aux_frame_words > 0:
                # Same layers, a second output: the frame sequence the word heads read words from.
                sequence = self.audio_encoder.get_layer(sequence_layer_name(config.audio)).output
                self.audio_with_sequence = keras.Model(
                    self.audio_encoder.input, [self.audio_encoder.output, sequence], name="audio_with_sequence"
                )
            # The heads are built here, not on first use in training, so that weights saved by a
            # training run load into them when a run is reopened for inference.
            if config.train.aux_ctc > 0:
                self.ctc_head = keras.layers.Dense(vocab_size, name="ctc_head")  # index 0 (padding) is the CTC blank
                self.ctc_head.build(sequence.shape)
            if config.train.aux_frame_words > 0:
                self.frame_word_head = keras.layers.Dense(vocab_size, name="frame_word_head")  # 0: no word heard
                self.frame_word_head.build(sequence.shape)
            if config.audio.readout != "pool":
                # Inference and export go through this: the pooled encoder trained by the
                # contrastive losses, and/or the text tower reading what the frame head hears.
                self.pooled_audio_encoder = self.audio_encoder
                self.audio_encoder = self._transcribing_audio_encoder(config)
        # Any other registered modality (pipeline.modalities): its tower, built by the modality.
        context = TowerContext(self.vocab_size, embedding_matrix, audio_frames)
        self.other_modalities = tuple(
            m.name for m in registered_modalities() if m.name not in BUILT_IN and m.name in modalities
        )
        for name in self.other_modalities:
            setattr(self, f"{name}_encoder", get_modality(name).build_encoder(config, dim, context))
        self.content = content_modalities(config)
        self.fused = fused_modalities(config)
        if self.fused:
            self.fusion = build_fusion(config.fusion, self.fused, dim)
            if not trains_items(config):
                self.fusion.trainable = False  # no loss reaches it: keep its initial (even) weights, silently
        t = config.train
        self.log_scale = self.add_weight(
            shape=(),
            initializer=keras.initializers.Constant(math.log(1.0 / t.temperature)),
            trainable=t.learn_temperature and t.loss == "infonce",
            name="log_scale",
        )
        if t.aux_words > 0:
            self.word_head = keras.layers.Dense(vocab_size, name="word_head")
            self.word_head.build((None, dim))
        if t.aux_labels > 0 and label_count > 0:
            self.label_head = keras.layers.Dense(label_count, name="label_head")
            self.label_head.build((None, dim))
        self.seed_generator = keras.random.SeedGenerator(config.seed)
        self.tasks = tasks_lib.tasks_for(config, self.label_count)
        self.pair_trackers = {p: keras.metrics.Mean(name=f"loss_{p.replace('-', '_')}") for p in t.pairs}
        self.aux_tracker = keras.metrics.Mean(name="loss_aux")

    def _transcribing_audio_encoder(self, config) -> keras.Model:
        spec = keras.Input(self.pooled_audio_encoder.input.shape[1:], name="log_mel")
        pooled, sequence = self.audio_with_sequence(spec)
        words = GreedyTranscript(config.text.sequence_length, name="transcript")(self.frame_word_head(sequence))
        heard = self.text_encoder(words)
        if config.audio.readout == "words":
            return keras.Model(spec, heard, name="audio_encoder")
        both = L2Normalize(name="l2")(keras.layers.Average(name="average")([pooled, heard]))
        return keras.Model(spec, both, name="audio_encoder")

    def encode_image(self, pixels):
        """Preprocessed images → unit vectors for evaluation and search, averaged over the
        first ``image.test_views`` views (test-time augmentation)."""
        return embed_image_views(self.image_encoder, pixels, test_view_names(self.experiment.image))

    def tower(self, name: str) -> keras.Model:
        """The encoder of modality ``name`` (``<name>_encoder``)."""
        return getattr(self, f"{name}_encoder")

    def encode_prepared(self, name: str, inputs):
        """One modality's prepared inputs → unit vectors, inside a graph (search, export)."""
        if name == IMAGE:
            return self.encode_image(inputs)  # averaged over test views
        return self.tower(name)(inputs, training=False)

    def encode_batch(self, name: str, batch: dict) -> np.ndarray:
        """One modality's batch of model inputs (its ``prepare`` output, or cached image
        features) → unit vectors, as evaluation and search embed them."""
        if "image_features" in batch:
            return np.asarray(self.encode_image_features(batch["image_features"]))
        if name == IMAGE:
            return np.asarray(self.encode_image(batch[IMAGE]))  # averaged over test views
        # predict runs the encoder as one compiled function: an eager call of the audio encoder
        # that reads its transcript with a recurrent text tower costs several times as much.
        return self.tower(name).predict(batch[name], batch_size=len(batch[name]), verbose=0)

    def encode_image_features(self, features):
        """Cached backbone features [batch, dim], or [batch, views, dim] (averaged) → unit vectors."""
        return embed_image_features(self.image_head, features)

    def reset_temperature(self) -> None:
        """Back to the configured starting temperature (``train.temperature``)."""
        self.log_scale.assign(math.log(1.0 / self.experiment.train.temperature))

    @property
    def scale(self):
        return ops.exp(ops.minimum(self.log_scale, math.log(100.0)))

    @property
    def metrics(self):
        return [*super().metrics, *self.pair_trackers.values(), self.aux_tracker]

    def text_tower_for(self, text_inputs) -> keras.Model:
        """The text encoder for token ids; its head alone for cached backbone features (float
        rows, what ``CachedTextFeatures`` gives a ``minilm`` text encoder in training)."""
        if keras.backend.standardize_dtype(text_inputs.dtype).startswith("float"):
            return self.text_encoder.get_layer("text_head")
        return self.text_encoder

    def encode_text(self, text_inputs, training=False):
        return self.text_tower_for(text_inputs)(text_inputs, training=training)

    def text_keys(self, inputs, training) -> list[str]:
        """The inputs the text tower reads in one call: the query caption ``text``, in training
        the audio's own transcript ``audio_text`` (the exact positive for audio-text, when the
        data has it), and the item's words ``item_text`` that the fusion network reads."""
        keys = ["text"] if "text" in inputs else []
        if training and "audio_text" in inputs and AUDIO in inputs:
            keys.append("audio_text")
        if "text" in self.fused and "item_text" in inputs:
            keys.append("item_text")
        return keys

    def encode_texts(self, keys: list[str], inputs: dict, training) -> dict:
        """``inputs[key]`` for each key through the text tower as one batch: the tower has no
        batch statistics, so this is the same as a call per key, and the recurrent layers step
        through the words once instead of once per key."""
        if len(keys) < 2:
            return {key: self.encode_text(inputs[key], training=training) for key in keys}
        # The keys are columns of one batch, so the parts are of equal size.
        encoded = self.encode_text(ops.concatenate([inputs[key] for key in keys], axis=0), training=training)
        return dict(zip(keys, ops.split(encoded, len(keys), axis=0)))

    def call(self, inputs, training=False):
        out = self.encode_texts(self.text_keys(inputs, training), inputs, training)
        item_text = out.pop("item_text", None)
        if "image_features" in inputs:
            out[IMAGE] = self.image_head(inputs["image_features"], training=training)
        elif IMAGE in inputs:
            out[IMAGE] = self.image_encoder(inputs[IMAGE], training=training)
        if AUDIO in inputs:
            if training and hasattr(self, "audio_with_sequence"):
                out[AUDIO], sequence = self.audio_with_sequence(inputs[AUDIO], training=training)
                if hasattr(self, "ctc_head"):
                    out["audio_ctc_logits"] = self.ctc_head(sequence)
                if hasattr(self, "frame_word_head"):
                    out["audio_frame_logits"] = self.frame_word_head(sequence)
            else:
                out[AUDIO] = self.audio_encoder(inputs[AUDIO], training=training)
        for name in self.other_modalities:
            if name in inputs:
                out[name] = self.tower(name)(inputs[name], training=training)
        if any(m in out for m in self.content):
            out["item"] = self.fuse(out, inputs, training, item_text)
        return out

    def fuse(self, out: dict, inputs: dict, training: bool, item_text=None):
        """The item vector from the modality vectors in ``out``: the item's words are
        ``inputs["item_text"]`` (not the query caption ``text``; ``item_text``, when given, is
        their encoding), each modality has its mask, and in training each is hidden at random
        (``fusion.modality_dropout``), never all."""
        vectors = {m: out[m] for m in self.content if m in out}
        if "text" in self.fused and "item_text" in inputs:
            vectors["text"] = self.encode_text(inputs["item_text"], training) if item_text is None else item_text
        batch = ops.shape(next(iter(vectors.values())))[0]
        fusion_inputs, masks = {}, []
        for m in self.fused:
            fusion_inputs[m] = vectors.get(m, ops.zeros((batch, self.experiment.embedding_dim)))
            key = "item_text_mask" if m == "text" else f"{m}_mask"
            mask = inputs.get(key, ops.ones((batch,)) if m in vectors else ops.zeros((batch,)))
            masks.append(ops.cast(mask, "float32"))
        if training and self.experiment.fusion.modality_dropout > 0 and len(self.fused) > 1:
            keep = [
                ops.cast(
                    keras.random.uniform((batch,), seed=self.seed_generator) >= self.experiment.fusion.modality_dropout,
                    "float32",
                )
                for _ in self.fused
            ]
            dropped = [m * k for m, k in zip(masks, keep)]
            none_left = ops.cast(ops.sum(ops.stack(dropped, 1), axis=1) == 0, "float32")
            masks = [d + none_left * m for d, m in zip(dropped, masks)]  # never hide everything
        for m, mask in zip(self.fused, masks):
            fusion_inputs[f"{m}_mask"] = mask
        return self.fusion(fusion_inputs, training=training)

    def pair_loss(self, a, b, ids=None):
        t = self.experiment.train
        if t.loss == "infonce":
            return infonce_loss(a, b, self.scale, ids)
        hardest = vse_hinge_loss(a, b, t.margin, ids)
        if t.vse_warmup_steps <= 0 or getattr(self, "optimizer", None) is None:
            return hardest
        # From a random start the hardest negative is as close as the positive: the sum of
        # violations first (VSE), then the hardest negative (VSE++).
        summed = vse_hinge_loss(a, b, t.margin, ids, hardest=False)
        return ops.where(self.optimizer.iterations < t.vse_warmup_steps, summed, hardest)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a tf.distribute strategy, Keras 3.6 draws a batch from a fresh pass over the
        # training data to build with (its shuffle then advances, so training sees another
        # order than one process would) and averages it with a reduce MultiWorkerMirrored-
        # Strategy cannot do on a dict. The model is built already (``dummy_inputs``): only
        # the optimizer is left to build, which needs no data.
        strategy = self._distribute_strategy
        if strategy is None:
            return super()._maybe_symbolic_build(iterator, data_batch)
        with strategy.scope():
            self._symbolic_build(data_batch=dummy_inputs(self))

    def train_step(self, data):
        logs = super().train_step(data)
        if tasks_lib.replicas_in_sync() == 1:
            return logs
        # Keras 3.6 averages several workers' logs along axis 0 (tensorflow#72388), which a
        # scalar has not: each log as one value per replica (they are equal: compute_loss
        # works on the global batch).
        return {name: ops.reshape(value, (1,)) for name, value in logs.items()}

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The sum over the configured tasks (``models/tasks.py``): the pair losses of
        ``train.pairs``, then the weighted auxiliary terms."""
        ids = x.get("item") if isinstance(x, dict) else None
        if ids is not None and self.experiment.train.positives == "label" and "label" in x:
            # Same class, same positive set; an unlabelled row (-1) keeps an id of its own.
            ids = ops.where(x["label"] >= 0, x["label"], -1 - ids)
        total, aux = 0.0, 0.0
        for task in self.tasks:
            terms = task.terms(self, x, y_pred, ids)
            if task.auxiliary:
                for term in terms:
                    aux = aux + task.weight * tasks_lib.mean_over_replicas(term)
            elif terms:
                self.pair_trackers[task.name].update_state(terms[0])
                total = total + terms[0]
        self.aux_tracker.update_state(aux)
        loss = total + aux
        replicas = tasks_lib.replicas_in_sync()
        if replicas > 1:
            # Every replica holds the global loss, and Keras sums the replicas' gradients:
            # each replica's gradient is scaled by 1/replicas (the value is kept for the logs).
            loss = loss / replicas + ops.stop_gradient(loss - loss / replicas)
        return loss

    # Kept as the model's for callers that score outside training (tests, benchmarks).
    ctc_loss = staticmethod(tasks_lib.ctc_loss)
    frame_word_loss = staticmethod(tasks_lib.frame_word_loss)

    def word_targets(self, tokens):
        """Multi-hot [batch, vocab] of the words in token ids, padding and OOV left out."""
        return tasks_lib.word_targets(tokens, self.vocab_size)

    def get_config(self):
        return {
            "config": self.experiment.to_dict(),
            "vocab_size": self.vocab_size,
            "audio_frames": self.audio_frames,
            "image_feature_dim": self.image_feature_dim,
            "label_count": self.label_count,
        }

    @property
    def uses_image_features(self) -> bool:
        return self.image_feature_dim is not None


def uses_cached_image_features(config: ExperimentConfig) -> bool:
    return IMAGE in config.data.modalities and backbone_is_frozen(config.image) and config.image.cache_features


def dummy_inputs(model: CrossModalModel, batch: int = 2) -> dict:
    """Zero inputs of the right shapes: building the model before loading weights."""
    c = model.experiment
    x = {}
    if "text" in c.data.modalities:
        x["text"] = np.zeros((batch, c.text.sequence_length), "int64")
    if IMAGE in c.data.modalities:
        if model.uses_image_features:
            x["image_features"] = np.zeros((batch, model.image_feature_dim), "float32")
        else:
            x[IMAGE] = np.zeros((batch, c.image.image_size, c.image.image_size, 3), "float32")
    if AUDIO in c.data.modalities:
        x[AUDIO] = np.zeros((batch, model.audio_frames, c.audio.n_mels), "float32")
    context = TowerContext(model.vocab_size, None, model.audio_frames)
    for name in model.other_modalities:
        x[name] = get_modality(name).dummy_input(c, context, batch)
    return x
