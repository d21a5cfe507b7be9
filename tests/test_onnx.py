"""ONNX export of trained runs, checked against torch with onnxruntime."""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxscript")
ort = pytest.importorskip("onnxruntime")

from darkshower.cli.main import main  # noqa: E402
from darkshower.export.onnx import export_onnx  # noqa: E402
from darkshower.train import load_run, train  # noqa: E402

FAST = {"batch_size": 32, "threads": 1, "early_stopping": {"patience": None}}


@pytest.mark.parametrize("method,extra", [("ae-hlf", {}), ("nae", {"model": {"pretrain_epochs": 1}}),
                                          ("ae-image", {}), ("clr", {"model": {"d_model": 16, "heads": 2, "layers": 1}})])
def test_export_matches_torch(method, extra, qcd_ds, tmp_path):
    run = train(method, qcd_ds, tmp_path / "run", config={**FAST, **extra}, epochs=2, progress=False)
    exp = tmp_path / "exp"
    info = export_onnx(run, exp / "m.onnx")
    export_onnx(run, exp / "m.onnx")  # a re-export replaces the file and leaves nothing else behind
    assert info["dynamic_batch"] and info["max_abs_diff"] < 1e-3
    assert sorted(p.name for p in exp.iterdir()) == ["m.onnx"]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "m.onnx").write_bytes((exp / "m.onnx").read_bytes())  # the .onnx alone is the model
    # real data through both: the same scores
    m, rep, _, _ = load_run(run)
    from darkshower.represent.build import build
    from darkshower.represent.store import store_from_rep, to_torch

    b = to_torch(store_from_rep(build(rep, qcd_ds.read_chunk(0)), 0.0))
    sess = ort.InferenceSession(str(elsewhere / "m.onnx"))
    feeds = {i.name: b[i.name].numpy() for i in sess.get_inputs()}
    got = sess.run(None, feeds)[0]
    with torch.no_grad():
        ref = m.score(b).numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-3, atol=1e-4)


def test_export_cli(qcd_ds, tmp_path, capsys):
    run = train("ae-hlf", qcd_ds, tmp_path / "run", config=FAST, epochs=1, progress=False)
    assert main(["export", str(run), "--out", str(tmp_path / "x.onnx")]) == 0
    assert "dynamic batch" in capsys.readouterr().out and (tmp_path / "x.onnx").stat().st_size > 0
    assert main(["export", str(tmp_path), "--out", str(tmp_path / "y.onnx")]) == 2


class _GraphDiffers(torch.nn.Module):
    """Exports an op that torch's eager forward skips: ONNX Runtime then disagrees by 1 %."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(4, 1)

    def forward(self, x):
        y = self.lin(x).squeeze(-1)
        if torch.onnx.is_in_onnx_export():
            return y * 1.01
        return y


def test_export_check_refuses_a_mismatch(tmp_path):
    from darkshower.errors import ExportError
    from darkshower.models.base import Method

    class M(Method):
        def export(self):
            return _GraphDiffers(), (torch.randn(6, 4),)

    m = M.__new__(M)
    with pytest.raises(ExportError, match="disagrees with torch"):
        export_onnx(m, tmp_path / "m.onnx")
    assert not list(tmp_path.iterdir())  # nothing left behind
