"""make bench-audio: audio on real recordings, in three parts (needs ../shared).

1. ``digits``: spoken digits (FSDD), handwritten digits (MNIST) and digit words, split by
   speaker (``python -m pipeline data digits``). mAP and class-level R@1 for every direction
   on the held-out speaker; ``pipeline evaluate`` on a folder of that speaker's raw FSDD
   recordings; then the item fusion strategies (``average``, ``weighted``, ``concat_dense``,
   and early fusion of the raw inputs) for text→item retrieval and classification.
   ``digits-speakers``: the same three-way training with each FSDD speaker held out in turn
   (leave one speaker out): the unseen-speaker figures for every speaker, and their mean.
2. ``esc50``: environmental sounds. text→sound mAP with the category names and with short
   descriptions as queries; sound→text as retrieval-based classification; against chance;
   the audio encoder from a random start and started from the spoken-digits run's.
3. ``spoken-flickr8k``: Flickr8k captions spoken by eSpeak NG (``python -m pipeline data
   spoken-flickr8k``); speech→image on the dev 1K protocol (all 5,000 spoken dev captions
   over the 1,000 dev photos) next to text→image from the same run.

    python -m benchmarks.bench_audio [--parts digits,digits-speakers,esc50,spoken-flickr8k] [--epochs N]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.results_io import RESULTS_DIR, machine, write_results
from pipeline import paths
from pipeline.cli import main as pipeline_main
from pipeline.cli import setup_logging
from pipeline.config import load_config
from pipeline.data.adapters.esc50_adapter import DESCRIPTIONS
from pipeline.data.adapters.fsdd_adapter import DIGIT_WORDS
from pipeline.data.spoken_digits import (
    TEST_SPEAKER,
    TTS_VOICES,
    build_spoken_digits,
    dataset_version,
    read_recordings,
    speaker_folder,
)
from pipeline.data.spoken_digits import VERSION as DIGITS_VERSION
from pipeline.evaluation.embedder import embed_split
from pipeline.evaluation.retrieval_metrics import (
    chance_map,
    class_retrieval_report,
    nearest_class_accuracy,
    retrieval_report,
)
from pipeline.run_artifacts import input_config_for
from pipeline.training.early_fusion_trainer import embed_items, text_vectors, train_early_fusion
from pipeline.training.trainer import train

DIGIT_DIRECTIONS = ("audio->text", "text->audio", "audio->image", "image->audio", "image->text", "text->image")
FUSIONS = ("average", "weighted", "concat_dense")
PARTS = ("digits", "digits-speakers", "esc50", "spoken-flickr8k")
SPEAKER_DIRECTIONS = ("audio->text", "text->audio", "audio->image", "image->audio")


def _command(config: str, overrides: list[str]) -> str:
    return f"python -m pipeline train --config {config} " + " ".join(f"--set {o}" for o in overrides)


def _train(config_name: str, overrides: list[str]):
    start = time.time()
    config = load_config(config_name, overrides)
    result = train(config, verbose=0)
    return config, result, round(time.time() - start)


def digits_part(epochs: int | None) -> dict:
    extra = [f"train.epochs={epochs}"] if epochs else []
    fusion_rows, three_way, unseen = [], None, None
    words = [str(d) for d in range(10)]
    for strategy in FUSIONS:
        overrides = [f"fusion.strategy={strategy}", f"name=digits-{strategy}", *extra]
        config, result, seconds = _train("digits", overrides)
        info = json.loads((result.run_dir / "run.json").read_text())
        emb = embed_split(
            result.model, result.vectorizer, input_config_for(config), result.manifest, config.data.test_split
        )
        word_of = dict(zip(emb.labels[emb.owners["text"]], emb.captions))
        class_words = [word_of[d] for d in words]
        word_vectors = text_vectors(result.model, result.vectorizer, class_words)
        row = {
            "strategy": strategy,
            "command": _command("digits", overrides),
            "seconds": seconds,
            "run_dir": str(result.run_dir),
            "epochs_run": info["epochs_run"],
            "text->item": class_retrieval_report(word_vectors, words, emb.vectors["item"], emb.labels),
        }
        for modality in ("item", "audio", "image"):
            labels = emb.labels[emb.owners[modality]]
            row[f"{modality} accuracy"] = nearest_class_accuracy(emb.vectors[modality], labels, word_vectors, words)
        fusion_rows.append(row)
        if strategy == "weighted":
            built = json.loads((Path(result.manifest.root) / "dataset.json").read_text())
            three_way = {
                "run_dir": str(result.run_dir),
                "command": row["command"],
                "test": {d: info["test"][d] for d in DIGIT_DIRECTIONS},
                "synthetic_voices": built.get("synthetic_voices", 0),
            }
            unseen = _evaluate_unseen_speaker(result.run_dir)
    start = time.time()
    config = load_config("digits", ["name=digits-early", *extra])
    early = train_early_fusion(config, verbose=2)
    items, item_labels = embed_items(early.model, early.manifest, early.input_config, config.data.test_split)
    word_vectors = text_vectors(early.model, early.vectorizer, list(DIGIT_WORDS))
    fusion_rows.append(
        {
            "strategy": "early (raw inputs)",
            "command": "python -m benchmarks.bench_audio --parts digits (train_early_fusion)",
            "seconds": round(time.time() - start),
            "epochs_run": early.best_epoch,
            "text->item": class_retrieval_report(word_vectors, words, items, item_labels),
            "item accuracy": nearest_class_accuracy(items, item_labels, word_vectors, words),
        }
    )
    chance = {"text->item mAP": chance_map(item_labels, words), "accuracy": 10.0}
    return {"three_way": three_way, "unseen_speaker": unseen, "fusion": fusion_rows, "chance": chance}


def _evaluate_unseen_speaker(run_dir: Path) -> dict:
    """``pipeline evaluate`` on a folder of the test speaker's raw FSDD recordings."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = speaker_folder(paths.shared_dataset("fsdd"), TEST_SPEAKER, Path(tmp) / TEST_SPEAKER)
        report_path = Path(tmp) / "report.json"
        argv = ["evaluate", "--run", str(run_dir), "--data", str(folder), "--split", "all", "--json", str(report_path)]
        if pipeline_main(argv) != 0:
            raise RuntimeError(f"pipeline {' '.join(argv)} failed")
        report = json.loads(report_path.read_text())
    return {
        "speaker": TEST_SPEAKER,
        "command": f"python -m pipeline evaluate --run RUN --data <folder of {TEST_SPEAKER}'s FSDD recordings> --split all",
        "audio->text": report["audio->text"],
        "text->audio": report["text->audio"],
    }


def speakers_part(epochs: int | None) -> dict:
    """Leave one speaker out: the digits config trained once per FSDD speaker, that speaker
    being the test split (its dataset built as data/digits-heldout-<speaker>)."""
    fsdd, mnist = paths.shared_dataset("fsdd"), paths.shared_dataset("mnist") / "mnist.npz"
    rows = []
    for speaker in sorted(set(read_recordings(fsdd)["speaker"])):
        out = paths.data_dir() / f"digits-heldout-{speaker}"
        if dataset_version(out) != DIGITS_VERSION:
            build_spoken_digits(out, fsdd, mnist, test_speaker=speaker, tts_voices=TTS_VOICES)
        overrides = [
            f"data.path={out}",
            f"name=digits-heldout-{speaker}",
            *([f"train.epochs={epochs}"] if epochs else []),
        ]
        _, result, seconds = _train("digits", overrides)
        info = json.loads((result.run_dir / "run.json").read_text())
        rows.append(
            {
                "speaker": speaker,
                "command": _command("digits", overrides),
                "seconds": seconds,
                "run_dir": str(result.run_dir),
                "test": {d: info["test"][d] for d in SPEAKER_DIRECTIONS},
            }
        )
    mean = {d: {k: float(np.mean([r["test"][d][k] for r in rows])) for k in ("mAP", "R@1")} for d in SPEAKER_DIRECTIONS}
    return {"rows": rows, "mean": mean, "synthetic_voices": TTS_VOICES}


def esc50_part(epochs: int | None, pretrained_run: str | None) -> dict:
    extra = [f"train.epochs={epochs}"] if epochs else []
    rows = []
    starts = [("random start", [])]
    if pretrained_run:
        starts.append(("from the spoken-digits audio encoder", [f"audio.init_from={pretrained_run}"]))
    for start_name, start_overrides in starts:
        overrides = [f"name=esc50-{'scratch' if not start_overrides else 'digits-init'}", *start_overrides, *extra]
        config, result, seconds = _train("esc50", overrides)
        info = json.loads((result.run_dir / "run.json").read_text())
        emb = embed_split(
            result.model, result.vectorizer, input_config_for(config), result.manifest, config.data.test_split
        )
        sounds, labels = emb.vectors["audio"], emb.labels[emb.owners["audio"]]
        categories = sorted(DESCRIPTIONS)
        row = {
            "start": start_name,
            "command": _command("esc50", overrides),
            "seconds": seconds,
            "epochs_run": info["epochs_run"],
            "run_dir": str(result.run_dir),
            "test clips": int(len(sounds)),
        }
        for query_kind, texts in (
            ("names", [c.replace("_", " ") for c in categories]),
            ("descriptions", [DESCRIPTIONS[c] for c in categories]),
        ):
            vectors = text_vectors(result.model, result.vectorizer, texts)
            present = [i for i, c in enumerate(categories) if c in set(labels)]
            row[f"text->sound ({query_kind})"] = class_retrieval_report(
                vectors[present], [categories[i] for i in present], sounds, labels
            )
            row[f"sound->text accuracy ({query_kind})"] = nearest_class_accuracy(sounds, labels, vectors, categories)
        rows.append(row)
    present_labels = sorted(set(labels))
    chance = {"text->sound mAP": chance_map(labels, present_labels), "accuracy": 100.0 / len(DESCRIPTIONS)}
    return {"rows": rows, "chance": chance}


def spoken_flickr8k_part(epochs: int | None) -> dict:
    from pipeline.inference import Encoder

    overrides = ["name=flickr8k-spoken", *([f"train.epochs={epochs}"] if epochs else [])]
    config, result, seconds = _train("flickr8k-spoken", overrides)
    info = json.loads((result.run_dir / "run.json").read_text())
    split = config.data.dev_split
    emb = embed_split(
        result.model,
        result.vectorizer,
        input_config_for(config),
        result.manifest,
        split,
        modalities=("text", "image"),
        image_features=result.image_features,
    )
    item_index = {item: i for i, item in enumerate(emb.item_ids)}
    frame = result.manifest.frame
    spoken = frame[(frame["split"] == split) & (frame["audio"] != "") & frame["item_id"].isin(item_index)]
    clips = [result.manifest.resolve(a) for a in spoken["audio"]]
    speech = Encoder(result.model, result.vectorizer, config, result.run_dir).encode_audio(clips)
    owners = np.array([item_index[i] for i in spoken["item_id"]])
    images, image_owner = emb.vectors["image"], emb.owners["image"]
    relevant = owners[:, None] == image_owner[None, :]
    speech_to_image = retrieval_report(speech @ images.T, relevant)
    image_to_speech = retrieval_report(images @ speech.T, relevant.T)
    return {
        "command": _command("flickr8k-spoken", overrides),
        "seconds": seconds,
        "epochs_run": info["epochs_run"],
        "run_dir": str(result.run_dir),
        "text->image": info["dev"]["text->image"],
        "image->text": info["dev"]["image->text"],
        "speech->image": speech_to_image,
        "image->speech": image_to_speech,
        "spoken dev captions": int(len(clips)),
        "phases": {
            "epochs": config.train.epochs,
            "audio_epochs": config.train.audio_epochs,
            "batch_size": config.train.batch_size,
            "audio_batch_size": config.train.audio_phase_batch_size,
        },
    }


def _measured(part: dict) -> str:
    return f"Measured {part.get('date', '?')} by `{part.get('bench_command', '?')}` (training times on 2 CPU cores)."


def markdown(results: dict, commands: list[str]) -> str:
    md = (
        ["# Audio on real recordings", "", "`make bench-audio` (needs ../shared). Reproduce with:", ""]
        + [f"- `{c}`" for c in commands]
        + [""]
    )
    digits = results.get("digits")
    if digits:
        t = digits["three_way"]["test"]
        md += [
            "## 1. Spoken digits, handwritten digits and words (FSDD + MNIST)",
            "",
            _measured(digits),
            f"Split by speaker: {TEST_SPEAKER} is the test split and is never heard in training; the four other speakers train, their",
            "last 5 takes of each digit are the dev split (early stopping only). "
            f"Training also hears {digits['three_way'].get('synthetic_voices', 0)} synthetic speakers: eSpeak NG saying each digit",
            "word in varied voices, band-limited to FSDD's 8 kHz (`python -m pipeline data digits --tts-voices N`; never in dev or test).",
            "Relevance is the digit: mAP over the whole ranking, R@1 = the top result has the query's digit.",
            f"Run: `{digits['three_way']['command']}`.",
            "",
            "| direction | mAP | R@1 | queries | gallery |",
            "|---|---:|---:|---:|---:|",
        ]
        md += [
            f"| {d} | {t[d]['mAP']:.1f} | {t[d]['R@1']:.1f} | {t[d]['queries']} | {t[d]['gallery']} |"
            for d in DIGIT_DIRECTIONS
        ]
        u = digits["unseen_speaker"]
        md += [
            "",
            f"`{u['command']}` (the raw recordings, read by the FSDD adapter): audio→text mAP {u['audio->text']['mAP']:.1f},",
            f"text→audio mAP {u['text->audio']['mAP']:.1f} over {u['audio->text']['queries']} recordings.",
            "",
            "Item fusion: each item is a spoken digit and a handwritten image of the same digit. text→item: the ten digit words",
            "as queries over the test items; accuracy: each test item (or its audio, or its image alone) takes the digit of the",
            f"nearest word. Chance: mAP {digits['chance']['text->item mAP']:.1f}, accuracy 10.0.",
            "",
            "| fusion | text→item mAP | text→item R@1 | item accuracy | audio alone | image alone | epochs | train time (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in digits["fusion"]:
            audio = f"{r['audio accuracy']:.1f}" if "audio accuracy" in r else "–"
            image = f"{r['image accuracy']:.1f}" if "image accuracy" in r else "–"
            md.append(
                f"| {r['strategy']} | {r['text->item']['mAP']:.1f} | {r['text->item']['R@1']:.1f} | {r['item accuracy']:.1f} | {audio} | {image} "
                f"| {r['epochs_run']} | {r['seconds']} |"
            )
        md.append("")
    loso = results.get("digits-speakers")
    if loso:
        md += [
            "### Every speaker held out in turn (leave one speaker out)",
            "",
            _measured(loso),
            "The digits config trained once per FSDD speaker, with that speaker as the test split (never heard in training) and the",
            f"other four (plus {loso['synthetic_voices']} synthetic voices) training, dev as above. One run each: "
            "`python -m pipeline data digits --test-speaker NAME --out data/digits-heldout-NAME`, then",
            "`python -m pipeline train --config digits --set data.path=data/digits-heldout-NAME`.",
            "",
            "| held-out speaker | spoken→word mAP | R@1 | word→spoken mAP | spoken→handwritten mAP | handwritten→spoken mAP | train time (s) |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for r in loso["rows"]:
            t = r["test"]
            md.append(
                f"| {r['speaker']} | {t['audio->text']['mAP']:.1f} | {t['audio->text']['R@1']:.1f} | {t['text->audio']['mAP']:.1f} "
                f"| {t['audio->image']['mAP']:.1f} | {t['image->audio']['mAP']:.1f} | {r['seconds']} |"
            )
        m = loso["mean"]
        md += [
            f"| **mean** | **{m['audio->text']['mAP']:.1f}** | {m['audio->text']['R@1']:.1f} | {m['text->audio']['mAP']:.1f} "
            f"| {m['audio->image']['mAP']:.1f} | {m['image->audio']['mAP']:.1f} | |",
            "",
        ]
    esc = results.get("esc50")
    if esc:
        md += [
            "## 2. Environmental sounds (ESC-50 subset)",
            "",
            _measured(esc),
            "Trained on the clips and their category names; tested on the held-out clips (about one per category). Queries:",
            "the 50 category names, or a short description of each (words the training never paired with sounds,",
            "`DESCRIPTIONS` in `pipeline/data/adapters/esc50_adapter.py`). sound→text: each clip takes the category of the",
            f"nearest query (retrieval-based classification). Chance: mAP {esc['chance']['text->sound mAP']:.1f}, accuracy {esc['chance']['accuracy']:.1f}.",
            "",
            "| audio encoder | text→sound mAP (names) | (descriptions) | sound→text accuracy (names) | (descriptions) | test clips | epochs | train time (s) |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for r in esc["rows"]:
            md.append(
                f"| {r['start']} | {r['text->sound (names)']['mAP']:.1f} | {r['text->sound (descriptions)']['mAP']:.1f} "
                f"| {r['sound->text accuracy (names)']:.1f} | {r['sound->text accuracy (descriptions)']:.1f} | {r['test clips']} "
                f"| {r['epochs_run']} | {r['seconds']} |"
            )
        md.append("")
    spoken = results.get("spoken-flickr8k")
    if spoken:
        md += [
            "## 3. Spoken captions for Flickr8k (eSpeak NG)",
            "",
            _measured(spoken),
            "Every caption of the training and dev photos is spoken, in voices varied by caption (eSpeak voice and variant,",
            "rate, pitch); training draws one of a photo's spoken captions per epoch. Dev 1K protocol: the 1,000 dev photos; text→image uses their 5,000 written captions,",
            f"speech→image the same 5,000 captions spoken. One run: `{spoken['command']}`.",
            "",
            "| direction | R@1 | R@5 | R@10 | MedR | queries | gallery |",
            "|---|---:|---:|---:|---:|---:|---:|",
        ]
        for d in ("text->image", "speech->image", "image->text", "image->speech"):
            r = spoken[d]
            md.append(
                f"| {d} | {r['R@1']:.1f} | {r['R@5']:.1f} | {r['R@10']:.1f} | {r['MedR']:g} | {r['queries']:,} | {r['gallery']:,} |"
            )
        p = spoken.get("phases")
        how = (
            (
                f" ({p['epochs'] - p['audio_epochs']} of text and photos in batches of {p['batch_size']}, then {p['audio_epochs']} of audio "
                f"against the frozen text and image towers in batches of {p['audio_batch_size']})"
            )
            if p and p["audio_epochs"]
            else ""
        )
        md += ["", f"Training: {spoken['epochs_run']} epochs{how}, {spoken['seconds']} s.", ""]
    return "\n".join(md)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--epochs", type=int, default=None, help="epochs per run (default: each config's)")
    parser.add_argument(
        "--esc50-init",
        default=None,
        metavar="RUN",
        help="run whose audio encoder starts the second ESC-50 run (default: this benchmark's spoken-digits run)",
    )
    args = parser.parse_args(argv)
    setup_logging()
    parts = args.parts.split(",")
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown part(s) {', '.join(sorted(unknown))}; choose from {', '.join(PARTS)}")
    start = time.time()
    # Parts not run now keep their last results (each part records its own command and date).
    previous = RESULTS_DIR / "audio.json"
    results: dict = {
        k: v
        for k, v in (json.loads(previous.read_text()) if previous.is_file() else {}).items()
        if k in PARTS and k not in parts
    }
    if "digits" in parts:
        results["digits"] = digits_part(args.epochs)
    if "digits-speakers" in parts:
        results["digits-speakers"] = speakers_part(args.epochs)
    if "esc50" in parts:
        pretrained = args.esc50_init
        if pretrained is None and results.get("digits"):
            pretrained = next(r["run_dir"] for r in results["digits"]["fusion"] if r["strategy"] == "weighted")
        results["esc50"] = esc50_part(args.epochs, pretrained)
    if "spoken-flickr8k" in parts:
        results["spoken-flickr8k"] = spoken_flickr8k_part(args.epochs)
    command = "make bench-audio" + (
        f' ARGS="--parts {",".join(parts)}' + (f" --epochs {args.epochs}" if args.epochs else "") + '"'
        if set(parts) != set(PARTS) or args.epochs
        else ""
    )
    for part in parts:
        results[part].update(
            {"bench_command": command, "date": machine()["date"], "seconds_all_parts_run": round(time.time() - start)}
        )
    results["seconds"] = round(time.time() - start)
    md = markdown(results, sorted({results[p]["bench_command"] for p in PARTS if p in results}))
    json_path, md_path = write_results("audio", results, md)
    print(md)
    print(f"\nwritten: {json_path}, {md_path} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
