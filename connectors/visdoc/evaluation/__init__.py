"""Retrieval evaluation: metrics from trec_eval, datasets from local files."""

from .metrics import evaluate

__all__ = ["evaluate"]
