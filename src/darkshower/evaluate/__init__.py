"""Evaluation: quick-look comparisons, metrics, searches and reports."""
