"""``text``: captions, titles, transcripts; inline in the manifest, not files."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from pipeline.modalities.base import Modality, TowerContext


class TextModality(Modality):
    """Words. An item's captions are a list; training draws one per epoch (and, for the item's
    own words in the fusion, another one: ``item_text``)."""

    name = "text"
    stored_as_file = False
    media_types = ("text/plain", "application/json")
    formats = "UTF-8 text"
    noun = "a caption"

    def decode(self, data, input_config, training):
        return data

    def load_element(self, element, out, input_config, training):
        return None  # inline: nothing to read

    def augment_element(self, element, out, seeds, input_config, training):
        if "text" not in element or element["text"].shape.rank != 1:
            return
        captions = element["text"]  # an item's captions: one per epoch at random in training, the first otherwise
        count = tf.shape(captions, out_type=tf.int32)[0]
        pick = tf.random.stateless_uniform([], seeds[3], 0, count, dtype=tf.int32) if training else 0
        out["text"] = captions[pick]
        if training and input_config.item_text:
            # Any caption but the query's: pick + 1 + [0, count - 1) wraps around the others.
            others = tf.maximum(count - 1, 1)
            step = tf.random.stateless_uniform(
                [], tf.random.experimental.stateless_split(seeds[3], 1)[0], 0, others, dtype=tf.int32
            )
            out["item_text"] = captions[(pick + 1 + step) % count]
            out["item_text_mask"] = tf.cast(count > 1, tf.float32)

    def input_spec(self, input_config):
        return tf.TensorSpec([], tf.string)

    def build_encoder(self, config, dim, context: TowerContext):
        from pipeline.models.text_encoder import build_text_encoder

        return build_text_encoder(config.text, context.vocab_size, dim, context.embedding_matrix)

    def dummy_input(self, config, context, batch):
        return np.zeros((batch, config.text.sequence_length), "int64")


MODALITY = TextModality()
