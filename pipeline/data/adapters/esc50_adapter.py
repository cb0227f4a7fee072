"""ESC-50 environmental sounds: ``esc50.csv`` (or ``meta/esc50.csv``) and an ``audio/`` folder.

Text is the category with ``_`` as spaces, the label is the category. The split follows
ESC-50's folds (1-3 train, 4 dev, 5 test) when all five folds hold at least 10% of the
clips; otherwise (a subset) each category's clips, in file-name order, go 1 in 7 to test,
1 in 7 to dev and the rest to train, so every split sees every class.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from pipeline.data.manifest import Manifest, ManifestError, row_problems
from pipeline.modalities.names import AUDIO, IMAGE

# A short description of each category, in words a user might type; queries that the
# category names alone do not contain (benchmarks/bench_audio.py searches with both).
DESCRIPTIONS = {
    "dog": "a dog barking",
    "rooster": "a cock crowing at dawn",
    "pig": "a pig grunting",
    "cow": "a cow mooing",
    "frog": "frogs croaking in a pond",
    "cat": "a cat meowing",
    "hen": "a chicken clucking",
    "insects": "bugs buzzing",
    "sheep": "a sheep bleating",
    "crow": "a black bird cawing",
    "rain": "rain falling on the ground",
    "sea_waves": "waves breaking on a beach",
    "crackling_fire": "wood burning in a fire",
    "crickets": "crickets chirping at night",
    "chirping_birds": "birds singing in the trees",
    "water_drops": "water dripping",
    "wind": "strong wind blowing",
    "pouring_water": "water poured into a glass",
    "toilet_flush": "a toilet being flushed",
    "thunderstorm": "thunder during a storm",
    "crying_baby": "a baby crying",
    "sneezing": "a person sneezing",
    "clapping": "people clapping their hands",
    "breathing": "someone breathing heavily",
    "coughing": "a person coughing",
    "footsteps": "someone walking",
    "laughing": "people laughing",
    "brushing_teeth": "a toothbrush on teeth",
    "snoring": "a man snoring in his sleep",
    "drinking_sipping": "someone sipping a drink",
    "door_wood_knock": "knocking on a wooden door",
    "mouse_click": "a computer mouse clicking",
    "keyboard_typing": "typing on a keyboard",
    "door_wood_creaks": "a wooden door creaking open",
    "can_opening": "a soda can being opened",
    "washing_machine": "a washing machine running",
    "vacuum_cleaner": "a vacuum cleaner running",
    "clock_alarm": "an alarm clock ringing",
    "clock_tick": "a clock ticking",
    "glass_breaking": "glass shattering",
    "helicopter": "a helicopter flying overhead",
    "chainsaw": "a chainsaw cutting wood",
    "siren": "an ambulance siren",
    "car_horn": "a car honking",
    "engine": "a motor running",
    "train": "a train passing on the tracks",
    "church_bells": "church bells ringing",
    "airplane": "a plane flying over",
    "fireworks": "fireworks exploding",
    "hand_saw": "sawing wood by hand",
}

FOLD_SPLITS = {"1": "train", "2": "train", "3": "train", "4": "dev", "5": "test"}
REQUIRED = ("filename", "fold", "category")


def _meta_file(root: Path) -> Path | None:
    for candidate in (root / "esc50.csv", root / "meta" / "esc50.csv"):
        if candidate.is_file():
            return candidate
    return None


def _splits(meta: pd.DataFrame) -> pd.Series:
    shares = meta["fold"].value_counts(normalize=True)
    if all(shares.get(fold, 0.0) >= 0.1 for fold in FOLD_SPLITS):
        return meta["fold"].map(FOLD_SPLITS).fillna("unassigned")
    rank = meta.sort_values("filename").groupby("category").cumcount().reindex(meta.index)
    return rank.map(lambda r: "test" if r % 7 == 1 else "dev" if r % 7 == 4 else "train")


class Esc50Adapter:
    name = "esc50"
    description = "ESC-50: esc50.csv (filename,fold,target,category,...) and an audio/ folder"

    def detect(self, root: Path) -> bool:
        return root.is_dir() and _meta_file(root) is not None

    def load(self, root: Path) -> Manifest:
        meta_path = _meta_file(root)
        meta = pd.read_csv(meta_path, dtype=str, keep_default_na=False)
        missing = [c for c in REQUIRED if c not in meta.columns]
        if missing:
            raise ManifestError(
                f"{meta_path}: missing column(s) {', '.join(missing)}; ESC-50's meta file has {', '.join(REQUIRED)}."
            )
        frame = pd.DataFrame(
            {
                "item_id": meta["filename"].str.replace(r"\.[^.]+$", "", regex=True),
                "split": _splits(meta),
                "text": meta["category"].str.replace("_", " "),
                IMAGE: "",
                AUDIO: "audio/" + meta["filename"],
                "label": meta["category"],
                "fold": meta["fold"],
            }
        )
        manifest = Manifest(root=root, frame=frame, format=self.name)
        manifest.problems.extend(row_problems(manifest.frame))
        return manifest
