"""Orchestration above the stages: ``darkshower benchmark`` and the end-to-end demo."""

from darkshower.pipeline.benchmark import BenchmarkConfig, load_benchmark_config, run_benchmark

__all__ = ["BenchmarkConfig", "load_benchmark_config", "run_benchmark"]
