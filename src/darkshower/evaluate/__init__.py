"""Evaluation: metrics, generalization grids, sculpting, supervised reference, search, report.

Library entry points (the ``darkshower evaluate / search / report`` commands call these):

- :func:`evaluate` — metrics of score files against background and signal datasets → ``metrics.json``.
- :func:`search` — bump hunt in MT with and without anomaly cuts (significance, CLs limits).
- :func:`report` — self-contained HTML page of an evaluation directory.

Lower-level pieces: :mod:`.metrics` (ROC, AUC, rejection, SIC, bootstrap), :mod:`.scores`
(score files and joins), :mod:`.sculpting` (Jensen-Shannon divergence), :mod:`.bumphunt`
(dijet fit, significance, limits), :mod:`.plots`, :mod:`.htmlreport`.
"""

from __future__ import annotations

__all__ = ["evaluate", "search", "report"]


def __getattr__(name: str):  # lazy: keep `import darkshower.evaluate` light
    if name == "evaluate":
        from darkshower.evaluate.evaluation import evaluate

        return evaluate
    if name == "search":
        from darkshower.evaluate.bumphunt import search

        return search
    if name == "report":
        from darkshower.evaluate.htmlreport import report

        return report
    raise AttributeError(f"module 'darkshower.evaluate' has no attribute {name!r}")


from darkshower._callable import make_callable  # noqa: E402

make_callable(__name__, "evaluate")  # darkshower.evaluate(...) == darkshower.evaluate.evaluate(...)
