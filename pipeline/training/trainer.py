"""Trains a CrossModalModel from an ExperimentConfig and writes a run folder.

``train`` runs four steps, each usable on its own: ``prepare_data`` (manifest, selection,
vocabulary, GloVe), ``build_model`` (towers, cached image features, warm start),
``run_phases`` (the training phases with their callbacks) and ``write_run`` (weights, run.json,
dev and test reports). Exporting for TF Serving is not part of training: ``pipeline export``.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf

from pipeline import __version__, paths
from pipeline.config import CONFIG_FORMAT_VERSION, ExperimentConfig, to_toml
from pipeline.data.adapters import load_dataset
from pipeline.data.input_pipeline import make_dataset, select_items
from pipeline.data.manifest import Manifest
from pipeline.data.named_datasets import resolve_data_path
from pipeline.evaluation.embedder import SplitRequest
from pipeline.evaluation.evaluator import evaluate_embeddings, write_reports
from pipeline.io_utils import atomic_path, write_text_atomic
from pipeline.modalities.names import AUDIO, IMAGE
from pipeline.models.retrieval_model import CrossModalModel, dummy_inputs, uses_cached_image_features
from pipeline.preprocessing import text_ops
from pipeline.records import EvaluationReport, RunData, RunRecord
from pipeline.run_artifacts import RUN_FORMAT_VERSION, IncompatibleRun, input_config_for, point_latest
from pipeline.training import callbacks as cb
from pipeline.training.optimizers import GlobalClipAdamW

log = logging.getLogger(__name__)


class TrainingError(ValueError):
    """A training run that cannot start; the message says why."""


@dataclasses.dataclass(frozen=True)
class PreparedData:
    """What ``prepare_data`` reads and derives from the dataset before a model exists."""

    root: Path
    manifest: Manifest
    train_items: object  # input_pipeline.Selection
    dev_items: object
    vectorizer: object
    labels: list[str]
    embedding_matrix: object  # [vocabulary, 50] GloVe rows, or None
    input_config: object  # input_pipeline.InputConfig
    # What training batches' and dev scoring's captions become: ``vectorizer``'s ids, or a
    # frozen text backbone's cached features (``with_cached_text_features``).
    batch_text: object = None

    @property
    def batch_vectorizer(self):
        return self.batch_text if self.batch_text is not None else self.vectorizer

    @property
    def vocabulary(self) -> list[str]:
        return self.vectorizer.get_vocabulary()


@dataclasses.dataclass
class TrainResult:
    run_dir: Path
    model: CrossModalModel
    vectorizer: object
    manifest: Manifest
    history: dict
    seconds: float
    image_features: tuple | None
    chief: bool = True  # False: a multi-worker run's other worker, which wrote no run folder


MULTI_WORKER = ("multi_worker", "multiworker")


def make_strategy(name: str) -> tf.distribute.Strategy:
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name in MULTI_WORKER:
        if not os.environ.get("TF_CONFIG"):
            raise TrainingError(
                "strategy=multi_worker needs TF_CONFIG in each worker's environment: the cluster's addresses "
                'and this worker\'s place, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                '"task": {"type": "worker", "index": 0}} (docs/scale.md)'
            )
        return tf.distribute.MultiWorkerMirroredStrategy()
    return tf.distribute.get_strategy()


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's place in a multi-worker run: the chief writes the run folder; any other
    worker writes its checkpoints and backups beside it, in a hidden folder of its own."""

    chief: bool = True
    index: int = 0

    @classmethod
    def of(cls, strategy) -> WorkerRole:
        resolver = getattr(strategy, "cluster_resolver", None)
        if resolver is None or not resolver.task_type:
            return cls()
        task_type, task_id = resolver.task_type, int(resolver.task_id or 0)
        has_chief = "chief" in resolver.cluster_spec().as_dict()
        chief = task_type == "chief" or (task_type == "worker" and task_id == 0 and not has_chief)
        return cls(chief, task_id)

    def folder(self, run_dir: Path) -> Path:
        return run_dir if self.chief else run_dir.with_name(f".{run_dir.name}.worker-{self.index}")


def weights_digest(model) -> str:
    """sha1 over a model's weights, in order: equal digests, equal weights."""
    import hashlib

    digest = hashlib.sha1()
    for weight in model.get_weights():
        digest.update(weight.tobytes())
    return digest.hexdigest()


def new_run_dir(config: ExperimentConfig) -> Path:
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return paths.runs_dir() / f"{config.name}-{stamp}"


def check_modalities(manifest: Manifest, config: ExperimentConfig) -> None:
    available = manifest.modalities()
    missing = [m for m in config.data.modalities if m not in available]
    if missing:
        raise TrainingError(
            f"{manifest.root}: the config '{config.name}' trains on {', '.join(config.data.modalities)}, but the dataset has no "
            f"{', '.join(missing)} (it has {', '.join(available) or 'nothing'}). Use --set data.modalities={','.join(m for m in config.data.modalities if m in available)} "
            f"and drop the train.pairs that need {', '.join(missing)}, or pick a dataset that has them."
        )


def training_selection(config: ExperimentConfig, manifest: Manifest):
    """The training items and the dev items scored each epoch (at most train.dev_items)."""
    modalities = config.data.modalities
    train_items = select_items(manifest, config.data.train_split, modalities)
    dev_items = select_items(manifest, config.data.dev_split, modalities)
    if len(dev_items.frame) > config.train.dev_items:
        dev_items = dataclasses.replace(dev_items, frame=dev_items.frame.iloc[: config.train.dev_items])
    return train_items, dev_items


def model_summary(model: CrossModalModel) -> str:
    """``summary()`` of every tower and of the fusion network, layer by layer (the run folder's
    model_summary.txt): the Conv1D, LSTM and Dense layers each model is made of."""
    lines: list[str] = []
    parts = ["text_encoder", "image_encoder", "pooled_audio_encoder", "audio_encoder", "fusion"]
    for name in parts:
        part = getattr(model, name, None)
        if part is not None:
            part.summary(line_length=160, expand_nested=True, print_fn=lambda line, *args, **kwargs: lines.append(line))
            # The table names a layer's own type only: not the LSTM inside a Bidirectional, nor
            # the Dense layers inside the fusion layer.
            for layer in part._flatten_layers(include_self=False):
                if isinstance(layer, keras.layers.Bidirectional):
                    inner = layer.forward_layer
                    lines.append(
                        f" {layer.name}: Bidirectional({type(inner).__name__}({inner.units})), outputs concatenated"
                    )
                elif not isinstance(layer, keras.Model) and layer._layers:
                    inside = [
                        f"{sub.name} ({type(sub).__name__}{f' {sub.units}' if hasattr(sub, 'units') else ''})"
                        for sub in layer._layers
                    ]
                    lines.append(f" {layer.name} ({type(layer).__name__}) holds: {', '.join(inside)}")
            lines.append("")
    return "\n".join(lines)


def _write_run_files(run_dir: Path, config: ExperimentConfig, vectorizer, labels: list[str]) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir / "config.toml", f"format_version = {CONFIG_FORMAT_VERSION}\n" + to_toml(config))
    text_ops.save_vocabulary(vectorizer, run_dir / "vocab.txt")
    if labels:
        write_text_atomic(run_dir / "labels.txt", "\n".join(labels) + "\n")


@dataclasses.dataclass(frozen=True)
class TrainingPhase:
    """Epochs [first_epoch, last_epoch) trained on ``modalities`` in batches of ``batch_size``;
    ``freeze_text_image`` holds the text and image towers fixed (the audio phase)."""

    name: str
    first_epoch: int
    last_epoch: int
    modalities: tuple[str, ...]
    batch_size: int
    freeze_text_image: bool = False

    @property
    def description(self) -> str:
        frozen = " (text and image towers frozen)" if self.freeze_text_image else ""
        return ", ".join(self.modalities) + frozen


def training_phases(config: ExperimentConfig, modalities) -> list[TrainingPhase]:
    """One phase over every modality, or, with ``train.audio_epochs`` = N > 0 and audio in the
    data, text and images first and then N epochs of audio against the frozen text and image
    towers (audio costs most of an epoch; text and images need many more epochs than audio),
    in batches of ``train.audio_batch_size`` when it is set."""
    t = config.train
    epochs, audio_epochs = t.epochs, t.audio_epochs
    if audio_epochs <= 0 or AUDIO not in modalities:
        return [TrainingPhase("all", 0, epochs, tuple(modalities), t.batch_size)]
    others = tuple(m for m in modalities if m != AUDIO)
    return [
        TrainingPhase("text-image", 0, epochs - audio_epochs, others, t.batch_size),
        TrainingPhase(
            AUDIO, epochs - audio_epochs, epochs, tuple(modalities), t.audio_phase_batch_size, freeze_text_image=True
        ),
    ]


def audio_parts(model) -> list:
    """The audio encoder's own layers and its word heads (not the transcribing wrapper, which
    also holds the text tower)."""
    names = (
        "pooled_audio_encoder" if hasattr(model, "pooled_audio_encoder") else "audio_encoder",
        "frame_word_head",
        "ctc_head",
    )
    return [getattr(model, name) for name in names if hasattr(model, name)]


def set_phase_trainable(model, phase: TrainingPhase | None) -> None:
    """What a phase trains; takes effect at the next compile. The audio phase freezes the text
    and image towers (the image head, used alone with cached features, is part of the image
    encoder); the text-image phase leaves the audio encoder and its heads out, as no loss
    reaches them. ``None``: everything trainable again."""
    for part in audio_parts(model):
        part.trainable = phase is None or AUDIO in phase.modalities
    for name in ("text_encoder", "image_encoder"):  # a model has those of its modalities
        if hasattr(model, name):
            getattr(model, name).trainable = phase is None or not phase.freeze_text_image


def save_weights_atomic(model, path: Path) -> None:
    """``model.save_weights`` under a temporary name (Keras wants the .weights.h5 suffix), then renamed."""
    with atomic_path(path) as tmp:
        model.save_weights(str(tmp.with_suffix(".weights.h5")))
        tmp.with_suffix(".weights.h5").rename(tmp)


def prepare_data(config: ExperimentConfig) -> PreparedData:
    """Step 1: the dataset (built first where it is a named one), its training and dev items,
    the vocabulary of the training captions, the label list and GloVe rows."""
    data_root = resolve_data_path(config.data.path)
    manifest = load_dataset(data_root, config.data.format or None)
    check_modalities(manifest, config)
    modalities = config.data.modalities
    log.info("[1/5] data: %s (%s), training on %s", data_root, manifest.format, ", ".join(modalities))
    train_items, dev_items = training_selection(config, manifest)
    captions = [t for texts in train_items.frame["text"] for t in texts] if "text" in modalities else ["empty"]
    vectorizer = text_ops.text_vectorizer(config.text, captions)
    vocabulary = vectorizer.get_vocabulary()
    labels = sorted({v for v in train_items.frame["label"] if v})
    timed = any(any(clips) for clips in train_items.frame.get("audio_clip_words", []))
    if config.train.aux_frame_words > 0 and AUDIO in modalities and not timed:
        raise TrainingError(
            f"train.aux_frame_words needs word timings of the training audio (manifest column audio_words), and "
            f"{data_root}/{config.data.train_split} has none. Set train.aux_frame_words=0, or add the column."
        )
    embedding_matrix = None
    if config.text.glove and config.text.kind != "minilm":  # MiniLM brings its own embeddings
        embedding_matrix, coverage = text_ops.glove_matrix(vocabulary, seed=config.seed)
        log.info("GloVe initialisation: %.1f%% of the vocabulary found", 100 * coverage)
    log.info(
        "train: %d items, dev: %d items, vocabulary: %d words",
        len(train_items.frame),
        len(dev_items.frame),
        len(vocabulary),
    )
    return PreparedData(
        data_root,
        manifest,
        train_items,
        dev_items,
        vectorizer,
        labels,
        embedding_matrix,
        input_config_for(config),
    )


def build_model(config: ExperimentConfig, data: PreparedData, strategy) -> tuple[CrossModalModel, tuple | None]:
    """Step 2: the model, built; with a frozen cached backbone, the image features it reads
    (computed once, cached on disk); the audio encoder warm-started where the config says."""
    with strategy.scope():
        model = CrossModalModel(
            config,
            vocab_size=len(data.vocabulary),
            audio_frames=data.input_config.audio.frames,
            image_feature_dim=None,
            label_count=len(data.labels),
            embedding_matrix=data.embedding_matrix,
        )
    image_features = None
    if uses_cached_image_features(config):
        from pipeline.preprocessing.image_ops import view_names
        from pipeline.training.feature_cache import backbone_features

        backbone = model.image_encoder.get_layer("image_backbone")
        images = list(data.train_items.frame[IMAGE]) + list(data.dev_items.frame[IMAGE])
        log.info("[2/5] image features from the frozen %s (cached on disk)", config.image.backbone)
        image_features = backbone_features(
            backbone, config.image, data.input_config, data.manifest, images, views=view_names(config.image)
        )
        model.image_feature_dim = image_features.dim
    model(dummy_inputs(model))
    if config.audio.init_from and AUDIO in config.data.modalities:
        from pipeline.training.warm_start import WarmStartError, warm_start_audio_encoder

        try:
            warm_start_audio_encoder(model, config.audio.init_from)
        except (WarmStartError, IncompatibleRun) as error:
            raise TrainingError(str(error)) from None
    return model, image_features


def with_cached_text_features(config: ExperimentConfig, data: PreparedData, model: CrossModalModel) -> PreparedData:
    """Step 2b: with a frozen pretrained text backbone (``text.kind = "minilm"``), its features
    of every training and dev caption, computed once and cached on disk; training batches and
    dev scoring then feed them to the text head."""
    if config.text.kind != "minilm" or "text" not in config.data.modalities:
        return data
    from pipeline.models.minilm import weights_id
    from pipeline.training.text_feature_cache import caption_features

    captions = [t for frame in (data.train_items.frame, data.dev_items.frame) for texts in frame["text"] for t in texts]
    log.info("[2/5] caption features from the frozen MiniLM (cached on disk)")
    backbone = model.text_encoder.get_layer("text_backbone")
    cached = caption_features(backbone, data.vectorizer, captions, weights_id())
    return dataclasses.replace(data, batch_text=cached)


def dev_request(config: ExperimentConfig, data: PreparedData, image_features) -> SplitRequest:
    """The dev items scored each epoch and in the run's report."""
    return SplitRequest(
        vectorizer=data.batch_vectorizer,
        input_config=data.input_config,
        manifest=data.manifest,
        split=config.data.dev_split,
        modalities=config.data.modalities,
        max_items=config.train.dev_items,
        image_features=image_features,
    )


def run_phases(
    model: CrossModalModel,
    config: ExperimentConfig,
    data: PreparedData,
    run_dir: Path,
    strategy,
    image_features=None,
    extra_callbacks=(),
    verbose: int = 0,
) -> dict:
    """Step 3: trains every phase (``training_phases``), keeping the epoch with the best dev
    rsum in checkpoints/best.weights.h5; a phase finished before an interruption is loaded, not
    trained again. Returns the Keras history of all epochs."""
    modalities = config.data.modalities
    phases = training_phases(config, modalities)
    best_path = run_dir / "checkpoints" / "best.weights.h5"
    best_path.parent.mkdir(parents=True, exist_ok=True)
    dev_retrieval = cb.DevRetrieval(dev_request(config, data, image_features))
    callbacks = [
        dev_retrieval,
        cb.LearningRateLogger(),
        keras.callbacks.ModelCheckpoint(
            str(best_path), monitor="dev_rsum", mode="max", save_best_only=True, save_weights_only=True
        ),
        keras.callbacks.EarlyStopping(monitor="dev_rsum", mode="max", patience=config.train.early_stopping_patience),
        keras.callbacks.CSVLogger(str(run_dir / "history.csv"), append=True),
        keras.callbacks.TensorBoard(log_dir=str(run_dir / "logs"), histogram_freq=0, write_graph=False),
        cb.EpochLine(config.train.epochs, dev_retrieval),
    ]
    log.info(
        "[3/5] training %s for up to %d epochs (TensorBoard: tensorboard --logdir %s)",
        config.name,
        config.train.epochs,
        run_dir / "logs",
    )
    history: dict = {}
    for phase in phases:
        done_path = run_dir / "checkpoints" / f"{phase.name}.weights.h5"
        if len(phases) > 1 and done_path.exists():  # finished before an interruption
            model.load_weights(str(done_path))
            log.info("phase '%s' was finished before: its weights are loaded from %s", phase.name, done_path)
            continue
        phase_steps = max(len(data.train_items.frame) // phase.batch_size, 1)
        if len(phases) > 1:
            log.info(
                "phase '%s': epochs %d to %d, training %s, %d steps an epoch in batches of %d",
                phase.name,
                phase.first_epoch + 1,
                phase.last_epoch,
                phase.description,
                phase_steps,
                phase.batch_size,
            )
        else:
            log.info("%d steps an epoch in batches of %d", phase_steps, phase.batch_size)
        phase_input = dataclasses.replace(data.input_config, modalities=phase.modalities, batch_size=phase.batch_size)
        frame_words = config.train.aux_frame_words > 0 and AUDIO in phase.modalities
        train_ds = make_dataset(
            data.manifest,
            config.data.train_split,
            phase_input,
            training=True,
            vectorizer=data.batch_vectorizer,
            selection=data.train_items,
            by_item=True,
            image_features=image_features,
            label_vocabulary=data.labels,
            keep_groups=config.train.keep_contrast_groups,
            word_vocabulary=data.vocabulary if frame_words else None,
        )
        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            # Each worker reads the whole input and keeps its slice of every global batch.
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
            train_ds = train_ds.with_options(options)
        set_phase_trainable(model, phase)
        if phase.freeze_text_image:
            # The sharp temperature text and images ended at gives an untrained audio encoder
            # noisy gradients; from the starting one, audio learns as text and images did.
            model.reset_temperature()
        with strategy.scope():
            # Each phase has its own cosine schedule: the audio phase starts from the full
            # learning rate, not from the tail the text-image phase left.
            schedule = keras.optimizers.schedules.CosineDecay(
                config.train.learning_rate, decay_steps=phase_steps * (phase.last_epoch - phase.first_epoch), alpha=0.05
            )
            # XLA off: with the recurrent layers it makes a CPU step many times slower.
            model.compile(
                optimizer=GlobalClipAdamW(schedule, weight_decay=config.train.weight_decay, clipnorm=5.0),
                jit_compile=False,
            )
        backup = keras.callbacks.BackupAndRestore(str(run_dir / "backup" / phase.name))
        # One iterator for the whole phase: given a dataset of one pass, Keras makes a new
        # iterator every epoch, and tearing the old one down waits on tf.data's background
        # threads, idle seconds at the end of many epochs. Batches are made per pass (the
        # remainder dropped), so one pass is exactly ``phase_steps`` steps and epochs stay whole.
        phase_history = model.fit(
            train_ds.repeat(),
            steps_per_epoch=phase_steps,
            initial_epoch=phase.first_epoch,
            epochs=phase.last_epoch,
            callbacks=[*callbacks, backup, *extra_callbacks],
            verbose=verbose,
        )
        for key, values in phase_history.history.items():
            history.setdefault(key, []).extend(values)
        if len(phases) > 1:
            if best_path.exists():  # the next phase starts from this phase's best epoch
                model.load_weights(str(best_path))
            save_weights_atomic(model, done_path)
    set_phase_trainable(model, None)
    if best_path.exists():
        model.load_weights(str(best_path))
    return history


def write_run(
    model: CrossModalModel,
    config: ExperimentConfig,
    data: PreparedData,
    run_dir: Path,
    history: dict,
    seconds: float,
    image_features=None,
    evaluate_test: bool = True,
) -> RunRecord:
    """Step 4: the selected weights, the embedding projector, run.json with the dev report of
    the selected epoch and, where the dataset has a test split, the test report."""
    save_weights_atomic(model, run_dir / "model.weights.h5")
    dev = dev_request(config, data, image_features)
    dev_embeddings = dataclasses.replace(dev, max_items=config.train.projector_items).embed(model)
    if "text" in dev_embeddings.vectors:
        cb.write_projector(run_dir / "logs", dev_embeddings.vectors["text"], dev_embeddings.captions)
    # The selected epoch's full report on the dev items it was selected on (train.dev_items at most).
    dev_report = evaluate_embeddings(dev.embed(model), with_curves=True, relevance=config.train.positives)
    dev_files = write_reports(
        dev_report,
        run_dir / "eval" / f"{config.data.dev_split}.json",
        f"{config.name}: {data.manifest.root.name} / {config.data.dev_split}",
    )
    record = RunRecord(
        run_format_version=RUN_FORMAT_VERSION,
        pipeline_version=__version__,
        created=datetime.datetime.now().isoformat(timespec="seconds"),
        config_name=config.name,
        data=RunData(
            root=str(data.root),
            format=data.manifest.format,
            train_items=len(data.train_items.frame),
            dev_items=len(data.dev_items.frame),
            skipped_train_rows=len(data.train_items.skipped),
        ),
        audio_frames=data.input_config.audio.frames,
        image_feature_dim=model.image_feature_dim,
        epochs_run=len(history.get("loss", [])),
        train_seconds=round(seconds, 1),
        dev=EvaluationReport.from_dict(dev_report),
        dev_report={k: str(v) for k, v in dev_files.items()},
    )
    record.write(run_dir)
    log.info("[3/5] training done in %.0f s (dev rsum %.1f); run folder %s", seconds, record.dev.rsum, run_dir)
    if evaluate_test and config.data.test_split in set(data.manifest.frame["split"]):
        log.info("[4/5] evaluating on the %s split", config.data.test_split)
        # From pixels, as `evaluate` and search see them: the feature cache holds training and dev images only.
        # Words through the whole text encoder too: the text cache holds training and dev captions only.
        test = dataclasses.replace(
            dev, vectorizer=data.vectorizer, split=config.data.test_split, max_items=None, image_features=None
        )
        embeddings = test.embed(model)
        report = evaluate_embeddings(embeddings, with_curves=True, relevance=config.train.positives)
        test_files = write_reports(
            report,
            run_dir / "eval" / f"{config.data.test_split}.json",
            f"{config.name}: {data.manifest.root.name} / {config.data.test_split}",
        )
        record = dataclasses.replace(
            record, test=EvaluationReport.from_dict(report), test_report={k: str(v) for k, v in test_files.items()}
        )
        record.write(run_dir)
    return record


def train(
    config: ExperimentConfig,
    run_dir: Path | None = None,
    extra_callbacks=(),
    evaluate_test: bool = True,
    verbose: int | None = None,
    mark_latest: bool = True,
) -> TrainResult:
    """Trains, selects the epoch with the best dev rsum, saves the run and evaluates it.
    ``mark_latest=False`` leaves saved_models/runs/latest alone (tuning trials). ``verbose``:
    Keras's progress output (None: its progress bar on a terminal, nothing otherwise); every
    epoch also logs one line (``callbacks.EpochLine``)."""
    start = time.time()
    if verbose is None:
        verbose = 1 if sys.stdout.isatty() else 0
    if config.strategy in MULTI_WORKER and run_dir is None:
        raise TrainingError(
            "strategy=multi_worker needs --run-dir, the same on every worker: the chief writes the run there, "
            "and a restarted worker resumes from its backup beside it"
        )
    # Before any other TensorFlow work: collective ops are configured when the strategy starts.
    strategy = make_strategy(config.strategy)
    role = WorkerRole.of(strategy)
    keras.utils.set_random_seed(config.seed)
    data = prepare_data(config)
    model, image_features = build_model(config, data, strategy)
    data = with_cached_text_features(config, data, model)
    run_dir = Path(run_dir) if run_dir else new_run_dir(config)
    work_dir = role.folder(run_dir)
    _write_run_files(work_dir, config, data.vectorizer, data.labels)
    write_text_atomic(work_dir / "model_summary.txt", model_summary(model))
    history = run_phases(model, config, data, work_dir, strategy, image_features, extra_callbacks, verbose)
    seconds = time.time() - start
    if config.strategy in MULTI_WORKER:
        # The workers' copies must agree; the digest lets anyone check that they do.
        log.info("worker %d: final weights sha1 %s", role.index, weights_digest(model))
    # Every worker writes (the evaluation runs collective ops each worker must join); the
    # other workers' copies are then removed.
    write_run(model, config, data, work_dir, history, seconds, image_features, evaluate_test)
    if not role.chief:
        shutil.rmtree(work_dir, ignore_errors=True)
        log.info("worker %d finished in %.0f s; the chief wrote the run folder %s", role.index, seconds, run_dir)
        return TrainResult(run_dir, model, data.vectorizer, data.manifest, history, seconds, image_features, False)
    if mark_latest:
        point_latest(run_dir)
    return TrainResult(run_dir, model, data.vectorizer, data.manifest, history, seconds, image_features)
