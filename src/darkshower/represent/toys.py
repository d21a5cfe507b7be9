"""Toy events in the dataset schema (for tests, benchmarks and notebooks; no generator needed).

Jets are made of ``n_prongs`` collimated prongs; each prong's constituents have a broad pT
spectrum and an angular spread that grows for softer constituents, which is enough to give
realistic clustering trees, substructure and image occupancies.
"""

from __future__ import annotations

import awkward as ak
import numpy as np

#: candidate type probabilities (charged hadron, electron, muon, photon, neutral hadron)
TYPE_PROBS = np.array([0.60, 0.02, 0.01, 0.27, 0.10])
PID_OF_TYPE = np.array([211, 11, 13, 22, 130])


def _kin(px, py, pz, e):
    pt = np.hypot(px, py)
    eta = np.arcsinh(pz / np.where(pt > 0, pt, 1.0))
    phi = np.arctan2(py, px)
    m = np.sqrt(np.clip(e * e - px * px - py * py - pz * pz, 0.0, None))
    return pt, eta, phi, m


def toy_jets(
    n_jets: int,
    n_prongs: int = 1,
    seed: int | np.random.Generator = 0,
    n_constituents: tuple[int, int] = (50, 100),
    pt_range: tuple[float, float] = (300.0, 800.0),
    eta_range: tuple[float, float] = (-2.0, 2.0),
    prong_mass: float = 80.0,
    spread: float = 0.01,
    displacement: bool = False,
    phi: np.ndarray | None = None,
    eta: np.ndarray | None = None,
) -> ak.Array:
    """``n_jets`` toy jets (records like ``events.jets``), constituents sorted by decreasing pT."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    nc = rng.integers(n_constituents[0], n_constituents[1] + 1, n_jets)
    tot = int(nc.sum())
    jet_of = np.repeat(np.arange(n_jets), nc)
    jpt = rng.uniform(*pt_range, n_jets)
    jeta = rng.uniform(*eta_range, n_jets) if eta is None else np.broadcast_to(np.asarray(eta, float), (n_jets,))
    jphi = rng.uniform(-np.pi, np.pi, n_jets) if phi is None else np.broadcast_to(np.asarray(phi, float), (n_jets,))
    # prongs: pT fractions and positions (separation ~ 2 m / pT)
    if n_prongs > 1:
        frac = rng.dirichlet(np.full(n_prongs, 4.0), n_jets)
        sep = 2.0 * prong_mass / jpt
        ang = rng.uniform(0, 2 * np.pi, n_jets)
        k = np.arange(n_prongs)
        rad = sep[:, None] * (1.0 - frac)  # harder prongs closer to the axis
        pang = ang[:, None] + 2 * np.pi * k[None, :] / n_prongs
        pdeta = rad * np.cos(pang)
        pdphi = rad * np.sin(pang)
    else:
        frac = np.ones((n_jets, 1))
        pdeta = np.zeros((n_jets, 1))
        pdphi = np.zeros((n_jets, 1))
    u = rng.random(tot)
    cum = np.cumsum(frac, axis=1)[jet_of]
    prong = (u[:, None] > cum).sum(axis=1).clip(0, n_prongs - 1)
    w = rng.exponential(1.0, tot) ** 2.5 + 1e-3
    key = jet_of * n_prongs + prong
    wsum = np.bincount(key, weights=w, minlength=n_jets * n_prongs)
    z = w / wsum[key] * frac[jet_of, prong]
    cpt = z * jpt[jet_of]
    sigma = np.clip(spread / np.sqrt(np.clip(z * n_prongs, 1e-6, None)), 0.002, 0.4)
    ceta = jeta[jet_of] + pdeta[jet_of, prong] + rng.normal(0, 1, tot) * sigma
    cphi = jphi[jet_of] + pdphi[jet_of, prong] + rng.normal(0, 1, tot) * sigma
    cphi = (cphi + np.pi) % (2 * np.pi) - np.pi
    ctype = rng.choice(5, size=tot, p=TYPE_PROBS).astype(np.int8)
    charged = ctype <= 2
    charge = np.where(charged, rng.choice(np.array([-1, 1], np.int8), tot), 0).astype(np.int8)
    mass = np.where(ctype == 0, 0.13957, 0.0)
    ce = np.sqrt((cpt * np.cosh(ceta)) ** 2 + mass**2)
    pid = (PID_OF_TYPE[ctype] * np.where(charge != 0, charge, 1)).astype(np.int32)
    # sort constituents by decreasing pT inside each jet
    order = np.lexsort((-cpt, jet_of))
    fields = {
        "pt": cpt[order].astype(np.float32),
        "eta": ceta[order].astype(np.float32),
        "phi": cphi[order].astype(np.float32),
        "e": ce[order].astype(np.float32),
        "charge": charge[order],
        "pid": pid[order],
        "type": ctype[order],
    }
    if displacement:
        d0 = np.where(charged, rng.exponential(0.05, tot) * rng.choice([-1.0, 1.0], tot), 0.0)
        fields["d0"] = d0[order].astype(np.float32)
        fields["r_prod"] = np.abs(rng.exponential(0.1, tot))[order].astype(np.float32)
    cons = ak.unflatten(ak.zip(fields), nc)
    # jet kinematics: E-scheme sum of the (float32) constituents
    f = {k: np.asarray(v, np.float64) for k, v in fields.items() if k in ("pt", "eta", "phi", "e")}
    px = np.bincount(jet_of, f["pt"] * np.cos(f["phi"]), n_jets)
    py = np.bincount(jet_of, f["pt"] * np.sin(f["phi"]), n_jets)
    pz = np.bincount(jet_of, f["pt"] * np.sinh(f["eta"]), n_jets)
    e = np.bincount(jet_of, f["e"], n_jets)
    pt, eta_j, phi_j, m = _kin(px, py, pz, e)
    return ak.zip(
        {
            "pt": pt.astype(np.float32),
            "eta": eta_j.astype(np.float32),
            "phi": phi_j.astype(np.float32),
            "mass": m.astype(np.float32),
            "n_constituents": nc.astype(np.int32),
            "constituents": cons,
        },
        depth_limit=1,
    )


def toy_events(
    n_events: int,
    n_prongs: int = 1,
    seed: int = 0,
    jets_per_event: int = 2,
    **kwargs,
) -> ak.Array:
    """Events with ``jets_per_event`` toy jets (roughly back to back), MET and ids."""
    rng = np.random.default_rng(seed)
    nj = n_events * jets_per_event
    phi = rng.uniform(-np.pi, np.pi, n_events)
    jphi = np.repeat(phi, jets_per_event) + np.tile(np.arange(jets_per_event) * np.pi, n_events)
    jphi = (jphi + rng.normal(0, 0.2, nj) + np.pi) % (2 * np.pi) - np.pi
    jets = toy_jets(nj, n_prongs=n_prongs, seed=rng, phi=jphi, **kwargs)
    # order the jets of each event by decreasing pT
    ev = np.repeat(np.arange(n_events), jets_per_event)
    order = np.lexsort((-ak.to_numpy(jets.pt), ev))
    jets = ak.unflatten(jets[order], np.full(n_events, jets_per_event))
    event = np.arange(n_events, dtype=np.int32)
    return ak.zip(
        {
            "event_id": event.astype(np.int64),
            "chunk": np.zeros(n_events, np.int32),
            "event": event,
            "weight": np.ones(n_events),
            "met_pt": rng.exponential(50.0, n_events).astype(np.float32),
            "met_phi": rng.uniform(-np.pi, np.pi, n_events).astype(np.float32),
            "jets": jets,
        },
        depth_limit=1,
    )
