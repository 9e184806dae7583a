"""Retrieval evaluation: datasets from local files, metrics from trec_eval, modes side by side."""

from .datasets import Dataset, DatasetError, load_dataset
from .metrics import evaluate
from .runner import DEFAULT_OPTIONS, ModeResult, evaluate_collection, format_table, run_evaluation

__all__ = [
    "DEFAULT_OPTIONS",
    "Dataset",
    "DatasetError",
    "ModeResult",
    "evaluate",
    "evaluate_collection",
    "format_table",
    "load_dataset",
    "run_evaluation",
]
