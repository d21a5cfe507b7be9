"""Representation config (pydantic, kind discriminator) and the streaming PyTorch loader."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest

from darkshower.errors import ConfigError
from darkshower.represent import build, fit_standardizer, parse_representation
from darkshower.represent.toys import toy_events


def test_config_roundtrip_and_errors():
    cfg = parse_representation({"kind": "image", "n_pixels": 32, "channels": "charged_neutral"})
    again = parse_representation(json.loads(json.dumps(cfg.model_dump(mode="json"))))
    assert again == cfg and again.kind == "image"
    with pytest.raises(ConfigError) as e:
        parse_representation({"kind": "constituents", "n_constituent": 50})
    assert "n_constituent" in str(e.value) and "unknown key" in str(e.value)
    assert str(e.value).count("'") <= 6  # one clear message, not a pydantic dump
    with pytest.raises(ConfigError, match="kind 'graph' is unknown"):
        parse_representation({"kind": "graph"})
    with pytest.raises(ConfigError, match="missing 'kind'"):
        parse_representation({"n_pixels": 3})
    with pytest.raises(ConfigError, match="n_pixels"):
        parse_representation({"kind": "image", "n_pixels": -1})


def _dataset(path, seed, n_prongs, chunks=(30, 20)):
    from darkshower.data import DatasetWriter

    w = DatasetWriter(path, {"seed": seed}, {"kind": "generated", "process": "toy"})
    w.open()
    for i, n in enumerate(chunks):
        ev = toy_events(n, n_prongs=n_prongs, seed=seed * 10 + i, n_constituents=(20, 40))
        ev = ak.with_field(ev, ak.Array(np.arange(n, dtype=np.int64) + (i << 32)), "event_id")
        w.write(i, ev)
    w.finalize()
    return path


@pytest.mark.parametrize("kind", ["constituents", "image", "event_image", "lund", "observables"])
def test_stream_all_kinds(tmp_path, kind):
    torch = pytest.importorskip("torch")
    from darkshower.represent.loader import RepresentationStream, make_loader

    a = _dataset(tmp_path / "a", 1, 1)
    b = _dataset(tmp_path / "b", 2, 2)
    cfg = {"kind": kind}
    if kind == "constituents":
        cfg = fit_standardizer({"kind": "constituents", "n_constituents": 16}, toy_events(20, seed=9))
    stream = RepresentationStream({a: 0, b: 1}, cfg, batch_size=32, shuffle_buffer=60, seed=1,
                                  cache_dir=tmp_path / "cache")
    batches = list(stream)
    per = 1 if kind == "event_image" else 2
    labels = torch.cat([x["label"] for x in batches])
    assert len(labels) == 100 * per and labels.sum().item() == 50 * per
    assert all(len(x["label"]) == 32 for x in batches[:-1])
    if kind == "lund":
        x = batches[0]
        assert x["x"].shape[1] == 5 and x["edge_index"].max() < len(x["x"]) and len(x["node_counts"]) == 32
    elif kind == "event_image":
        assert tuple(batches[0]["x"].shape[1:]) == (3, 50, 64)
    else:
        assert batches[0]["x"].shape[0] == 32
    ids = torch.cat([x["event_id"] for x in batches]).numpy()
    assert not (np.diff(ids[: 50 * per]) >= 0).all()  # shuffled
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 4
    again = list(RepresentationStream({a: 0, b: 1}, cfg, batch_size=32, shuffle_buffer=60, seed=1,
                                      cache_dir=tmp_path / "cache"))  # served from the cache
    assert all(torch.equal(p["label"], q["label"]) for p, q in zip(batches, again))
    assert sum(len(x["label"]) for x in make_loader(a, cfg, batch_size=50, shuffle_buffer=0)) == 50 * per


def test_write_representation_npz(tmp_path):
    from darkshower.represent.loader import load_npz, write_representation

    a = _dataset(tmp_path / "a", 1, 1, chunks=(10,))
    out = write_representation(tmp_path / "a", {"kind": "lund", "max_level": 0}, tmp_path / "lund.npz")
    store = load_npz(out)
    from darkshower import open_dataset

    ref = build({"kind": "lund", "max_level": 0}, open_dataset(a).read_chunk(0))
    np.testing.assert_array_equal(store["graphs"].x, ref["graphs"].x)
    assert json.loads(str(np.load(out)["config"]))["kind"] == "lund"
