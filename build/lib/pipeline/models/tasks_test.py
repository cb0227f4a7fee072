"""Each task's loss against a value worked out by hand, on a stand-in for the model."""

import math
import types

import numpy as np
import pytest
import tensorflow as tf

from pipeline.config import load_config
from pipeline.models import tasks
from pipeline.models.losses import infonce_loss

I2 = np.eye(2, dtype="float32")


def stand_in(content=("image",), vocab_size=4, word_logits=None, label_logits=None):
    """What tasks read from a model: its content modalities, vocabulary, heads and pair loss."""
    return types.SimpleNamespace(
        content=content,
        vocab_size=vocab_size,
        word_head=lambda v: np.broadcast_to(word_logits, (len(v), vocab_size)).astype("float32"),
        label_head=lambda v: np.broadcast_to(label_logits, (len(v), len(label_logits))).astype("float32"),
        pair_loss=lambda a, b, ids=None: infonce_loss(a, b, 1.0, ids),
    )


def test_pair_task_is_infonce_between_its_two_outputs():
    # Unit vectors e0, e1 on both sides, scale 1: each row -log(e / (e + 1)) = log(1 + e^-1) = 0.31326.
    task = tasks.PairTask("text-image")
    loss = task.loss(stand_in(), {}, {"text": I2, "image": I2})
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert task.loss(stand_in(), {}, {"text": I2}) is None  # no images in the batch: no term


def test_audio_text_pairs_with_the_audios_own_transcript_and_audio_follows():
    # audio = e0, e1; the caption vectors are swapped (wrong), the transcript's are right: the
    # task must read audio_text. Right pairing: log(1 + e^-1), as above.
    audio = tf.Variable(I2)
    text = tf.Variable(I2[::-1].copy())
    transcript = tf.Variable(I2)
    task = tasks.PairTask("audio-text", audio_follows=True)
    with tf.GradientTape(persistent=True) as tape:
        loss = task.loss(stand_in(), {}, {"audio": audio * 1.0, "text": text * 1.0, "audio_text": transcript * 1.0})
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-1)), rel=1e-6)
    assert tape.gradient(loss, transcript) is None  # audio follows: the text side is held
    assert float(tf.reduce_sum(tf.abs(tape.gradient(loss, audio)))) > 0


def test_word_task_by_hand():
    # vocabulary 4 (0 padding, 1 OOV); the caption holds word 2 → targets [0, 0, 1, 0].
    # Logits [2, 0, 0, -2]: sigmoid cross-entropies log(1+e^2), log 2, log(1+e^0)=log 2, log(1+e^-2).
    expected = (math.log(1 + math.e**2) + 2 * math.log(2) + math.log(1 + math.e**-2)) / 4  # 0.91002
    model = stand_in(word_logits=np.array([2.0, 0.0, 0.0, -2.0]))
    x = {"text": np.array([[2, 0, 0]])}
    task = tasks.WordTask("words", weight=0.5)
    assert float(task.loss(model, x, {"image": np.ones((1, 2), "float32")})) == pytest.approx(0.5 * expected, rel=1e-5)
    assert task.loss(model, {}, {"image": np.ones((1, 2), "float32")}) is None  # no caption words


def test_label_task_by_hand():
    # 3 classes, zero logits: cross-entropy log 3 per labelled row; the row labelled -1 is left
    # out. Text and image each give a term: weight · 2 · log 3 = 0.25 · 2.19722 = 0.54931.
    model = stand_in(label_logits=np.zeros(3))
    x = {"label": np.array([0, -1])}
    y = {"text": I2, "image": I2}
    assert float(tasks.LabelTask("labels", 0.25).loss(model, x, y)) == pytest.approx(0.25 * 2 * math.log(3), rel=1e-6)


def test_ctc_task_by_hand():
    # One frame, two symbols (blank 0, word 1), zero logits: p(word) = 1/2, loss -log(1/2) = log 2
    # per word of the one-word transcript.
    y = {"audio_ctc_logits": np.zeros((1, 1, 2), "float32")}
    loss = tasks.CtcTask("ctc", 2.0).loss(None, {"audio_text": np.array([[1, 0]])}, y)
    assert float(loss) == pytest.approx(2 * math.log(2), rel=1e-5)


def test_frame_word_task_by_hand():
    # 4 frames, 2 steps: steps read frames 1 and 3 (centres (0.5, 1.5) · 4 / 2). Zero logits over
    # 5 words: log 5 per step whatever the label; the untimed item is left out.
    labels = np.array([[0, 3, 0, 2], [1, 1, 1, 1]])
    y = {"audio_frame_logits": np.zeros((2, 2, 5), "float32")}
    x = {"audio_words": labels, "audio_words_timed": np.array([1.0, 0.0])}
    assert float(tasks.FrameWordTask("frame_words", 1.0).loss(None, x, y)) == pytest.approx(math.log(5), rel=1e-6)


def test_tasks_for_a_config_pairs_first_then_the_weighted_heads():
    config = load_config("default")
    found = tasks.tasks_for(config, label_count=0)
    assert [t.name for t in found if not t.auxiliary] == list(config.train.pairs)
    aux = {t.name: t.weight for t in found if t.auxiliary}
    assert aux.get("frame_words") == config.train.aux_frame_words
    assert "labels" not in aux  # no classes, no label head
