"""describe on the real datasets in ../shared: the counts the issue names."""

import pytest

from pipeline.data.adapters import load_dataset
from pipeline.data.describe import describe

pytestmark = [pytest.mark.shared, pytest.mark.slow]


def test_flickr8k_counts(shared_datasets):
    report = describe(load_dataset(shared_datasets / "flickr8k"), show_progress=False)
    counts = report.counts
    assert report.format == "flickr8k"
    assert counts.loc["total", "images"] == 7091 and counts.loc["total", "captions"] == 35455
    assert counts.loc["train", "images"] == 6000 and counts.loc["dev", "images"] == 1000
    assert counts.loc["unassigned", "images"] == 91
    assert report.problems == []


def test_fsdd_counts(shared_datasets):
    report = describe(load_dataset(shared_datasets / "fsdd"), show_progress=False)
    assert report.format == "fsdd" and report.counts.loc["total", "audio"] == 2500
    assert report.distinct == {"label": 10, "speaker": 5}
    assert report.problems == []


def test_esc50_counts(shared_datasets):
    report = describe(load_dataset(shared_datasets / "esc50"), show_progress=False)
    assert report.format == "esc50" and report.counts.loc["total", "audio"] == 364
    assert report.distinct["label"] == 50
    assert report.problems == []
