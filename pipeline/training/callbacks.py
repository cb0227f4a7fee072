"""Training callbacks: dev retrieval metrics per epoch, learning rate, the embedding projector."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import keras
import numpy as np

from pipeline.evaluation.embedder import embed_prepared
from pipeline.evaluation.evaluator import evaluate_embeddings

log = logging.getLogger(__name__)


def metric_name(direction: str, key: str) -> str:
    return f"dev_{direction.replace('->', '_to_').replace(' ', '_')}_{key.replace('@', '')}"


class DevRetrieval(keras.callbacks.Callback):
    """Adds dev retrieval metrics to the epoch logs (``dev_rsum``, ``dev_text_to_image_R1``, ...),
    so TensorBoard, checkpoints and early stopping see them."""

    def __init__(self, request):
        super().__init__()
        self.request = request  # evaluation.embedder.SplitRequest
        self.prepared = None
        self.last_report: dict = {}

    def on_epoch_end(self, epoch, logs=None):
        start = time.time()
        if self.prepared is None:  # decode the dev inputs once; later epochs only re-run the encoders
            self.prepared = self.request.prepare(self.model)
        report = evaluate_embeddings(
            embed_prepared(self.model, self.request.vectorizer, self.prepared),
            relevance=self.model.experiment.train.positives,
        )
        self.last_report = report
        if logs is not None:
            logs["dev_rsum"] = report["rsum"]
            for direction, values in report.items():
                if isinstance(values, dict) and "R@1" in values:
                    for key in ("R@1", "R@5", "R@10"):
                        logs[metric_name(direction, key)] = values[key]
                elif isinstance(values, dict) and "accuracy" in values:
                    logs[metric_name(direction, "accuracy")] = values["accuracy"]
        parts = [
            f"{d} R@1 {v['R@1']:.1f}"
            for d, v in report.items()
            if isinstance(v, dict) and "R@1" in v and "subset" not in d
        ]
        self.summary = f"dev rsum {report['rsum']:.1f} | " + " | ".join(parts[:4])
        log.debug("epoch %d dev: %s (%.0f s)", epoch + 1, self.summary, time.time() - start)


class EpochLine(keras.callbacks.Callback):
    """One log line per epoch: its number, the training losses, the dev figures and the time.

    What a log file gets instead of Keras's progress bar, which redraws itself with carriage
    returns into one enormous line when the output is not a terminal.

    Args:
        total_epochs: the last epoch of the run (``train.epochs``).
        dev: the ``DevRetrieval`` callback whose summary the line carries.
    """

    def __init__(self, total_epochs: int, dev: DevRetrieval):
        super().__init__()
        self.total_epochs, self.dev = total_epochs, dev
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        losses = [f"{k} {logs[k]:.3f}" for k in sorted(logs) if k.startswith("loss") and not k.startswith("val")]
        rate = f" | lr {logs['learning_rate']:.2e}" if "learning_rate" in logs else ""
        log.info(
            "epoch %d/%d: %s | %s%s (%.0f s)",
            epoch + 1,
            self.total_epochs,
            ", ".join(losses),
            getattr(self.dev, "summary", "no dev figures"),
            rate,
            time.time() - self.started,
        )


class LearningRateLogger(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))


class StopAfterEpochs(keras.callbacks.Callback):
    """Raises KeyboardInterrupt after ``epochs`` epochs: how tests simulate an interruption."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.epochs:
            raise KeyboardInterrupt(f"stopped after epoch {epoch + 1}")


def write_projector(log_dir: Path, vectors: np.ndarray, labels: list[str], name: str = "dev_items") -> Path:
    """Embeddings + metadata for TensorBoard's projector tab."""
    import tensorflow as tf
    from tensorboard.plugins import projector

    folder = Path(log_dir) / "projector"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metadata.tsv").write_text(
        "\n".join(label.replace("\t", " ").replace("\n", " ") or "(no caption)" for label in labels) + "\n"
    )
    variable = tf.Variable(vectors, name=name)
    checkpoint = tf.train.Checkpoint(embedding=variable)
    checkpoint.save(str(folder / "embedding.ckpt"))
    config = projector.ProjectorConfig()
    embedding = config.embeddings.add()
    embedding.tensor_name = "embedding/.ATTRIBUTES/VARIABLE_VALUE"
    embedding.metadata_path = "metadata.tsv"
    projector.visualize_embeddings(str(folder), config)
    return folder
