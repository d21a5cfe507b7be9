"""Inference as a service: a KServe v2 / Triton-protocol server for trained runs or a Triton model repository
(:func:`serve`, :class:`ServerThread`), and scoring through such a server (:class:`RemoteScorer`,
:func:`score_remote`). Needs the optional packages of the ``serve`` extra (``pip install -e ".[serve]"``).
A stage above ``export`` and ``train``: it exports runs to ONNX and reuses the score-file format."""

from __future__ import annotations

__all__ = ["serve", "load_models", "ServerThread", "RemoteScorer", "score_remote"]

_WHERE = {"serve": "server", "load_models": "server", "ServerThread": "server", "RemoteScorer": "client",
          "score_remote": "client"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"darkshower.serve.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'darkshower.serve' has no attribute {name!r}")
