"""DistillNet (issue 15 part 3): the pu-gnn teacher, the per-particle student, `--pu-mitigation distillnet:RUN`
in generate, the numpy student vs torch, ONNX export, resume and the error paths. A tiny minimum-bias library
and a few QCD events at mu = 10, made once per module."""

from __future__ import annotations

import hashlib
import json

import awkward as ak
import numpy as np
import pytest
import torch

from darkshower.cli.main import main
from darkshower.errors import ConfigError, DatasetError, RunError
from darkshower.models.pileup_gnn import load_pu_run
from darkshower.simulate import pileup as pu
from darkshower.simulate.config import PileupConfig
from darkshower.simulate.run import generate
from darkshower.train.pileup import distill_particles, load_particles, teacher_scores, train_pu_gnn

QCD = {"process": "qcd", "events": 12, "seed": 7, "chunk_size": 12, "params": {"pthat_min": 300},
       "store_particles": True}


def auc(y, s) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(np.asarray(y, bool), s))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("distillnet")
    lib = generate({"process": "minbias", "events": 30, "seed": 5, "chunk_size": 30}, root / "mb", jobs=1,
                   progress=False)
    pileup = {"mu": 10, "library": str(lib.path)}
    data = generate(dict(QCD, pileup=pileup), root / "qcd", jobs=1, progress=False)
    teacher = train_pu_gnn([data.path], root / "teacher", epochs=3, seed=1, progress_=False,
                           config={"batch_events": 2, "threads": 1})
    student = distill_particles(teacher, [data.path], root / "student", epochs=4, seed=1, progress_=False,
                                config={"batch_size": 512, "threads": 1})
    return {"root": root, "lib": lib.path, "data": data.path, "teacher": teacher, "student": student,
            "pileup": pileup}


def test_teacher_trains_and_separates_pv_from_pileup(world):
    run = world["teacher"]
    info = json.loads((run / "run.json").read_text())
    assert info["method"] == "pu-gnn" and info["status"] == "finished" and info["epochs_done"] == 3
    assert 30_000 <= info["spec"]["parameters"] <= 60_000
    assert {"config.yaml", "metrics.csv", "metrics.json", "checkpoint.pt", "model_best.pt", "model_last.pt"} <= {
        p.name for p in run.iterdir()}
    assert info["data"][0]["content_sha256"] == pu.library_checksum(world["data"])
    _, model, cfg, _ = load_pu_run(run)
    d = load_particles([world["data"]], show_progress=False)
    s = teacher_scores(model, d, cfg.model.k, torch.device("cpu"))
    assert ((s >= 0) & (s <= 1)).all()
    assert auc(d.y, s) > 0.8  # tracks carry the association; the graph has to do the neutrals
    hist = json.loads((run / "metrics.json").read_text())
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_student_learns_the_teacher(world):
    run = world["student"]
    info = json.loads((run / "run.json").read_text())
    assert info["method"] == "pu-student" and info["spec"]["features"] == pu.feature_names(pu.FEATURE_RADII)
    assert info["spec"]["teacher_sha256"] == hashlib.sha256((world["teacher"] / "model_best.pt").read_bytes()).hexdigest()
    hist = json.loads((run / "metrics.json").read_text())
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]
    # its target is the teacher's sigmoid: the student follows the teacher more closely than the truth
    d = load_particles([world["data"]], student_radii=pu.FEATURE_RADII, show_progress=False)
    _, tmodel, tcfg, _ = load_pu_run(world["teacher"])
    t = teacher_scores(tmodel, d, tcfg.model.k, torch.device("cpu"), x=d.extra["xt"])
    st = pu.load_student(run)
    s = st(d.x)
    assert np.corrcoef(s, t)[0, 1] > 0.7
    assert np.corrcoef(s, t)[0, 1] > np.corrcoef(s, d.y)[0, 1]
    assert auc(d.y, s) > 0.7


def test_numpy_student_equals_torch(world):
    _, model, cfg, _ = load_pu_run(world["student"])
    d = load_particles([world["data"]], student_radii=tuple(cfg.radii), show_progress=False)
    with torch.no_grad():
        ref = model.prob(torch.from_numpy(d.x)).numpy()
    got = pu.load_student(world["student"])(d.x)
    np.testing.assert_allclose(got, ref, atol=1e-5, rtol=0)


def test_class_sums_equal_local_sums():
    rng = np.random.default_rng(3)
    n = 900
    c = {"ev": np.repeat(np.arange(3), n // 3), "pt": rng.exponential(1.0, n) + 0.1, "eta": rng.uniform(-3, 3, n),
         "phi": rng.uniform(-np.pi, np.pi, n)}
    c["ev"] = np.sort(rng.integers(0, 4, n))  # uneven events, one maybe empty
    cls = rng.integers(0, 3, n)
    for radii in ((0.4, 0.2), (2.5,)):  # 2.5: fewer than 3 phi cells
        got = pu._class_sums(c, cls, 3, radii, 0.02)
        for k in range(3):
            for ri, r in enumerate(radii):
                ref = pu._local_sum(c, np.arange(n), np.flatnonzero(cls == k), r, 0.02)
                np.testing.assert_allclose(got[:, ri, k], ref, rtol=1e-9)
                assert (ref > 0).any()


def _reference_features(c, cfg, assoc, particle_level, radii):
    """particle_features as first written (numpy, sums from the k-d tree _local_sum): the compiled
    student_features must reproduce it."""
    pt, eta = np.asarray(c["pt"], np.float64), np.asarray(c["eta"], np.float64)
    trk = assoc >= 0
    typ = np.asarray(c["type"], np.int64)
    cols = [np.log(np.maximum(pt, 1e-3)), eta, np.log(np.maximum(np.asarray(c["e"], np.float64), 1e-3)),
            np.asarray(c["charge"], np.float64), *[(typ == t).astype(np.float64) for t in range(5)]]
    if particle_level:
        dzs = np.where(trk, np.where(assoc == 1, 0.0, 10.0), 0.0)
    else:
        dzs = np.where(trk, np.abs(np.asarray(c["dz"], np.float64)) / pu.dz_sigma(pt, eta, cfg), 0.0)
    cols += [trk.astype(np.float64), (assoc == 1).astype(np.float64), np.log1p(np.minimum(dzs, 1e6))]
    ev = np.asarray(c["ev"], np.int64)
    n_ev = int(ev.max()) + 1
    pu_trk = np.flatnonzero(assoc == 0)
    everyone = np.arange(len(pt))
    for r in radii:
        sums = [np.log1p(pu._local_sum(c, everyone, np.flatnonzero(assoc == a), r, cfg.puppi.r_min)) for a in (1, 0, -1)]
        med, rms, has = pu._median_rms(sums[0][pu_trk], ev[pu_trk], n_ev, cfg.puppi.min_charged_pu)
        z = np.where(has[ev], (sums[0] - np.nan_to_num(med[ev])) / np.maximum(np.nan_to_num(rms[ev]), 1e-3), 0.0)
        cols += [*sums, np.clip(z, -50.0, 50.0)]
    return np.column_stack(cols).astype(np.float32)


def test_compiled_features_equal_the_numpy_reference():
    """The student's features (one compiled pass) = the numpy definition, on uneven events: an empty one, one
    with a single candidate, one without pileup tracks (z = 0), dense ones; tracks, neutrals, charged beyond
    the tracker; detector and particle level; and the student's output on them."""
    rng = np.random.default_rng(5)
    sizes = [400, 0, 1, 30, 700, 250]
    n = sum(sizes)
    ev = np.repeat(np.arange(len(sizes)), sizes)
    eta = rng.uniform(-4.9, 4.9, n)
    eta[ev == 4] = rng.normal(0.0, 0.5, (ev == 4).sum())  # a dense jet-like event
    c = {"ev": ev, "pt": rng.exponential(2.0, n) + 0.05, "eta": eta, "phi": rng.uniform(-np.pi, np.pi, n),
         "charge": rng.choice([-1, 0, 1], n).astype(np.int8), "type": rng.integers(0, 5, n).astype(np.int8),
         "dz": rng.normal(0.0, 20.0, n), "from_pv": rng.random(n) < 0.2}
    c["e"] = c["pt"] * np.cosh(c["eta"])
    c["phi"][:5] = [np.pi, -np.pi, 0.0, np.pi - 1e-12, -np.pi + 1e-12]  # the phi seam
    cfg = PileupConfig(mu=60, library="x")
    for particle_level in (False, True):
        assoc = pu.pv_associated(c, cfg, particle_level)
        assoc[ev == 3] = np.where(assoc[ev == 3] == 0, 1, assoc[ev == 3])  # event 3: no pileup tracks
        assert {-1, 0, 1} <= set(assoc.tolist())
        for radii in (pu.FEATURE_RADII, (0.3,), ()):
            got = pu.particle_features(c, cfg, None, assoc, particle_level, radii)
            ref = _reference_features(c, cfg, assoc, particle_level, radii)
            assert got.shape == ref.shape == (n, len(pu.feature_names(radii))) and got.dtype == np.float32
            np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-6)
            if radii:
                assert (got[ev == 3, -1] == 0).all() and np.abs(got[ev == 4, -1]).max() > 0.1
                assert (got[:, 12:15] > 0).any(axis=0).all()
    assert pu.particle_features({k: v[:0] for k, v in c.items()}, cfg, radii=pu.FEATURE_RADII).shape == (0, 20)
    # the numpy student: in-place float32 math = the layer-by-layer definition
    st = pu.Student("s", "x", rng.normal(size=20).astype(np.float32), rng.uniform(0.5, 2, 20).astype(np.float32),
                    [(rng.normal(size=(16, 20)).astype(np.float32), rng.normal(size=16).astype(np.float32)),
                     (rng.normal(size=(1, 16)).astype(np.float32), rng.normal(size=1).astype(np.float32))],
                    pu.FEATURE_RADII)
    x = pu.particle_features(c, cfg, radii=pu.FEATURE_RADII)
    h = np.maximum((x - st.mean) / st.std @ st.layers[0][0].T + st.layers[0][1], 0) @ st.layers[1][0].T + st.layers[1][1]
    np.testing.assert_array_equal(st(x), (0.5 * (1 + np.tanh(0.5 * h[:, 0].astype(np.float64)))).astype(np.float32))


def test_non_finite_kinematics_raise_one_clear_error():
    """NaN eta or phi used to index the compiled cell lists out of bounds (a segfault); now one DatasetError
    naming the field, from the features and from the class sums. A single candidate still works."""
    cfg = PileupConfig(mu=60, library="x")
    c = {"ev": np.zeros(3, np.int64), "pt": np.array([1.0, 2.0, 3.0]), "eta": np.array([0.0, 0.05, 0.1]),
         "phi": np.array([0.0, 0.1, 0.2]), "charge": np.array([1, 0, 1], np.int8), "type": np.array([0, 1, 0], np.int8),
         "dz": np.zeros(3), "e": np.array([2.0, 4.0, 6.0])}
    for key in ("eta", "phi", "pt", "e"):
        bad = {**c, key: np.where(np.arange(3) == 1, np.nan, c[key])}
        with pytest.raises(DatasetError, match=f"1 of 3 candidates have a non-finite {key}"):
            pu.particle_features(bad, cfg, radii=pu.FEATURE_RADII)
        with pytest.raises(DatasetError, match=f"non-finite {key}"):  # the teacher's inputs (no sums) too
            pu.particle_features(bad, cfg, radii=())
    with pytest.raises(DatasetError, match="non-finite phi"):
        pu._class_sums({**c, "phi": np.array([0.0, np.inf, 0.2])}, np.zeros(3, np.int64), 1, (0.4,), 0.0)
    one = pu.particle_features({k: v[:1] for k, v in c.items()}, cfg, radii=pu.FEATURE_RADII)
    assert one.shape == (1, 20) and np.isfinite(one).all() and (one[0, 12:] == 0).all()


def test_split_refuses_a_side_without_particles():
    """A validation split whose events are all empty gave a NaN validation loss, so no best model (and no
    student.npz) was ever written; now one DatasetError. Rows of events: the candidates in event order."""
    from darkshower.train.pileup import ParticleData, _split

    cnt = np.array([3, 0, 2, 0, 4])
    n = int(cnt.sum())
    d = ParticleData(np.arange(n, dtype=np.float32)[:, None], *(np.zeros(n, np.float32),) * 3, np.zeros(n, np.int8),
                     np.zeros(n, np.float32), cnt, [(0, i) for i in range(5)], {})
    np.testing.assert_array_equal(d.rows(np.array([4, 0, 1, 2])), [5, 6, 7, 8, 0, 1, 2, 3, 4])
    assert d.rows(np.zeros(0, np.int64)).shape == (0,)
    tr, va = _split(d, None, 0.4, 1, None)
    assert len(tr.pt) + len(va.pt) == n and len(va.pt) > 0
    empty = d.events(np.array([1, 3, 0]))
    with pytest.raises(DatasetError, match="hold no particles"):
        for seed in range(20):  # some seed puts only empty events into validation
            _split(empty, None, 0.34, seed, None)


def test_generate_with_distillnet_weights(world, tmp_path):
    out = tmp_path / "dn"
    rc = main(["generate", "qcd", "--events", "6", "--seed", "8", "--chunk-size", "6", "--set", "pthat_min=300",
               "--set", "store_particles=true", "--pileup", "10", "--pileup-library", str(world["lib"]),
               "--pu-mitigation", f"distillnet:{world['student']}", "--out", str(out), "--jobs", "1",
               "--no-progress"])
    assert rc == 0
    man = json.loads((out / "manifest.json").read_text())
    dn = man["pileup"]["distillnet"]
    assert dn["run"] == str(world["student"].resolve())
    assert dn["student_sha256"] == hashlib.sha256((world["student"] / "student.npz").read_bytes()).hexdigest()
    assert man["config"]["pileup"]["mitigation"] == f"distillnet:{world['student'].resolve()}"
    from darkshower.data.dataset import open_dataset

    a = open_dataset(out).arrays()
    p = a.particles
    w = ak.to_numpy(ak.flatten(p.weight))
    assert ((w >= 0) & (w <= 1)).all() and w.std() > 0
    # the stored weight is the student's output on the stored candidates (below weight_min: 0)
    cnt = ak.to_numpy(ak.num(p))
    flat = ak.flatten(p)
    c = {k: ak.to_numpy(flat[k]).astype(np.float64 if k in ("pt", "eta", "phi", "e", "dz") else None)
         for k in ("pt", "eta", "phi", "e", "dz", "charge", "type")}
    c["ev"] = np.repeat(np.arange(len(cnt)), cnt)
    cfg = PileupConfig(**man["config"]["pileup"])
    st = pu.load_student(world["student"])
    expect = st(pu.particle_features(c, cfg, None, radii=st.radii))
    expect = np.where(expect < cfg.puppi.weight_min, 0, expect)
    np.testing.assert_allclose(w, expect, atol=2e-3)  # stored particles are float32: the features differ slightly
    # MET is built from the weighted candidates
    px = np.bincount(c["ev"], weights=w * c["pt"] * np.cos(c["phi"]))
    py = np.bincount(c["ev"], weights=w * c["pt"] * np.sin(c["phi"]))
    np.testing.assert_allclose(ak.to_numpy(a.met_pt), np.hypot(px, py), rtol=1e-3, atol=1e-2)


def test_cli_info_score_and_train_help_on_distillnet_runs(world, tmp_path, capsys):
    """info summarizes a pu-gnn / pu-student run; score refuses them with the way to use them; nothing is written."""
    for run, kind in ((world["teacher"], "pu-gnn"), (world["student"], "pu-student")):
        assert main(["info", str(run)]) == 0
        out = capsys.readouterr().out
        assert f"method    {kind}: DistillNet" in out and "status    finished" in out
        assert "--pu-mitigation distillnet:" + (str(run) if kind == "pu-student" else "STUDENT_RUN") in out
        assert main(["info", str(run), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["method"] == kind
        dest = tmp_path / "scores" / "s.parquet"
        assert main(["score", str(run), str(world["data"]), "--out", str(dest), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert f"a {kind} run" in err and "not scored" in err and "--pu-mitigation distillnet:" in err
        assert not (tmp_path / "scores").exists()
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_ = "".join(capsys.readouterr().out.split())  # (argparse wraps lines, also at hyphens)
    assert "pu-gnn:theDistillNetpileupteacher" in help_ and "auto:therecommendeddefault" in help_


def test_export_onnx_student_and_teacher(world, tmp_path):
    pytest.importorskip("onnxruntime")
    import onnxruntime as ort

    from darkshower.export.onnx import export_onnx

    info = export_onnx(world["student"], tmp_path / "student.onnx")
    assert info["inputs"] == ["x"] and info["max_abs_diff"] < 1e-5
    x = np.random.default_rng(0).normal(size=(33, len(pu.feature_names()))).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "student.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], pu.load_student(world["student"])(x), atol=1e-5)
    info = export_onnx(world["teacher"], tmp_path / "teacher.onnx")
    assert info["inputs"] == ["x", "coords", "nbr"] and info["max_abs_diff"] < 1e-4
    # a real event of another size: the graph from knn_graph, the same probabilities as torch
    from darkshower.models.pileup_gnn import knn_graph

    _, model, cfg, _ = load_pu_run(world["teacher"])
    d = load_particles([world["data"]], max_events=1, show_progress=False)
    nbr = knn_graph(d.eta, d.phi, np.zeros(len(d.eta), np.int64), cfg.model.k)
    coords = np.column_stack([d.eta, d.phi]).astype(np.float32)
    sess = ort.InferenceSession(str(tmp_path / "teacher.onnx"), providers=["CPUExecutionProvider"])
    if info["dynamic_batch"]:
        got = sess.run(None, {"x": d.x, "coords": coords, "nbr": nbr})[0]
        with torch.no_grad():
            ref = torch.sigmoid(model(torch.from_numpy(d.x), torch.from_numpy(coords), torch.from_numpy(nbr))).numpy()
        np.testing.assert_allclose(got, ref, atol=1e-5)


def test_resume_continues_the_run(world, tmp_path):
    cfg = {"batch_events": 3, "threads": 1, "model": {"hidden": 16, "message": 8, "k": 4}}
    full = train_pu_gnn([world["data"]], tmp_path / "full", epochs=2, seed=2, progress_=False, config=cfg)
    part = train_pu_gnn([world["data"]], tmp_path / "part", epochs=1, seed=2, progress_=False, config=cfg)
    assert len(json.loads((part / "metrics.json").read_text())) == 1
    train_pu_gnn([world["data"]], part, epochs=2, progress_=False, resume=True)
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((part / "metrics.json").read_text())
    assert [r["epoch"] for r in b] == [1, 2]
    assert [r["train_loss"] for r in a] == pytest.approx([r["train_loss"] for r in b], rel=1e-6)
    with pytest.raises(ConfigError, match="may change only"):
        train_pu_gnn([world["data"]], part, epochs=3, progress_=False, resume=True, config={"lr": 0.5})
    with pytest.raises(RunError, match="not empty"):
        train_pu_gnn([world["data"]], part, epochs=3, progress_=False)
    # the student resumes the same way, and its student.npz follows the best epoch
    scfg = {"batch_size": 2048, "threads": 1, "hidden": [16, 8]}
    sfull = distill_particles(world["teacher"], [world["data"]], tmp_path / "sfull", epochs=2, seed=3,
                              progress_=False, config=scfg)
    spart = distill_particles(world["teacher"], [world["data"]], tmp_path / "spart", epochs=1, seed=3,
                              progress_=False, config=scfg)
    distill_particles(world["teacher"], [world["data"]], spart, epochs=2, progress_=False, resume=True)
    a = json.loads((sfull / "metrics.json").read_text())
    b = json.loads((spart / "metrics.json").read_text())
    assert [r["train_loss"] for r in a] == pytest.approx([r["train_loss"] for r in b], rel=1e-6)
    np.testing.assert_allclose(pu.load_student(spart).layers[0][0], pu.load_student(sfull).layers[0][0], atol=1e-6)


def test_errors(world, tmp_path):
    # a dataset without pileup / with CHS cannot train the teacher
    nopu = generate(dict(QCD, events=2, chunk_size=2), tmp_path / "nopu", jobs=1, progress=False)
    with pytest.raises(DatasetError, match="--pileup MU"):
        train_pu_gnn([nopu.path], tmp_path / "r1", epochs=1, progress_=False)
    chs = generate(dict(QCD, events=2, chunk_size=2, pileup={**world["pileup"], "mitigation": "chs"}),
                   tmp_path / "chs", jobs=1, progress=False)
    with pytest.raises(DatasetError, match="chs"):
        train_pu_gnn([chs.path], tmp_path / "r2", epochs=1, progress_=False)
    # per-particle needs a pu-gnn teacher; a pu-gnn teacher needs per-particle
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "run.json").write_text(json.dumps({"format": "darkshower-run", "format_version": "1.0", "method": "ae-hlf"}))
    with pytest.raises(ConfigError, match="pu-gnn teacher"):
        distill_particles(fake, [world["data"]], tmp_path / "s1", epochs=1, progress_=False)
    args = ["distill", str(world["teacher"]), "--data", str(world["data"]), "--out", str(tmp_path / "s2"),
            "--epochs", "1", "--no-progress"]
    assert main([*args, "--student", "mlp"]) == 2
    assert not (tmp_path / "s2").exists()
    # generate: a bad mitigation, a missing or corrupt student fail before any event is written
    base = ["generate", "qcd", "--events", "2", "--set", "pthat_min=300", "--pileup", "10", "--pileup-library",
            str(world["lib"]), "--jobs", "1", "--no-progress"]
    assert main([*base, "--out", str(tmp_path / "g1"), "--pu-mitigation", "distillnet:"]) == 2
    assert main([*base, "--out", str(tmp_path / "g2"), "--pu-mitigation", f"distillnet:{tmp_path}"]) == 2
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "student.npz").write_bytes(b"not a zip file")
    with pytest.raises(DatasetError, match="corrupt"):
        generate(dict(QCD, events=2, pileup={**world["pileup"], "mitigation": f"distillnet:{bad}"}),
                 tmp_path / "g3", jobs=1, progress=False)
    z = dict(np.load(world["student"] / "student.npz"))
    z["feature_version"] = np.array(99)
    np.savez(bad / "student.npz", **z)
    with pytest.raises(DatasetError, match="version 99"):
        generate(dict(QCD, events=2, pileup={**world["pileup"], "mitigation": f"distillnet:{bad}"}),
                 tmp_path / "g4", jobs=1, progress=False)
    for g in ("g1", "g2", "g3", "g4"):
        assert not (tmp_path / g / "manifest.json").exists()


@pytest.mark.slow
def test_export_hls4ml_student(world, tmp_path):
    """The student's MLP through hls4ml (standardization on the host), emulated vs float on its training data."""
    pytest.importorskip("hls4ml")
    from darkshower.export.hls4ml import export_hls4ml

    r = export_hls4ml(world["student"], tmp_path / "hls")
    assert r["method"] == "pu-student" and r["host_preprocessing"] and r["n_features"] == len(pu.feature_names())
    assert r["corr"] > 0.99 and abs(r["delta_auc"]) < 0.01
