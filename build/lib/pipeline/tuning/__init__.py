"""Hyperparameter tuning with KerasTuner (``python -m pipeline tune``, ``make tune``)."""
