"""What the model is trained to do, apart from the towers that do it (as in TensorFlow Recommenders).

Each task reads the batch ``x`` and the model's outputs ``y_pred`` and gives its loss terms
(one per modality it reads, say), none when the batch holds nothing for it (no audio in the
text-image phase). The model's ``compute_loss`` is the sum over ``tasks_for(config)``: the
contrastive pair tasks, then the auxiliary heads, each term scaled by the task's weight.

The heads themselves (Dense layers) stay on the model: the frame-word head also serves
inference (the transcribing audio readout), and their weights are saved with the run.
"""

from __future__ import annotations

import abc

import keras
from keras import ops

from pipeline.modalities.names import AUDIO


class Task(abc.ABC):
    """One term of the loss.

    Args:
        name: the task's name (its metric is ``loss_<name>`` for pair tasks).
        weight: the factor on its loss.
        auxiliary: counted in the ``loss_aux`` metric, not a pair metric.
    """

    auxiliary = True

    def __init__(self, name: str, weight: float = 1.0):
        self.name = name
        self.weight = float(weight)

    @abc.abstractmethod
    def terms(self, model, x: dict, y_pred: dict, ids=None) -> list:
        """The unweighted loss terms on this batch (empty where it has nothing for this task)."""

    def loss(self, model, x: dict, y_pred: dict, ids=None):
        """The task's weighted loss, or None where the batch has nothing for it."""
        terms = self.terms(model, x, y_pred, ids)
        return None if not terms else self.weight * sum(terms[1:], terms[0])

    def get_config(self) -> dict:
        return {"name": self.name, "weight": self.weight}


def replicas_in_sync() -> int:
    """How many replicas compute this step together (1 outside ``tf.distribute``)."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return 1 if context is None else int(context.num_replicas_in_sync)


def _across_replicas(collective, tensor):
    """``collective(context, tensor)`` on this worker's device: inside Keras's traced step a
    tensor has no device, and a collective op needs one to send to."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    with tf.device(context.strategy.extended.worker_devices[0]):
        return collective(context, tf.identity(tensor))


def mean_over_replicas(value):
    """A per-replica mean (an auxiliary term over a replica's rows) as the mean over the global
    batch: replicas hold equal shares of it (the input drops a short last batch)."""
    import tensorflow as tf

    if replicas_in_sync() == 1:
        return value
    return _across_replicas(lambda context, t: context.all_reduce(tf.distribute.ReduceOp.MEAN, t), value)


def gather_replicas(*tensors):
    """Each tensor's rows from every replica, in replica order (``None`` stays ``None``).

    With several workers (``tf.distribute``), each replica holds a slice of the global batch;
    a contrastive pair loss over the gathered rows has every item of the global batch as a
    negative, as one process with that batch would. Every replica then computes the same
    loss, and the gather's gradient sends each replica's share back to the rows it owns."""
    if replicas_in_sync() == 1:
        return tensors
    gather = lambda context, t: context.all_gather(t, axis=0)  # noqa: E731
    return tuple(None if t is None else _across_replicas(gather, t) for t in tensors)


class PairTask(Task):
    """Contrastive retrieval between two of a batch's outputs (``train.pairs``, e.g. ``text-image``).

    Args:
        pair: ``a-b``, two keys of ``y_pred`` (``audio-text`` uses the audio's own transcript,
            ``audio_text``, where the batch has it).
        audio_follows: audio learns towards the other side, which gets no gradient from this pair.

    Example:
        >>> PairTask("text-image").loss(model, x, model(x, training=True))  # doctest: +SKIP
    """

    auxiliary = False

    def __init__(self, pair: str, audio_follows: bool = False):
        super().__init__(pair)
        self.pair = pair
        self.audio_follows = audio_follows

    def terms(self, model, x, y_pred, ids=None):
        a, b = self.pair.split("-")
        if a == AUDIO and b == "text" and "audio_text" in y_pred:
            b = "audio_text"
        if a not in y_pred or b not in y_pred:
            return []
        ea, eb = y_pred[a], y_pred[b]
        if self.audio_follows and (a == AUDIO) != (b == AUDIO):
            ea, eb = (ea, ops.stop_gradient(eb)) if a == AUDIO else (ops.stop_gradient(ea), eb)
        ea, eb, ids = gather_replicas(ea, eb, ids)
        return [model.pair_loss(ea, eb, ids)]

    def get_config(self):
        return {**super().get_config(), "pair": self.pair, "audio_follows": self.audio_follows}


def word_targets(tokens, vocab_size: int):
    """Multi-hot [batch, vocab] of the words in token ids, padding (0) and OOV (1) left out."""
    words = ops.sum(ops.one_hot(tokens, vocab_size), axis=1)
    return ops.cast(words > 0, "float32") * ops.cast(ops.arange(vocab_size) > 1, "float32")[None, :]


class WordTask(Task):
    """Each content modality's vector predicts the words of its caption (bag of words, sigmoid)
    through ``model.word_head``; audio predicts its own transcript where the batch has it."""

    def terms(self, model, x, y_pred, ids=None):
        if "text" not in x:
            return []
        terms = []
        for m in model.content:
            if m in y_pred:
                tokens = x["audio_text"] if m == AUDIO and "audio_text" in x else x["text"]
                logits = model.word_head(y_pred[m])
                targets = word_targets(tokens, model.vocab_size)
                terms.append(ops.mean(keras.losses.binary_crossentropy(targets, logits, from_logits=True)))
        return terms


class LabelTask(Task):
    """Text and each content modality's vector predict the item's class (``label``) through
    ``model.label_head``; rows without a label (-1) are left out of the mean."""

    def terms(self, model, x, y_pred, ids=None):
        if "label" not in x:
            return []
        labels = x["label"]
        known = ops.cast(labels >= 0, "float32")
        terms = []
        for m in ("text", *model.content):
            if m in y_pred:
                ce = keras.losses.sparse_categorical_crossentropy(
                    ops.maximum(labels, 0), model.label_head(y_pred[m]), from_logits=True
                )
                terms.append(ops.sum(ce * known) / ops.maximum(ops.sum(known), 1.0))
        return terms


def ctc_loss(tokens, logits):
    """Mean CTC loss per word of the transcripts ``tokens`` (ids, 0-padded) against frame
    ``logits`` [batch, frames, vocab] with 0 as the blank. A transcript too long for the
    frames (a clip cropped mid-sentence) contributes nothing rather than infinity."""
    target_length = ops.sum(ops.cast(tokens != 0, "int32"), axis=1)
    frames = ops.shape(logits)[1]
    output_length = ops.full(ops.shape(target_length), frames, dtype="int32")
    per_item = ops.ctc_loss(tokens, logits, target_length, output_length, mask_index=0)
    # A path needs one frame per word plus a blank between two equal words in a row.
    repeats = ops.sum(ops.cast(ops.logical_and(tokens[:, 1:] == tokens[:, :-1], tokens[:, 1:] != 0), "int32"), axis=1)
    usable = ops.logical_and(target_length + repeats <= frames, target_length > 0)
    per_item = ops.where(usable, per_item, 0.0) / ops.cast(ops.maximum(target_length, 1), "float32")
    return ops.sum(per_item) / ops.maximum(ops.sum(ops.cast(usable, "float32")), 1.0)


class CtcTask(Task):
    """The audio encoder's frames spell out the clip's transcript (CTC through ``model.ctc_head``)."""

    def terms(self, model, x, y_pred, ids=None):
        if "audio_ctc_logits" not in y_pred or "audio_text" not in x:
            return []
        return [ctc_loss(x["audio_text"], y_pred["audio_ctc_logits"])]


def frame_word_loss(labels, logits, timed=None):
    """Cross-entropy of the word heard at each encoder step: ``labels`` [batch, frames]
    (spectrogram frames, 0 = no word) are read at the centre of each of the ``logits``
    [batch, steps, vocab] steps, which pool frames/steps frames each. Averaged over steps,
    then over the items with timings (``timed`` = 1)."""
    frames, steps = ops.shape(labels)[1], ops.shape(logits)[1]
    centres = ops.cast((ops.cast(ops.arange(steps), "float32") + 0.5) * frames / steps, "int32")
    step_labels = ops.take(labels, centres, axis=1)
    per_item = ops.mean(keras.losses.sparse_categorical_crossentropy(step_labels, logits, from_logits=True), axis=1)
    timed = ops.ones_like(per_item) if timed is None else ops.cast(timed, "float32")
    return ops.sum(per_item * timed) / ops.maximum(ops.sum(timed), 1.0)


class FrameWordTask(Task):
    """Each audio encoder step names the word heard there (``model.frame_word_head``), from the
    word timings of the clip (``audio_words``)."""

    def terms(self, model, x, y_pred, ids=None):
        if "audio_frame_logits" not in y_pred or "audio_words" not in x:
            return []
        return [frame_word_loss(x["audio_words"], y_pred["audio_frame_logits"], x.get("audio_words_timed"))]


def tasks_for(config, label_count: int = 0) -> list[Task]:
    """The configured tasks, pair tasks first, then the auxiliary ones in a fixed order."""
    t = config.train
    tasks: list[Task] = [PairTask(pair, t.audio_follows) for pair in t.pairs]
    if t.aux_words > 0:
        tasks.append(WordTask("words", t.aux_words))
    if t.aux_labels > 0 and label_count > 0:
        tasks.append(LabelTask("labels", t.aux_labels))
    if t.aux_ctc > 0:
        tasks.append(CtcTask("ctc", t.aux_ctc))
    if t.aux_frame_words > 0:
        tasks.append(FrameWordTask("frame_words", t.aux_frame_words))
    return tasks


__all__ = [
    "CtcTask",
    "FrameWordTask",
    "LabelTask",
    "PairTask",
    "Task",
    "WordTask",
    "ctc_loss",
    "frame_word_loss",
    "tasks_for",
    "word_targets",
]
