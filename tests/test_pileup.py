"""Pileup overlay (minimum-bias library, Poisson vertices, from_pv truth, dz) and its mitigation (CHS,
PUPPI-like weights): hand-built events for the exact rules, small generated samples for the physics."""

from __future__ import annotations

import json

import awkward as ak
import numpy as np
import pytest
from scipy.stats import rankdata

from darkshower.cli.main import main
from darkshower.errors import ConfigError, DatasetError
from darkshower.simulate.config import PileupConfig, PuppiConfig
from darkshower.simulate.pileup import Library, chs, library_checksum, mitigate, overlay, puppi_weights, pv_associated
from darkshower.simulate.run import generate

MU = 20
QCD = {"process": "qcd", "events": 30, "seed": 7, "chunk_size": 30, "params": {"pthat_min": 300}}


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of ``scores`` for ``labels`` (Mann-Whitney, ties counted half)."""
    labels = labels.astype(bool)
    r = rankdata(scores)
    n1, n0 = labels.sum(), (~labels).sum()
    return float((r[labels].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


# ---- hand-built ---------------------------------------------------------------------------------
def _library(counts=(1, 10)) -> Library:
    n = sum(counts)
    rng = np.random.default_rng(0)
    arrays = {"pt": rng.uniform(0.2, 3, n), "eta": rng.uniform(-4, 4, n), "phi": rng.uniform(-np.pi, np.pi, n),
              "pid": np.full(n, 211, np.int32), "charge": np.ones(n, np.int8), "d0": np.zeros(n), "r_prod": np.zeros(n)}
    arrays["e"] = arrays["pt"] * np.cosh(arrays["eta"])
    c = np.array(counts, np.int64)
    return Library("lib", "0" * 64, 1, c, np.concatenate([[0], np.cumsum(c)[:-1]]), arrays)


def _signal(n_ev: int, per_event: int = 3) -> dict:
    n = n_ev * per_event
    ev = np.repeat(np.arange(n_ev), per_event)
    pt = 10.0 + np.arange(n)
    return dict(ev=ev, pt=pt, eta=np.zeros(n), phi=np.zeros(n), e=pt, pid=np.full(n, 22, np.int32),
                charge=np.zeros(n, np.int8), d0=np.zeros(n), r_prod=np.zeros(n))


def test_overlay_truth_on_hand_built_events():
    lib = _library((1, 10))  # interactions of 1 or 10 particles: the count per event tells the picks
    cfg = PileupConfig(mu=4, library="lib", beam_spot_z_mm=35)
    sig = _signal(50)
    out, n_pu, z_pv = overlay(sig, 50, lib, cfg, np.random.default_rng(1))
    assert (np.diff(out["ev"]) >= 0).all()
    pv = out["from_pv"]
    # the hard-scatter particles are exactly the from_pv ones, unchanged, first in their event, dz = 0
    for k in ("ev", "pt", "eta", "phi", "e"):
        np.testing.assert_array_equal(out[k][pv], sig[k])
    assert (out["dz"][pv] == 0).all()
    n_other = np.bincount(out["ev"][~pv], minlength=50)
    ten = (n_other - n_pu) / 9  # n_other = a * 1 + b * 10 with a + b = n_pu
    assert np.allclose(ten, np.round(ten)) and (ten >= 0).all() and (ten <= n_pu).all()
    # every overlaid particle comes from the library (|eta| and pT kept, phi rotated, maybe mirrored)
    assert set(np.round(out["pt"][~pv], 9)) <= set(np.round(lib.arrays["pt"], 9))
    assert set(np.round(np.abs(out["eta"][~pv]), 9)) <= set(np.round(np.abs(lib.arrays["eta"]), 9))
    # particles of one interaction share a vertex: dz = z_vertex - z_PV takes n_pu distinct values
    for i in range(50):
        dzs = out["dz"][(out["ev"] == i) & ~pv]
        assert len(np.unique(dzs)) == n_pu[i]
    assert np.std(z_pv) == pytest.approx(35, rel=0.3)
    # same generator state -> same overlay; mu = 0 -> nothing added, nothing reordered
    again, n2, _ = overlay(sig, 50, lib, cfg, np.random.default_rng(1))
    assert all(np.array_equal(again[k], out[k]) for k in out) and np.array_equal(n2, n_pu)
    # a detector's acceptance: pileup beyond |eta| = 2 is left out, the vertices stay the same
    cut, n3, _ = overlay(sig, 50, lib, cfg, np.random.default_rng(1), eta_max=2.0)
    assert np.array_equal(n3, n_pu) and (np.abs(cut["eta"][~cut["from_pv"]]) < 2.0).all()
    assert (~cut["from_pv"]).sum() < (~pv).sum()
    none, n0, _ = overlay(sig, 50, None, PileupConfig(mu=0, mitigation="chs"), np.random.default_rng(1))
    assert (n0 == 0).all() and all(np.array_equal(none[k], sig[k]) for k in sig) and none["from_pv"].all()


def test_mean_number_of_vertices_is_mu():
    lib = _library((5,))
    for mu in (0.5, 7.0, 60.0):
        _, n_pu, _ = overlay(_signal(4000, 0), 4000, lib, PileupConfig(mu=mu, library="lib"),
                             np.random.default_rng(int(mu * 10)))
        sigma = np.sqrt(mu / 4000)
        assert abs(n_pu.mean() - mu) < 4 * sigma, (mu, n_pu.mean())
        assert n_pu.var() == pytest.approx(mu, rel=0.15)  # Poisson


def _candidates():
    """Detector-level candidates of one event: a PV jet of tracks + a neutral in its core; pileup
    tracks 5-20 mm away in z; neutral pileup spread over the event; one charged particle beyond the
    tracker."""
    rng = np.random.default_rng(3)
    n_jet, n_ue, n_pu, n_pun = 8, 30, 150, 80
    eta = np.concatenate([rng.normal(0, 0.05, n_jet), rng.uniform(-2.4, 2.4, n_ue), rng.uniform(-2.4, 2.4, n_pu),
                          [0.02], rng.uniform(-2.4, 2.4, n_pun), [3.5]])
    phi = np.concatenate([rng.normal(0, 0.05, n_jet), rng.uniform(-3, 3, n_ue), rng.uniform(-3, 3, n_pu),
                          [0.01], rng.uniform(-3, 3, n_pun), [1.0]])
    pt = np.concatenate([np.full(n_jet, 30.0), rng.uniform(0.3, 1.5, n_ue), rng.uniform(0.3, 1.5, n_pu), [20.0],
                         rng.uniform(1.0, 3.0, n_pun), [5.0]])
    charge = np.concatenate([np.ones(n_jet + n_ue + n_pu), np.zeros(1 + n_pun), [1]]).astype(np.int8)
    from_pv = np.concatenate([np.ones(n_jet + n_ue, bool), np.zeros(n_pu, bool), [True], np.zeros(n_pun, bool), [False]])
    dz = np.where(from_pv, 0.0, rng.choice([-1, 1], len(pt)) * rng.uniform(5, 20, len(pt)))
    dz[charge == 0] = 0.0
    n = len(pt)
    c = dict(ev=np.zeros(n, np.int64), pt=pt, eta=eta, phi=phi, e=pt * np.cosh(eta), charge=charge,
             pid=np.where(charge != 0, 211, 130).astype(np.int32), type=np.where(charge != 0, 0, 4).astype(np.int8),
             d0=np.zeros(n), r_prod=np.zeros(n), dz=dz, from_pv=from_pv)
    return c


def test_chs_removes_exactly_the_charged_pileup():
    c = _candidates()
    cfg = PileupConfig(mitigation="chs")
    assoc = pv_associated(c, cfg)
    track = (c["charge"] != 0) & (np.abs(c["eta"]) <= 2.5)
    assert (assoc[~track] == -1).all()
    np.testing.assert_array_equal(assoc[track] == 1, c["from_pv"][track])
    out = chs(c, assoc)
    removed = track & ~c["from_pv"]
    assert len(out["pt"]) == len(c["pt"]) - removed.sum()
    np.testing.assert_array_equal(out["pt"], c["pt"][~removed])
    assert mitigate(c, cfg, np.array([20]))["pt"].tolist() == out["pt"].tolist()
    # at particle level the association is the truth, whatever dz says
    c2 = {**c, "dz": np.zeros(len(c["pt"]))}
    np.testing.assert_array_equal(pv_associated(c2, cfg, particle_level=True)[track] == 1, c["from_pv"][track])


def test_puppi_weights_hand_built():
    c = _candidates()
    cfg = PileupConfig(mitigation="puppi")
    assoc = pv_associated(c, cfg)
    w = puppi_weights(c, assoc, np.array([21]), PuppiConfig())
    track = assoc >= 0
    assert (w[track & c["from_pv"]] == 1).all() and (w[track & ~c["from_pv"]] == 0).all()
    core = np.flatnonzero((c["charge"] == 0) & c["from_pv"])[0]  # the neutral inside the PV jet
    assert w[core] > 0.99
    pu_neutral = (c["charge"] == 0) & ~c["from_pv"]
    assert w[pu_neutral].mean() < 0.3
    assert ((w >= 0) & (w <= 1)).all()
    # the same event without any pileup track has no pileup reference: neutrals keep weight 1
    keep = ~(track & ~c["from_pv"])
    c0 = {k: v[keep] for k, v in c.items()}
    w0 = puppi_weights(c0, pv_associated(c0, cfg), np.array([1]), PuppiConfig())
    assert (w0[c0["charge"] == 0] == 1).all()
    out = mitigate(c, cfg, np.array([21]))
    np.testing.assert_array_equal(out["weight"], w)
    assert len(out["pt"]) == len(c["pt"])  # PUPPI drops nothing, it weights


# ---- generated samples --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    """One small minimum-bias library and QCD samples with and without pileup, made once."""
    root = tmp_path_factory.mktemp("pileup")
    lib = generate({"process": "minbias", "events": 150, "seed": 5, "chunk_size": 150}, root / "mb",
                   jobs=1, progress=False)
    pu = {"mu": MU, "library": str(root / "mb")}
    out = {"root": root, "lib": lib}
    runs = {
        "nopu": dict(QCD, store_particles=True),
        "pu": dict(QCD, store_particles=True, pileup=pu),
        "puppi": dict(QCD, store_particles=True, pileup={**pu, "mitigation": "puppi"}),
        "gen": dict(QCD, store_particles=True, detector={"name": "none"}),
        "gen_pu": dict(QCD, store_particles=True, detector={"name": "none"}, pileup=pu),
        "gen_chs": dict(QCD, store_particles=True, detector={"name": "none"}, pileup={**pu, "mitigation": "chs"}),
    }
    for name, cfg in runs.items():
        out[name] = generate(cfg, root / name, jobs=1, progress=False)
    return out


def _by_event(ds) -> dict[int, ak.Record]:
    a = ds.arrays()
    return {int(e): a[i] for i, e in enumerate(ak.to_numpy(a.event))}


def test_minbias_library(samples):
    lib = samples["lib"]
    m = lib.manifest
    assert m["process"] == "minbias" and m["config"]["detector"]["name"] == "none"
    assert m["config"]["jets"]["min_jets"] == 0 and m["config"]["store_particles"] is True
    assert "SoftQCD:nonDiffractive = on" in m["provenance"]["pythia_settings"]
    a = lib.arrays()
    assert lib.n_events == 150 and ak.all(ak.num(a.particles) > 0)
    assert 100 < float(ak.mean(ak.num(a.particles))) < 400  # ~220 visible stable particles at 13 TeV


def test_mu_zero_is_bit_identical(samples, tmp_path):
    out = tmp_path / "mu0"
    rc = main(["generate", "qcd", "--events", "30", "--seed", "7", "--chunk-size", "30", "--set", "pthat_min=300",
               "--set", "store_particles=true", "--pileup", "0", "--out", str(out), "--no-progress"])
    assert rc == 0
    ref = samples["nopu"]
    for name in ("chunk-00000.parquet",):
        assert (out / name).read_bytes() == (ref.path / name).read_bytes()
    m = json.loads((out / "manifest.json").read_text())
    assert m["config"] == ref.manifest["config"] and "pileup" not in m


def test_pileup_manifest_and_vertices(samples):
    ds = samples["pu"]
    m = ds.manifest
    lib = samples["lib"]
    assert m["config"]["pileup"]["mu"] == MU
    assert m["pileup"]["library"]["path"] == str(lib.path.resolve())
    assert m["pileup"]["library"]["content_sha256"] == library_checksum(lib.path)
    assert m["pileup"]["library"]["run_seed"] == 5
    assert m["provenance"]["pileup_chunk_seeds"] == [m["chunks"][0]["pileup_seed"]]
    a = ds.arrays()
    n_pu = ak.to_numpy(a.n_pu)
    assert abs(n_pu.mean() - MU) < 4 * np.sqrt(MU / len(n_pu)) + 1.0  # + 1: the jet selection favours more pileup
    assert ak.all(a.n_pu >= 0) and "pv_z" in ak.fields(a)
    frac = float(ak.mean(a.particles.from_pv))
    assert 0.05 < frac < 0.5  # ~200 PV candidates vs ~20 x 50 from pileup
    cons = a.jets.constituents
    assert {"dz", "from_pv"} <= set(ak.fields(cons)) and "weight" not in ak.fields(cons)


def test_particle_level_truth_and_chs(samples):
    """At particle level nothing is random but the overlay: the from_pv particles of each event are
    exactly the no-pileup event's, and CHS removes exactly the charged pileup inside the tracker."""
    base, pu, ch = _by_event(samples["gen"]), _by_event(samples["gen_pu"]), _by_event(samples["gen_chs"])
    lib_mean = float(ak.mean(ak.num(samples["lib"].arrays().particles)))
    common = sorted(set(base) & set(pu) & set(ch))
    assert len(common) >= 20
    n_other, n_int = 0, 0
    for e in common:
        p0, p1, p2 = base[e].particles, pu[e].particles, ch[e].particles
        pv = ak.to_numpy(p1.from_pv)
        assert ak.to_list(p1[pv].pt) == ak.to_list(p0.pt) and ak.to_list(p1[pv].pid) == ak.to_list(p0.pid)
        assert np.all(ak.to_numpy(p1[pv].dz) == 0) and np.all(ak.to_numpy(p1[~pv].dz) != 0)
        n_other += int((~pv).sum())
        n_int += int(pu[e].n_pu)
        charged_pu = (ak.to_numpy(p1.charge) != 0) & (np.abs(ak.to_numpy(p1.eta)) <= 2.5) & ~pv
        assert ak.to_list(p2.pt) == ak.to_list(p1[~charged_pu].pt)
    assert n_other / n_int == pytest.approx(lib_mean, rel=0.25)


def test_pileup_degrades_jets_and_met(samples):
    """Same hard events with and without pileup: jets gain mass, MET moves away from the truth;
    PUPPI-like weights bring the jet mass back towards the no-pileup value."""
    a0, a1, a2 = _by_event(samples["nopu"]), _by_event(samples["pu"]), _by_event(samples["puppi"])
    common = sorted(set(a0) & set(a1) & set(a2))
    assert len(common) >= 20
    m0, m1, m2 = (np.array([float(a[e].jets.mass[0]) for e in common]) for a in (a0, a1, a2))
    assert m1.mean() > m0.mean() + 10
    assert abs(m2.mean() - m0.mean()) < abs(m1.mean() - m0.mean())

    def met_err(a):
        return np.array([abs(float(a[e].met_pt) - float(a[e].truth_met_pt)) for e in common])

    assert met_err(a1).mean() > met_err(a0).mean()


def test_puppi_weights_separate_pv_from_pileup(samples):
    a = samples["puppi"].arrays()
    p = ak.flatten(a.particles)
    w, pv, q = (ak.to_numpy(p[k]) for k in ("weight", "from_pv", "charge"))
    assert ((w >= 0) & (w <= 1)).all()
    assert w[pv].mean() > w[~pv].mean()
    assert auc(pv, w) > 0.7
    assert auc(pv[q == 0], w[q == 0]) > 0.6  # neutrals: the hard part
    cons = a.jets.constituents
    assert "weight" in ak.fields(cons) and ak.all(ak.flatten(cons.weight, axis=None) > 0)  # w = 0 not clustered


# ---- errors -------------------------------------------------------------------------------------
def test_pileup_errors(samples, tmp_path):
    with pytest.raises(ConfigError, match="minimum-bias library"):
        generate(dict(QCD, pileup={"mu": 5}), tmp_path / "a", jobs=1, progress=False)
    with pytest.raises(DatasetError, match="not minbias"):
        generate(dict(QCD, pileup={"mu": 5, "library": str(samples["nopu"].path)}), tmp_path / "b", jobs=1,
                 progress=False)
    with pytest.raises(DatasetError, match="ecm"):
        generate(dict(QCD, ecm=14000, pileup={"mu": 5, "library": str(samples["lib"].path)}), tmp_path / "c",
                 jobs=1, progress=False)
    with pytest.raises(DatasetError, match="no manifest"):
        generate(dict(QCD, pileup={"mu": 5, "library": str(tmp_path)}), tmp_path / "d", jobs=1, progress=False)
    with pytest.raises(ConfigError, match=r"detector\.name"):
        generate({"process": "minbias", "events": 5, "detector": {"name": "cms"}}, tmp_path / "e", jobs=1,
                 progress=False)
    with pytest.raises(ConfigError, match="no pileup"):
        generate({"process": "minbias", "events": 5, "pileup": {"mu": 1, "library": "x"}}, tmp_path / "f", jobs=1,
                 progress=False)
    assert not any((tmp_path / x).exists() for x in "abcdef")  # nothing left behind
    assert main(["generate", "qcd", "--events", "5", "--pileup", "3", "--out", str(tmp_path / "g")]) == 2


def test_resume_with_a_changed_library_is_refused(samples, tmp_path):
    import shutil

    lib = tmp_path / "mb"
    shutil.copytree(samples["lib"].path, lib)
    cfg = dict(QCD, events=5, chunk_size=5, pileup={"mu": 2, "library": str(lib)})
    generate(cfg, tmp_path / "run", jobs=1, progress=False)
    # revisiting the complete library with generate changes neither its manifest nor its content
    before = library_checksum(lib)
    generate({"process": "minbias", "events": 150, "seed": 5, "chunk_size": 150}, lib, jobs=1, progress=False)
    assert library_checksum(lib) == before
    generate(cfg, tmp_path / "run", jobs=1, progress=False)  # the overlaid dataset is still accepted
    m = json.loads((lib / "manifest.json").read_text())
    m["config"]["seed"] = 6  # another library
    (lib / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(DatasetError, match="another version of the pileup library"):
        generate(cfg, tmp_path / "run", jobs=1, progress=False)


@pytest.mark.slow
def test_pileup_independent_of_jobs(samples, tmp_path):
    cfg = dict(QCD, events=20, chunk_size=10, pileup={"mu": 5, "library": str(samples["lib"].path),
                                                        "mitigation": "puppi"})
    d1 = generate(cfg, tmp_path / "j1", jobs=1, progress=False)
    d2 = generate(cfg, tmp_path / "j2", jobs=2, progress=False)
    assert [c["sha256"] for c in d1.chunks] == [c["sha256"] for c in d2.chunks]


def test_puppi_search_blocks_do_not_change_weights(monkeypatch):
    import darkshower.simulate.pileup as pu

    c = _candidates()
    n = len(c["pt"])
    many = {k: np.concatenate([v] * 5) for k, v in c.items()}  # five copies as five events
    many["ev"] = np.repeat(np.arange(5), n)
    cfg = PileupConfig(mitigation="puppi")
    assoc = pv_associated(many, cfg)
    w_one = puppi_weights(many, assoc, np.full(5, 21), PuppiConfig())
    monkeypatch.setattr(pu, "_BLOCK", 300)  # about one event per block
    w_blocks = puppi_weights(many, assoc, np.full(5, 21), PuppiConfig())
    np.testing.assert_array_equal(w_one, w_blocks)
    np.testing.assert_array_equal(w_one[:n], w_one[n:2 * n])  # events do not see each other
