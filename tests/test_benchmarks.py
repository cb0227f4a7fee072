"""The benchmarks' own arithmetic: step times of a fresh make train, the spread of repeated runs."""

from __future__ import annotations


def test_fresh_train_steps_are_cut_at_the_lines_that_start_them():
    from benchmarks.bench_fresh_train import step_seconds

    lines = [
        (3.0, "pip install ..."),
        (70.5, "[12:00:00] INFO ...: planning 1900 train scenes and their captions"),
        (120.0, "checking files"),
        (131.0, "[12:01:01] INFO ...: [1/5] data: data/default (embedded)"),
        (140.0, "[12:01:10] INFO ...: phase 'text-image': epochs 1 to 30, training text, image"),
        (500.0, "[12:07:10] INFO ...: phase 'audio': epochs 31 to 38, training text, image, audio"),
        (690.0, "[12:10:20] INFO ...: [3/5] training done in 560 s (dev rsum 500.0)"),
        (700.0, "[12:10:30] INFO ...: [4/5] evaluating on the test split"),
        (730.0, ".venv/bin/python -m pipeline index --run latest --name default"),
        (745.0, ".venv/bin/python -m pipeline export --index default"),
        (760.0, "Serve them: ..."),
    ]
    steps = step_seconds(lines, total=770.0)
    # 0 → 70.5 → 131 → 140 → 500 → 690 → 730 → 745 → 770
    assert steps == {
        "set-up (.venv, pip)": 70.5,
        "dataset build": 60.5,
        "training: start, data checks, model": 9.0,
        "training: text-image phase": 360.0,
        "training: audio phase": 190.0,
        "test evaluation (and the run's dev report)": 40.0,
        "index": 15.0,
        "export": 25.0,
    }
    assert sum(steps.values()) == 770.0
    # A run without an audio phase: its text-image phase runs on to the end of training.
    no_audio = step_seconds([line for line in lines if "phase 'audio'" not in line[1]], total=770.0)
    assert no_audio["training: audio phase"] is None and no_audio["training: text-image phase"] == 550.0


def test_fresh_train_results_keep_the_last_two_commits():
    from benchmarks.bench_fresh_train import merged_runs

    a, b, c = ({"commit": name, "seconds": s} for name, s in (("a", 1.0), ("b", 2.0), ("c", 3.0)))
    assert merged_runs([], a) == [a]
    assert merged_runs([a], b) == [a, b]
    assert merged_runs([a, b], c) == [b, c]
    again = {"commit": "b", "seconds": 4.0}
    assert merged_runs([a, b], again) == [a, again]  # a commit measured again replaces its old run


def test_fresh_train_time_is_written_in_whole_minutes_and_seconds():
    from benchmarks.bench_fresh_train import minutes_and_seconds

    assert minutes_and_seconds(832.4) == "13 min 52 s"  # 13 * 60 + 52 = 832: 13.87 minutes is not "14 min"
    assert minutes_and_seconds(899.6) == "15 min 0 s"
    assert minutes_and_seconds(59.0) == "0 min 59 s"


def test_repeated_runs_report_their_spread_and_worst_run():
    from benchmarks.bench_default import repeats_markdown

    repeats = [
        {
            "run": i + 1,
            "command": f"python -m pipeline train --config default --set name=repeat{i + 1}",
            "seconds": 600,
            "measured": "2026-11-29",
            "figures": {"text->image R@1": t2i, "audio->image R@1": a2i},
        }
        for i, (t2i, a2i) in enumerate([(90.0, 70.0), (88.5, 72.5), (89.0, 69.0)])
    ]
    md = "\n".join(repeats_markdown(repeats))
    # spread: 90.0 - 88.5 = 1.5 and 72.5 - 69.0 = 3.5; worst: 88.5 and 69.0
    assert "| spread (max − min) | 1.5 | 3.5 |" in md
    assert "| worst | 88.5 | 69.0 |" in md
    assert "- `python -m pipeline train --config default --set name=repeat3`" in md  # each run's command


def test_scale_plan_multiplies_out_the_measured_rate():
    from benchmarks.bench_scale import plan_figures

    plan = plan_figures([{"set": "photos", "beam_1": {"steady_items_per_s": 100.0}}])
    # 1e8 items / 100 items/s = 1e6 s = 277.8 hours; 277.8 / 24 = 11.6 -> 12 workers.
    assert plan["photos"] == {"items_per_s_per_worker": 100.0, "worker_hours": 278, "workers_for_24_hours": 12}
    assert plan["vectors_gb"] == 102.4  # 1e8 x 256 x 4 bytes


def test_scale_recall_counts_the_true_neighbours_found():
    import numpy as np

    from benchmarks.bench_scale import recall

    found = np.array([[1, 2, 3, -1], [4, 5, 6, 7]])
    truth = np.array([[1, 2, 9, 8], [7, 6, 5, 4]])
    assert recall(found, truth) == (2 / 4 + 4 / 4) / 2  # a padded -1 is never a neighbour


def test_scale_steady_rate_leaves_out_the_start_up_both_runs_pay():
    from benchmarks.bench_scale import steady

    # 1,000 items in 30 s, 64 items in 10.64 s: 936 more items in 19.36 more seconds.
    assert steady({"items": 1000, "seconds": 30.0}, {"items": 64, "seconds": 10.64}) == 936 / 19.36


def test_million_items_are_a_head_of_one_caption_and_a_tail_of_another():
    from benchmarks.bench_million import recombined_captions

    pool = ["a dog runs on the beach", "two children play in the snow", "a man rides a red bike"]
    texts = recombined_captions(pool, 200, seed=3)
    words = [c.split() for c in pool]
    for text in texts:
        parts = text.split()
        assert any(
            parts[:i] == a[:i] and parts[i:] == b[len(b) - (len(parts) - i) :]
            for a in words
            for b in words
            for i in range(1, len(a))
            if 0 < len(parts) - i <= len(b)
        ), text
    assert len(set(texts)) > 20  # recombined, not copied


def test_million_top10_agreement_counts_ids_then_scores_and_the_ties_behind_the_rest():
    from benchmarks.bench_million import RANKINGS, same_tops

    a = {r: [[("x", 1.0), ("y", 0.5)], [("x", 1.0)], [("z", 2.0)]] for r in RANKINGS}
    b = {r: [[("x", 1.0), ("y", 0.5 + 1e-7)], [("x", 1.1)], [("q", 2.0)]] for r in RANKINGS}
    b["ties"] = [False, False, True]
    # query 0 agrees within 1e-6; query 1 has the same ids, another score; query 2 differs and tied
    assert same_tops(a, b)["dense"] == {
        "queries": 3,
        "same_ids": 2,
        "same_ids_and_scores": 1,
        "differing_with_dense_ties": 1,
    }
