"""Each record reads back what it writes, and a broken file is named in the error."""

import json

import numpy as np
import pytest

from pipeline.records import (
    CachedImageFeatures,
    EvaluationReport,
    IndexModel,
    IndexRecord,
    RankingChoice,
    RecordError,
    RunData,
    RunRecord,
    TwinChoice,
)

DIRECTION = {"R@1": 50.0, "R@5": 75.0, "R@10": 100.0, "MedR": 1.5, "MeanR": 2.0, "queries": 4, "gallery": 2}
REPORT = {
    "text->image": DIRECTION,
    "image->text": {**DIRECTION, "mAP": 61.0},
    "rsum": 450.0,
    "text->image (twin choice)": {"accuracy": 75.0, "queries": 4},
}


def test_an_evaluation_report_round_trips_its_json_and_reads_typed():
    report = EvaluationReport.from_dict(REPORT)
    assert report.to_dict() == REPORT
    assert report.directions["text->image"].recall == {1: 50.0, 5: 75.0, 10: 100.0}
    assert report.directions["image->text"].mean_average_precision == 61.0
    assert report.directions["text->image"].mean_average_precision is None
    assert report.twin_choice == TwinChoice(75.0, 4)


def test_a_run_record_round_trips_through_its_file(tmp_path):
    record = RunRecord(
        run_format_version=3,
        pipeline_version="0.1.0",
        created="2026-11-29T10:00:00",
        config_name="smoke",
        data=RunData("/data/default", "embedded", 40, 16, 0),
        audio_frames=200,
        image_feature_dim=None,
        epochs_run=2,
        train_seconds=12.5,
        dev=EvaluationReport.from_dict(REPORT),
        dev_report={"json": "eval/dev.json"},
    )
    record.write(tmp_path)
    assert RunRecord.read(tmp_path) == record
    assert "test" not in json.loads((tmp_path / "run.json").read_text())


def test_an_index_record_keeps_the_ranking_under_its_old_key():
    record = IndexRecord(
        "idx",
        IndexModel("run-1", "ab12", "default"),
        "/data",
        "all",
        False,
        RankingChoice("weighted", 0.85, "dev"),
        1e-3,
    )
    values = record.to_dict()
    assert values["fusion"] == {"method": "weighted", "weight": 0.85, "why": "dev"} and "ranking" not in values
    assert IndexRecord.from_dict(values) == record


@pytest.mark.parametrize("content", ["{", "[]", json.dumps({"run_format_version": 3})])
def test_a_broken_run_file_is_named(tmp_path, content):
    (tmp_path / "run.json").write_text(content)
    with pytest.raises(RecordError, match="run.json"):
        RunRecord.read(tmp_path)


def test_cached_features_name_the_image_they_lack():
    cached = CachedImageFeatures(["a.png", "b.png"], np.arange(6, dtype="float32").reshape(2, 3))
    assert cached.dim == 3 and cached.rows_of(["b.png", "a.png"]) == [1, 0]
    images, features = cached  # still unpacks as the (images, features) pair it replaced
    assert images == ["a.png", "b.png"] and features.shape == (2, 3)
    with pytest.raises(KeyError, match="c.png"):
        cached.rows_of(["a.png", "c.png"])


def test_an_index_ranked_by_naive_bayes_alone_reads_its_null_weight():
    values = IndexRecord(
        "idx", IndexModel("run-1", "ab12", "default"), "/data", "all", False, RankingChoice("nb", 0.5, "dev"), 1e-3
    ).to_dict()
    values["fusion"]["weight"] = None  # as index format 3 wrote it for "nb"
    assert IndexRecord.from_dict(values).ranking == RankingChoice("nb", 0.5, "dev")
