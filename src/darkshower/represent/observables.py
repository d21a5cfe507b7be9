"""High-level jet and event observables (one row per jet; per-event columns repeated).

Definitions (all distances in rapidity-azimuth, E-scheme recombination; see
docs/representations.md):

- ``mass``: invariant mass of the (weighted) constituents; ``pt, eta, phi`` of their sum.
- ``msoftdrop``: soft drop (C/A reclustering, z > z_cut (dR/R0)^beta, following the harder
  branch), default z_cut=0.1, beta=0, R0=0.8.
- ``tau1..tau3``: N-subjettiness, normalised measure, beta=1, R0=0.8, one-pass-optimised
  exclusive-kt axes (kt with R=pi/2, E-scheme; the CMS definition). ``tau21``, ``tau32``.
- ``c2, d2, n2``: ratios of normalised energy correlation functions with beta=1 (pT, dR):
  C2 = e3/e2^2, D2 = e3/e2^3, N2 = 2e3/(1e2)^2 (generalised ECFs; CMS ``n2b1``), computed on the
  soft-drop groomed constituents by default (as CMS does).
- ``girth`` = sum pT_i dR_i / sum pT_i, ``ptd`` = sqrt(sum pT^2)/sum pT, ``axis_major/minor``:
  square roots of the eigenvalues of the pT^2-weighted covariance of (dy, dphi).
- ``lund_*``: primary Lund plane of the C/A tree (number of declusterings, number with
  ln kT > 0 [kT in GeV], max ln kT).
- per event: ``met_pt, met_phi, mt`` (dijet + MET transverse mass), ``dphi_min`` (min over the
  two leading jets of |dphi(jet, MET)|), ``sphericity``/``aplanarity`` (eigenvalues of the
  momentum tensor of the whole event), ``n_event_particles`` (event multiplicity),
  ``n_event_constituents`` (constituents of all jets), ``n_jets``, ``ht``. "Whole event" is the
  ``particles`` collection when the dataset has it (``store_particles: true``), else all jet
  constituents (``event_collection``; recorded in ``DataFrame.attrs["event_collection"]``).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from darkshower.represent import kernels as K
from darkshower.represent.common import JetBatch, event_particles, jet_batch, wrap_phi
from darkshower.represent.common import event_collection as _event_collection

log = logging.getLogger(__name__)

JET_COLUMNS = K.OBS_COLUMNS
EVENT_COLUMNS = (
    "met_pt", "met_phi", "mt", "mjj", "dphi_min", "ht", "n_jets", "n_event_constituents",
    "n_event_particles", "sphericity", "aplanarity",
)


def jet_observables_array(
    batch: JetBatch,
    zcut: float = 0.1,
    sd_beta: float = 0.0,
    r0: float = 0.8,
    tau_beta: float = 1.0,
    ecf_groomed: bool = True,
) -> np.ndarray:
    """(n_jets, len(JET_COLUMNS)) float64 array of jet observables."""
    out = np.zeros((batch.n_jets, K.N_OBS), np.float64)
    if batch.n_jets:
        K.observables_kernel(
            batch.offsets, batch.pt, batch.eta, batch.phi, batch.e, batch.charge,
            float(zcut), float(sd_beta), float(r0), float(tau_beta), bool(ecf_groomed), out,
        )
    return out


def fill_jets_without_constituents(arr: np.ndarray, data, batch: JetBatch, max_jets: int | None) -> None:
    """Rows of ``arr`` (:func:`jet_observables_array` of ``batch``, built from ``data``) whose jet came without
    constituents (formats such as CMS TreeMaker): the jet record's four-vector and the observables the format
    stores per jet (:mod:`darkshower.represent.stored`) instead of the constituent kernel's zeros."""
    if not batch.n_jets or not (batch.counts == 0).any() or isinstance(data, JetBatch):
        return
    import awkward as ak

    from darkshower.represent.stored import fill_empty_jets

    arr_in = data if isinstance(data, ak.Array) else ak.Array(data)
    if "jets" in ak.fields(arr_in):
        jets = arr_in.jets if max_jets is None else arr_in.jets[:, :max_jets]
        flat = ak.flatten(jets, axis=1)
    else:
        flat = arr_in
    # jets that came without constituents (not those whose constituents all have weight <= 0: they stay 0)
    rows = np.flatnonzero(ak.to_numpy(ak.num(flat.constituents, axis=1)) == 0)
    if not len(rows):
        return
    record = {"pt": batch.jet_pt, "eta": batch.jet_eta, "phi": batch.jet_phi, "mass": batch.jet_mass}
    replaced = fill_empty_jets(arr, JET_COLUMNS, flat, rows, record)
    new = set(replaced) - _WARNED
    if new:
        _WARNED.update(new)
        log.warning(
            "jets without constituents: negative or non-finite stored values (producer placeholders such as CMS "
            "N2 = -99999) set to 0, the value darkshower gives an undefined observable: %s (in %d jets of this "
            "batch; said once per column and process)", ", ".join(f"{c} x{n}" for c, n in replaced.items()), len(rows))
    if len(rows) < batch.n_jets and "mixed" not in _WARNED:
        _WARNED.add("mixed")
        log.warning(
            "%d of %d jets have no constituents (the others do): their observables come from the jet record and "
            "the stored fields, and every observable neither gives (c2, d2, the Lund and soft-drop counts, ...) is "
            "0 for them (said once per process)", len(rows), batch.n_jets)


#: what fill_jets_without_constituents has warned about in this process
_WARNED: set[str] = set()


def jet_observables(
    data,
    max_jets: int | None = None,
    use_weights: bool = True,
    zcut: float = 0.1,
    sd_beta: float = 0.0,
    r0: float = 0.8,
    tau_beta: float = 1.0,
    ecf_groomed: bool = True,
) -> pd.DataFrame:
    """Per-jet observables as a DataFrame with ``event_id``, ``jet_idx`` and JET_COLUMNS."""
    batch = jet_batch(data, max_jets=max_jets, use_weights=use_weights)
    arr = jet_observables_array(batch, zcut, sd_beta, r0, tau_beta, ecf_groomed)
    fill_jets_without_constituents(arr, data, batch, max_jets)
    df = pd.DataFrame(arr, columns=list(JET_COLUMNS))
    for c in ("n_constituents", "n_charged", "n_softdrop", "lund_n_primary", "lund_n_primary_lnkt_gt0"):
        df[c] = df[c].astype(np.int32)
    df.insert(0, "jet_idx", batch.jet_idx.astype(np.int32))
    df.insert(0, "event_id", batch.event_id)
    return df


def sphericity_tensor_eigenvalues(batch: JetBatch, r: float = 2.0) -> np.ndarray:
    """Eigenvalues (descending) of S^ab = sum |p|^(r-2) p^a p^b / sum |p|^r per event (jet constituents)."""
    ev = np.repeat(batch.event_index, batch.counts)
    return _sphericity_eigenvalues(ev, batch.pt, batch.eta, batch.phi, batch.n_events, r)


def _sphericity_eigenvalues(ev, pt, eta, phi, n, r: float = 2.0) -> np.ndarray:
    px = pt * np.cos(phi)
    py = pt * np.sin(phi)
    pz = pt * np.sinh(eta)
    p2 = px * px + py * py + pz * pz
    w = np.ones_like(p2) if r == 2.0 else np.power(np.maximum(p2, 1e-30), 0.5 * r - 1.0)
    comps = (px, py, pz)
    t = np.zeros((n, 3, 3))
    for a in range(3):
        for b in range(a, 3):
            v = np.bincount(ev, weights=w * comps[a] * comps[b], minlength=n)
            t[:, a, b] = v
            t[:, b, a] = v
    norm = np.bincount(ev, weights=w * p2, minlength=n)
    good = norm > 0
    t[good] /= norm[good, None, None]
    lam = np.full((n, 3), np.nan)
    finite = np.isfinite(t).all(axis=(1, 2))  # a NaN/inf particle makes its event's shape NaN, not the batch fail
    lam[finite] = np.linalg.eigvalsh(t[finite])[:, ::-1]
    return lam


def event_observables(events, max_jets_mt: int = 2, use_weights: bool = True, sphericity_r: float = 2.0,
                      event_collection: str = "auto") -> pd.DataFrame:
    """One row per event: MET, MT(jj+MET), m_jj, dphi_min, HT, multiplicities, event shapes.

    MT, m_jj and dphi_min use the ``max_jets_mt`` leading jets (dataset jet records, which are
    pT-ordered), HT and n_jets all jets. The whole-event quantities (sphericity, aplanarity,
    ``n_event_particles``) use ``event_collection``: ``"auto"`` = the ``particles`` collection
    when the events have it, else all jet constituents; ``"jets"`` forces the constituents. The
    choice is recorded in ``df.attrs["event_collection"]``.
    """
    batch = jet_batch(events, use_weights=use_weights)
    n = batch.n_events
    import awkward as ak

    met = ak.to_numpy(events.met_pt).astype(np.float64) if "met_pt" in ak.fields(events) else np.zeros(n)
    metphi = ak.to_numpy(events.met_phi).astype(np.float64) if "met_phi" in ak.fields(events) else np.zeros(n)
    ev_ids = ak.to_numpy(events.event_id).astype(np.int64) if "event_id" in ak.fields(events) else np.arange(n)
    ev = batch.event_index
    lead = batch.jet_idx < max_jets_mt
    jpx = batch.jet_pt * np.cos(batch.jet_phi)
    jpy = batch.jet_pt * np.sin(batch.jet_phi)
    jpz = batch.jet_pt * np.sinh(batch.jet_eta)
    je = np.sqrt((batch.jet_pt * np.cosh(batch.jet_eta)) ** 2 + batch.jet_mass**2)
    sx = np.bincount(ev[lead], jpx[lead], n)
    sy = np.bincount(ev[lead], jpy[lead], n)
    sz = np.bincount(ev[lead], jpz[lead], n)
    se = np.bincount(ev[lead], je[lead], n)
    mjj2 = np.clip(se**2 - sx**2 - sy**2 - sz**2, 0, None)
    ptjj2 = sx**2 + sy**2
    etjj = np.sqrt(mjj2 + ptjj2)
    mx = met * np.cos(metphi)
    my = met * np.sin(metphi)
    mt2 = (etjj + met) ** 2 - (sx + mx) ** 2 - (sy + my) ** 2
    mt = np.sqrt(np.clip(mt2, 0, None))
    dphi = np.abs(wrap_phi(batch.jet_phi - metphi[ev]))
    dmin = np.full(n, np.nan)
    np.fmin.at(dmin, ev[lead], dphi[lead])
    ht = np.bincount(ev, batch.jet_pt, n)
    njets = np.bincount(ev, minlength=n)
    ncons = np.bincount(ev, weights=batch.counts, minlength=n).astype(np.int64)
    source = _event_collection(events, event_collection)
    if source == "jets":
        lam = sphericity_tensor_eigenvalues(batch, sphericity_r)
        npart = ncons
    else:
        pev, ppt, peta, pphi, _ = event_particles(events, source, use_weights)
        lam = _sphericity_eigenvalues(pev, ppt, peta, pphi, n, sphericity_r)
        npart = np.bincount(pev, minlength=n).astype(np.int64)
    df = pd.DataFrame(
        {
            "event_id": ev_ids,
            "met_pt": met,
            "met_phi": metphi,
            "mt": mt,
            "mjj": np.sqrt(mjj2),
            "dphi_min": dmin,
            "ht": ht,
            "n_jets": njets.astype(np.int32),
            "n_event_constituents": ncons,
            "n_event_particles": npart,
            "sphericity": 1.5 * (lam[:, 1] + lam[:, 2]),
            "aplanarity": 1.5 * lam[:, 2],
        }
    )
    df.attrs["event_collection"] = source
    return df


def observables_table(
    events,
    max_jets: int | None = 2,
    use_weights: bool = True,
    zcut: float = 0.1,
    sd_beta: float = 0.0,
    r0: float = 0.8,
    tau_beta: float = 1.0,
    ecf_groomed: bool = True,
    sphericity_r: float = 2.0,
    event_collection: str = "auto",
) -> pd.DataFrame:
    """The flat table: one row per (event_id, jet_idx) with the per-event columns repeated.

    Events without jets do not appear here; use :func:`event_observables` for the
    event-level table (one row per event).
    """
    jets = jet_observables(events, max_jets, use_weights, zcut, sd_beta, r0, tau_beta, ecf_groomed)
    evs = event_observables(events, use_weights=use_weights, sphericity_r=sphericity_r,
                            event_collection=event_collection)
    out = jets.merge(evs, on="event_id", how="left", validate="many_to_one")
    out.attrs["event_collection"] = evs.attrs["event_collection"]
    return out


def event_level_table(events, max_jets: int = 2, use_weights: bool = True, zcut: float = 0.1, sd_beta: float = 0.0,
                      r0: float = 0.8, tau_beta: float = 1.0, ecf_groomed: bool = True) -> pd.DataFrame:
    """One row per event with at least one jet: the ``max_jets`` leading jets' observables side by side
    (``j{i}_<JET_COLUMNS>``), a ``j{i}_present`` flag per slot (1 = the event has that jet; a missing jet's
    observables are 0), the :func:`event_observables` columns, ``rt`` = met_pt / mt (R_T; 0 when mt is 0)
    and ``dphi_j{i}`` = |dphi(jet i, MET)| (0 for a missing jet). Events without any jet are left out (as
    at jet level; ``df.attrs["n_without_jets"]`` counts them). ``mt``, ``mjj`` and ``dphi_min`` use the two
    leading jets whatever ``max_jets`` (as in :func:`event_observables`)."""
    batch = jet_batch(events, max_jets=max_jets, use_weights=use_weights)
    n = batch.n_events
    arr = jet_observables_array(batch, zcut, sd_beta, r0, tau_beta, ecf_groomed)
    fill_jets_without_constituents(arr, events, batch, max_jets)
    k = len(JET_COLUMNS)
    slots = np.zeros((n, max_jets, k + 2), np.float64)  # + present, dphi to MET
    slots[batch.event_index, batch.jet_idx, :k] = arr
    slots[batch.event_index, batch.jet_idx, k] = 1.0
    evs = event_observables(events, use_weights=use_weights)
    metphi = evs["met_phi"].to_numpy()
    slots[batch.event_index, batch.jet_idx, k + 1] = np.abs(wrap_phi(batch.jet_phi - metphi[batch.event_index]))
    cols: dict[str, np.ndarray] = {"event_id": evs["event_id"].to_numpy()}
    for i in range(max_jets):
        for j, c in enumerate(JET_COLUMNS):
            cols[f"j{i}_{c}"] = slots[:, i, j]
        cols[f"j{i}_present"] = slots[:, i, k]
    for c in EVENT_COLUMNS:
        cols[c] = evs[c].to_numpy()
    mt = evs["mt"].to_numpy()
    cols["rt"] = np.divide(evs["met_pt"].to_numpy(), mt, out=np.zeros(n), where=mt > 0)
    for i in range(max_jets):
        cols[f"dphi_j{i}"] = slots[:, i, k + 1]
    df = pd.DataFrame(cols)
    has_jet = slots[:, 0, k] > 0
    out = df[has_jet].reset_index(drop=True)
    out.attrs["n_without_jets"] = int((~has_jet).sum())
    out.attrs["event_collection"] = evs.attrs["event_collection"]
    return out


def _observables_chunk(task) -> tuple[int, pd.DataFrame, pd.DataFrame]:
    """One chunk of :func:`observables` (runs where the executor runs it): (index, jet table, event table)."""
    path, i, max_jets, use_weights, zcut, sd_beta, r0, ecf_groomed = task
    from darkshower.data.dataset import open_dataset

    chunk = open_dataset(path).read_chunk(i)
    jt = jet_observables(chunk, max_jets, use_weights, zcut, sd_beta, r0, 1.0, ecf_groomed)
    ev = event_observables(chunk, use_weights=use_weights)
    return i, jt.merge(ev, on="event_id", how="left", validate="many_to_one"), ev


def observables(dataset, out=None, events_out=None, *, max_jets: int | None = 2, use_weights: bool = True,
                zcut: float = 0.1, sd_beta: float = 0.0, r0: float = 0.8, ecf_groomed: bool = True,
                progress: bool = True, executor=None, jobs: int | None = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Observables of a whole dataset (what ``darkshower observables`` writes): the flat jet table (one
    row per (event_id, jet_idx), per-event columns repeated) and the event table (one row per event),
    chunk by chunk. With ``out`` (and ``events_out``) they are also written as Parquet (atomically).
    ``max_jets``: leading jets per event (None or 0: all). Chunks run on ``executor`` (darkshower.execute:
    ``Local()``, ``Processes(n)``, ``Dask(...)``; default: ``jobs`` processes, 1 = in process); the tables
    do not depend on it."""
    from pathlib import Path

    from darkshower.data.dataset import atomic_write_parquet, open_dataset
    from darkshower.errors import ConfigError
    from darkshower.execute import using

    if max_jets is not None and (isinstance(max_jets, bool) or not isinstance(max_jets, (int, np.integer)) or max_jets < 0):
        raise ConfigError(f"max_jets={max_jets!r}: must be an integer >= 0 (0 or None = all jets)")
    if not (np.isfinite(zcut) and 0 <= zcut < 1):
        raise ConfigError(f"zcut={zcut!r}: the soft-drop z_cut must lie in [0, 1)")
    if not (np.isfinite(sd_beta) and sd_beta >= 0):
        raise ConfigError(f"sd_beta={sd_beta!r}: the soft-drop beta must be >= 0")
    if not (np.isfinite(r0) and r0 > 0):
        raise ConfigError(f"r0={r0!r}: R0 must be > 0")
    for name, path in (("out", out), ("events_out", events_out)):
        if path is not None and Path(path).is_dir():
            raise ConfigError(f"{name} {path}: is a directory; give a file name such as table.parquet")
    ds = dataset if hasattr(dataset, "read_chunk") else open_dataset(dataset)
    tasks = [(str(ds.path), i, max_jets or None, use_weights, float(zcut), float(sd_beta), float(r0), ecf_groomed)
             for i in range(len(ds.chunks))]
    results: dict[int, tuple[pd.DataFrame, pd.DataFrame]] = {}

    def fold(res) -> None:
        results[res[0]] = (res[1], res[2])

    with using(executor, jobs=jobs) as ex:
        ex.run(_observables_chunk, tasks, fold, desc="observables", unit="chunk", progress=progress,
               size=lambda res: len(res[2]), name=lambda t: f"{t[0]} chunk {t[1]}")
    jet_parts = [results[i][0] for i in sorted(results)]
    ev_parts = [results[i][1] for i in sorted(results)]
    jets = pd.concat(jet_parts, ignore_index=True) if jet_parts else pd.DataFrame()
    evs = pd.concat(ev_parts, ignore_index=True) if ev_parts else pd.DataFrame()
    if out is not None:
        atomic_write_parquet(jets, Path(out))
    if events_out is not None:
        atomic_write_parquet(evs, Path(events_out))
    return jets, evs
