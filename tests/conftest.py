"""Shared fixtures: small datasets generated once per test session; the ONNX parity check."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def shared_file(*parts: str) -> Path:
    """Path of a file in ../shared/data, or skip the test with a reason."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real-data file {p} not available (../shared/data absent)")
    return p


def onnx_scores(path, batch: dict) -> np.ndarray:
    """Run the ONNX file at ``path`` in onnxruntime on the tensors of ``batch`` named like the graph's inputs."""
    import onnxruntime as ort  # in the test extra: a missing package fails the test

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: batch[i.name].numpy() for i in sess.get_inputs()})[0]


def assert_onnx_matches_torch(method, batch: dict, path, rtol: float = 1e-3, atol: float = 1e-4) -> dict:
    """Export ``method`` in eval mode with :func:`darkshower.export.onnx.export_onnx` to ``path``, run the
    file in onnxruntime on ``batch`` (a batch size other than the export's example inputs, so the batch
    dimension must really be dynamic) and assert it gives ``method.score(batch)``; returns the export info."""
    import torch

    from darkshower.export.onnx import export_onnx

    method.eval()
    _, example = method.export()
    n = len(next(iter(batch.values())))
    assert n != example[0].shape[0], "check the ONNX graph on a batch size other than the example's"
    info = export_onnx(method, path)
    assert info["dynamic_batch"], info
    with torch.no_grad():
        want = method.score(batch).numpy()
    got = onnx_scores(path, batch)
    assert got.shape == want.shape == (n,)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    return info


def _gen(tmp_path_factory, name: str, cfg: dict):
    from darkshower.simulate.run import generate

    out = tmp_path_factory.mktemp("data") / name
    return generate(cfg, out, jobs=1, progress=False, command=["pytest"])


@pytest.fixture(scope="session")
def qcd_ds(tmp_path_factory):
    return _gen(tmp_path_factory, "qcd", {"process": "qcd", "events": 120, "seed": 11, "chunk_size": 60,
                                          "params": {"pthat_min": 300}})


@pytest.fixture(scope="session")
def svj_ds(tmp_path_factory):
    return _gen(tmp_path_factory, "svj", {"process": "svj", "events": 120, "seed": 12, "chunk_size": 60,
                                          "params": {"r_inv": 0.3}})


@pytest.fixture(scope="session")
def svj_high_rinv_ds(tmp_path_factory):
    return _gen(tmp_path_factory, "svj_r07", {"process": "svj", "events": 120, "seed": 13, "chunk_size": 60,
                                              "params": {"r_inv": 0.7}})


@pytest.fixture(scope="session")
def svj_low_rinv_ds(tmp_path_factory):
    return _gen(tmp_path_factory, "svj_r01", {"process": "svj", "events": 120, "seed": 14, "chunk_size": 60,
                                              "params": {"r_inv": 0.1}})


@pytest.fixture(scope="session")
def svj_unbiased_ds(tmp_path_factory):
    """No jet requirement: truth fractions are not biased by the selection."""
    return _gen(tmp_path_factory, "svj_r05_nosel", {"process": "svj", "events": 80, "seed": 15, "chunk_size": 80,
                                                    "params": {"r_inv": 0.5}, "jets": {"min_jets": 0}})
