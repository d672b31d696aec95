"""Judging a model on labelled rows: metrics, evaluations, prediction sets, neighbours, corrections, tables.

Modules: `metrics`, `evaluation`, `conformal`, `neighbours`, `corrections`, `prediction_cache`, `tables`.
"""
