"""Evaluation, kept apart from training: embedding a split, retrieval metrics, reports."""
