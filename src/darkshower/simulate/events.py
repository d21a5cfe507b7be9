"""From a batch of Pythia events (``Pythia.nextBatch`` awkward output) to darkshower event records.

All steps are vectorized over the whole batch: final-state selection, truth summaries, the
detector (numpy, flat arrays), jet clustering (FastJet, multi-event), jet truth matching.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import awkward as ak
import numpy as np

from darkshower.simulate import detector as det
from darkshower.simulate import pileup as pu
from darkshower.simulate.config import GenerateConfig
from darkshower.simulate.jets import cluster_jets, kinematics_from_p4
from darkshower.simulate.pythia import ChargeTable

INVISIBLE_IDS = np.array([12, 14, 16, 51, 52, 53])
DARK_QUARK = 4900101


def _is_invisible(absid: np.ndarray) -> np.ndarray:
    return np.isin(absid, INVISIBLE_IDS) | ((absid >= 4900000) & (absid < 5000000)) | (absid >= 999990)


@dataclass
class PileupSource:
    """The minimum-bias library and the random stream of one chunk's pileup overlay."""

    library: pu.Library | None
    rng: np.random.Generator


def _pu_field(x: np.ndarray, name: str) -> np.ndarray:
    return x.astype(bool) if name == "from_pv" else x.astype(np.float32)


def _delta_phi(a, b):
    return (a - b + np.pi) % (2 * np.pi) - np.pi


def build_events(batch: ak.Array, charges: ChargeTable, cfg: GenerateConfig, rng: np.random.Generator,
                 chunk: int, first_event: int, pileup: PileupSource | None = None) -> tuple[ak.Array, np.ndarray, np.ndarray]:
    """Turn one generated batch into event records.

    ``pileup`` (when ``cfg.pileup`` is active): the library and random stream of the overlay.
    Returns (records of the selected events, selection mask, weights of all events of the batch)."""
    prt = batch.prt
    n_ev = len(prt)
    counts_all = ak.to_numpy(ak.num(prt, axis=1))
    ev_all = np.repeat(np.arange(n_ev), counts_all)
    pid_all = ak.to_numpy(ak.flatten(prt.id)).astype(np.int32)
    status = ak.to_numpy(ak.flatten(prt.status))
    mom = ak.flatten(prt.p)
    px, py, pz, e = (ak.to_numpy(mom[c]) for c in ("px", "py", "pz", "e"))
    absid = np.abs(pid_all)

    # ---- truth ------------------------------------------------------------------------------
    dark_hadron = ((absid >= 4900110) & (absid < 4901000)) | (absid == 999999)
    n_dark_hadrons = np.bincount(ev_all[dark_hadron], minlength=n_ev)
    final = status > 0
    inv = final & _is_invisible(absid)
    n_invisible = np.bincount(ev_all[inv & np.isin(absid, (51, 52, 53))], minlength=n_ev)
    inv_pt = np.hypot(px[inv], py[inv])
    invisible_pt = np.bincount(ev_all[inv], weights=inv_pt, minlength=n_ev)
    tmx = np.bincount(ev_all[inv], weights=px[inv], minlength=n_ev)
    tmy = np.bincount(ev_all[inv], weights=py[inv], minlength=n_ev)
    dq = (absid == DARK_QUARK) & (np.abs(status) == 23)
    dq_pt, dq_eta, dq_phi, _ = kinematics_from_p4(px[dq], py[dq], pz[dq], e[dq])
    dq_counts = np.bincount(ev_all[dq], minlength=n_ev)

    # ---- visible final state ----------------------------------------------------------------
    vis = final & ~inv
    vi = np.flatnonzero(vis)
    v_pt, v_eta, v_phi, _ = kinematics_from_p4(px[vi], py[vi], pz[vi], e[vi])
    v_pid = pid_all[vi]
    vprod = ak.flatten(prt.vProd)[vi]
    if ak.any(~ak.is_none(vprod)):
        vx = ak.to_numpy(ak.fill_none(vprod.px, 0.0))
        vy = ak.to_numpy(ak.fill_none(vprod.py, 0.0))
    else:
        vx = vy = np.zeros(len(vi))
    r_prod = np.hypot(vx, vy)
    d0 = vx * np.sin(v_phi) - vy * np.cos(v_phi)  # straight-line transverse impact parameter
    parts = dict(ev=ev_all[vi], pt=v_pt, eta=v_eta, phi=v_phi, e=e[vi], pid=v_pid, charge=charges(v_pid),
                 d0=d0, r_prod=r_prod)

    dz_sigma = None
    if pileup is not None:  # overlay minimum-bias interactions (adds dz, from_pv)
        eta_max = det.CALO_ETA_MAX if cfg.detector.name == "cms" else None  # beyond it pileup is unseen
        parts, n_pu, pv_z = pu.overlay(parts, n_ev, pileup.library, cfg.pileup, pileup.rng, eta_max)
        dz_sigma = partial(pu.dz_sigma, cfg=cfg.pileup)
    if cfg.detector.name == "cms":
        cands = det.cms_detector(parts, rng, cfg.detector.track_r_max_mm, cfg.detector.d0_resolution_mm, dz_sigma)
    else:
        cands = det.particle_level(parts)
    pu_fields: tuple[str, ...] = ()
    if pileup is not None:
        cands = pu.mitigate(cands, cfg.pileup, n_pu + 1, particle_level=cfg.detector.name == "none")
        pu_fields = ("dz", "from_pv", "weight") if "weight" in cands else ("dz", "from_pv")

    # ---- missing pT from what the detector sees ---------------------------------------------
    cpx = cands["pt"] * np.cos(cands["phi"])
    cpy = cands["pt"] * np.sin(cands["phi"])
    if "weight" in cands:  # PUPPI-like weights scale the candidates' 4-momenta
        cpx, cpy = cpx * cands["weight"], cpy * cands["weight"]
    mex = -np.bincount(cands["ev"], weights=cpx, minlength=n_ev)
    mey = -np.bincount(cands["ev"], weights=cpy, minlength=n_ev)

    # ---- jets ---------------------------------------------------------------------------------
    all_cands = cands
    # jets with |eta| < eta_max cannot hold particles beyond eta_max + 2R: skip those in clustering
    jc = cfg.jets
    central = np.abs(cands["eta"]) < jc.eta_max + 2 * jc.radius
    if "weight" in cands:  # weighted candidates are clustered; weight 0 ones are not
        central &= cands["weight"] > 0
    cands = {k: v[central] for k, v in cands.items()}
    cpx, cpy = cpx[central], cpy[central]
    ccount = np.bincount(cands["ev"], minlength=n_ev)
    pz_c = cands["pt"] * np.sinh(cands["eta"])
    e_c = cands["e"]
    if "weight" in cands:
        pz_c, e_c = pz_c * cands["weight"], e_c * cands["weight"]
    flat = ak.zip(
        {
            "px": cpx, "py": cpy, "pz": pz_c, "e": e_c,
            "pt": cands["pt"].astype(np.float32), "eta": cands["eta"].astype(np.float32),
            "phi": cands["phi"].astype(np.float32), "charge": cands["charge"].astype(np.int8),
            "pid": cands["pid"].astype(np.int32), "type": cands["type"].astype(np.int8),
            "d0": cands["d0"].astype(np.float32), "r_prod": cands["r_prod"].astype(np.float32),
            **({"e_raw": cands["e"]} if "weight" in cands else {}),
            **{k: _pu_field(cands[k], k) for k in pu_fields},
        }
    )
    particles = ak.unflatten(flat, ccount)
    jets = cluster_jets(particles, jc.radius, jc.pt_min, jc.eta_max, pt_max=jc.pt_max)
    # keep only the stored constituent fields (E as float32; unweighted: `weight` holds the weight)
    cons = jets.constituents
    cons = ak.zip(
        {
            "pt": cons.pt, "eta": cons.eta, "phi": cons.phi, "e": ak.values_astype(cons["e_raw" if "weight" in cands else "e"], np.float32),
            "charge": cons.charge, "pid": cons.pid, "type": cons["type"], "d0": cons.d0, "r_prod": cons.r_prod,
            **{k: cons[k] for k in pu_fields},
        }
    )
    # dark-parton matching
    jet_counts = ak.to_numpy(ak.num(jets, axis=1))
    jeta = ak.to_numpy(ak.flatten(jets.eta)).astype(np.float64)
    jphi = ak.to_numpy(ak.flatten(jets.phi)).astype(np.float64)
    jev = np.repeat(np.arange(n_ev), jet_counts)
    dark_dr = np.full(len(jeta), 99.0)
    if dq.any() and len(jeta):
        dq_off = np.concatenate([[0], np.cumsum(dq_counts)[:-1]])
        for k in range(int(dq_counts.max())):  # at most a handful of dark partons per event
            has = dq_counts[jev] > k
            idx = dq_off[jev[has]] + k
            dr = np.hypot(jeta[has] - dq_eta[idx], _delta_phi(jphi[has], dq_phi[idx]))
            dark_dr[has] = np.minimum(dark_dr[has], dr)
    jets = ak.zip(
        {
            "pt": jets.pt, "eta": jets.eta, "phi": jets.phi, "mass": jets.mass,
            "n_constituents": jets.n_constituents, "constituents": cons,
            "dark_dr": ak.unflatten(dark_dr.astype(np.float32), jet_counts),
            "is_dark": ak.unflatten(dark_dr < jc.radius, jet_counts),
        },
        depth_limit=2,
    )

    selected = jet_counts >= jc.min_jets
    event_number = first_event + np.arange(n_ev)
    weights = ak.to_numpy(ak.firsts(batch.info.weights)) if "weights" in ak.fields(batch.info) else np.ones(n_ev)
    weights = np.nan_to_num(np.asarray(weights, dtype=np.float64), nan=1.0)
    pt_hat = np.sqrt(np.clip(ak.to_numpy(batch.info.pT2Hat), 0, None))
    rec = {
        "event_id": (np.int64(chunk) << 32) | event_number.astype(np.int64),
        "chunk": np.full(n_ev, chunk, np.int32),
        "event": event_number.astype(np.int32),
        "weight": weights,
        "met_pt": np.hypot(mex, mey).astype(np.float32),
        "met_phi": np.arctan2(mey, mex).astype(np.float32),
        "jets": jets,
    }
    if pileup is not None:
        rec["n_pu"] = n_pu.astype(np.int32)
        rec["pv_z"] = pv_z.astype(np.float32)
    if cfg.resimulate > 1:
        group = event_number // cfg.resimulate
        rec["resim_id"] = (np.int64(chunk) << 32) | group.astype(np.int64)
        rec["resim_index"] = (event_number % cfg.resimulate).astype(np.int32)
    if cfg.store_particles:
        ac = all_cands
        pcount = np.bincount(ac["ev"], minlength=n_ev)
        rec["particles"] = ak.unflatten(ak.zip({
            "pt": ac["pt"].astype(np.float32), "eta": ac["eta"].astype(np.float32),
            "phi": ac["phi"].astype(np.float32), "e": ac["e"].astype(np.float32),
            "charge": ac["charge"].astype(np.int8), "pid": ac["pid"].astype(np.int32),
            "type": ac["type"].astype(np.int8), "d0": ac["d0"].astype(np.float32),
            "r_prod": ac["r_prod"].astype(np.float32), **{k: _pu_field(ac[k], k) for k in pu_fields}}), pcount)
    if jc.store_r04:
        j4 = cluster_jets(particles, 0.4, jc.r04_pt_min, jc.eta_max, with_constituents=False)
        rec["jets_r04"] = j4
    rec.update(
        {
            "n_dark_hadrons": n_dark_hadrons.astype(np.int32),
            "n_invisible": n_invisible.astype(np.int32),
            "invisible_pt": invisible_pt.astype(np.float32),
            "truth_met_pt": np.hypot(tmx, tmy).astype(np.float32),
            "pt_hat": pt_hat.astype(np.float32),
            "x1": ak.to_numpy(batch.info.x1).astype(np.float32),
            "x2": ak.to_numpy(batch.info.x2).astype(np.float32),
            "dark_partons": ak.unflatten(
                ak.zip({"pt": dq_pt.astype(np.float32), "eta": dq_eta.astype(np.float32),
                        "phi": dq_phi.astype(np.float32)}),
                dq_counts,
            ),
        }
    )
    records = ak.zip(rec, depth_limit=1)
    return records[selected], selected, weights
