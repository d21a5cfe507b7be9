"""HDF5 with per-jet constituent arrays and per-event jet features (the layout of the SVJ
autoencoder study, ``qcd_dijet_delphes_*.h5``).

``jet_constituent_data`` (N, J, P, 3): (η, φ, pT) of up to P constituents of J jets, zero-padded
(column order from ``jet_constituent_names`` when present: pEta, pPhi, pPt);
``event_feature_data`` (N, F) with names in ``event_feature_names`` (mJJ, j1Eta, j1Phi, j1Pt,
j1M, j1E, j2Pt, j2M, j2E, DeltaEtaJJ, DeltaPhiJJ), carried as per-event columns with those names.

In this layout the constituent η, φ are relative to the jet axis (|Δη|, |Δφ| < R). With
``--coordinates auto`` (default) they are detected as relative when all |η|, |φ| ≤ 1 in the
first rows, and made absolute with the jet axes from the features: jet 1 at (j1Eta, j1Phi),
jet 2 at (j1Eta − DeltaEtaJJ, j1Phi − DeltaPhiJJ) (the η sign is checked against j2E; the φ sign
cannot be checked and follows the same convention). Particles are massless; jet kinematics are
the E-scheme sums of the stored constituents and jets are sorted by pT with ``slot`` = the
position in the file (0 ↔ j1 features, 1 ↔ j2 features).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from darkshower.io.common import (
    UNKNOWN_TYPE,
    Reader,
    build_jets,
    check_finite,
    check_numeric,
    event_fields,
    jet_p4_sums,
    wrap_phi,
)
from darkshower.io.h5util import get_dataset, open_h5, read_slice

DEFAULT_FEATURES = ["mJJ", "j1Eta", "j1Phi", "j1Pt", "j1M", "j1E", "j2Pt", "j2M", "j2E", "DeltaEtaJJ", "DeltaPhiJJ"]
DEFAULT_CONSTITUENT_NAMES = ["pEta", "pPhi", "pPt"]


def _names(h, name):
    ds = h.get(name)
    if ds is None:
        return None
    return [x.decode() if isinstance(x, bytes) else str(x) for x in ds[()]]


class H5ConstituentsReader(Reader):
    format_name = "h5-constituents"
    options = {
        "constituents": "jet_constituent_data",
        "features": "event_feature_data",
        "coordinates": "auto",
        "keep_empty_events": False,
    }

    def open(self) -> None:
        self.h = open_h5(self.path, self.format_name)
        self.cds = get_dataset(self.h, self.opts["constituents"], self.path, self.format_name, "--constituents")
        if self.cds.ndim != 4 or self.cds.shape[3] != 3:
            raise self.fail(f"dataset '{self.opts['constituents']}' has shape {self.cds.shape}; need (N, J, P, 3)")
        check_numeric(self.path, self.opts["constituents"], self.cds.dtype, self.format_name, "numbers (eta, phi, pT)")
        self.n_events = int(self.cds.shape[0])
        if self.n_events == 0:
            raise self.fail(f"dataset '{self.opts['constituents']}' holds no events")
        cnames = _names(self.h, "jet_constituent_names") or DEFAULT_CONSTITUENT_NAMES
        try:
            self.ci = [cnames.index(k) for k in ("pEta", "pPhi", "pPt")]
        except ValueError:
            raise self.fail(f"jet_constituent_names is {cnames}; expected pEta, pPhi, pPt") from None
        self.fds = None
        self.fnames: list[str] = []
        if self.opts["features"]:
            self.fds = get_dataset(self.h, self.opts["features"], self.path, self.format_name, "--features")
            if self.fds.ndim != 2 or self.fds.shape[0] != self.n_events:
                raise self.fail(f"dataset '{self.opts['features']}' has shape {self.fds.shape}; need ({self.n_events}, F)")
            check_numeric(self.path, self.opts["features"], self.fds.dtype, self.format_name)
            fn = _names(self.h, "event_feature_names")
            if fn is None:
                fn = DEFAULT_FEATURES if self.fds.shape[1] == len(DEFAULT_FEATURES) else [f"feature{i}" for i in range(self.fds.shape[1])]
            if len(fn) != self.fds.shape[1]:
                raise self.fail(f"event_feature_names has {len(fn)} names for {self.fds.shape[1]} columns")
            self.fnames = fn
        mode = self.opts["coordinates"]
        if mode not in ("auto", "relative", "absolute"):
            raise self.fail(f"--coordinates must be auto, relative or absolute, not {mode!r}")
        if mode == "auto":
            probe = read_slice(self.cds, 0, min(self.n_events, 1000), self.path)
            live = probe[..., self.ci[2]] > 0
            mode = "relative" if live.any() and np.abs(probe[..., self.ci[0]][live]).max() <= 1.0 and np.abs(probe[..., self.ci[1]][live]).max() <= 1.0 else "absolute"
        self.relative = mode == "relative"
        if self.relative:
            need = ["j1Eta", "j1Phi"] + (["DeltaEtaJJ", "DeltaPhiJJ"] if self.cds.shape[1] > 1 else [])
            lack = [k for k in need if k not in self.fnames]
            if lack or self.cds.shape[1] > 2:
                raise self.fail(
                    "constituent coordinates are relative to the jet axes, but the jet axes cannot be rebuilt "
                    f"(features lack {lack or 'nothing'}, jets per event {self.cds.shape[1]}); "
                    "pass --coordinates absolute to import them unchanged"
                )
        self.extra_event_fields = list(self.fnames)
        self.file_meta = {"coordinates": mode, "jets_per_event": int(self.cds.shape[1]), "max_constituents": int(self.cds.shape[2])}

    def close(self) -> None:
        h = getattr(self, "h", None)
        if h is not None:
            h.close()

    def read(self, start: int, stop: int) -> dict[str, Any]:
        x = read_slice(self.cds, start, stop, self.path).astype(np.float64, copy=False)
        check_finite(self.path, self.opts["constituents"], x, start)
        n, n_slots = x.shape[0], x.shape[1]
        eta, phi, pt = x[..., self.ci[0]], x[..., self.ci[1]], x[..., self.ci[2]]
        feats = None
        if self.fds is not None:
            feats = read_slice(self.fds, start, stop, self.path).astype(np.float64, copy=False)
            check_finite(self.path, self.opts["features"], feats, start)
        if self.relative:
            assert feats is not None  # open() refuses relative coordinates without the axis features
            f = {k: feats[:, i] for i, k in enumerate(self.fnames)}
            axes_eta = [f["j1Eta"]]
            axes_phi = [f["j1Phi"]]
            if n_slots > 1:
                axes_eta.append(f["j1Eta"] - f["DeltaEtaJJ"])
                axes_phi.append(f["j1Phi"] - f["DeltaPhiJJ"])
            eta = eta + np.stack(axes_eta, axis=1)[:, :, None]
            phi = wrap_phi(phi + np.stack(axes_phi, axis=1)[:, :, None])
        mask = pt > 0
        order = np.argsort(np.where(mask, -pt, np.inf), axis=2, kind="stable")
        eta, phi, pt = (np.take_along_axis(a, order, axis=2) for a in (eta, phi, pt))
        mask = np.take_along_axis(mask, order, axis=2)
        ncon = mask.sum(axis=2)
        has_jet = ncon > 0
        empty = ~has_jet.any(axis=1)
        if empty.any() and not self.opts["keep_empty_events"]:
            rows = np.flatnonzero(empty)
            raise self.fail(
                f"{len(rows)} event(s) have no constituents (first: row {start + rows[0]}); "
                "pass --keep-empty-events to import them with no jets"
            )
        cpt, ceta, cphi = pt[mask], eta[mask], phi[mask]
        ce = cpt * np.cosh(ceta)
        n_jets = int(has_jet.sum())
        jet_of_con = np.repeat(np.arange(n_jets), ncon[has_jet])
        jpt, jeta, jphi, jm = jet_p4_sums(cpt, ceta, cphi, ce, jet_of_con, n_jets)
        slot = np.broadcast_to(np.arange(n_slots, dtype=np.int8), has_jet.shape)[has_jet]
        m = len(cpt)
        cons: dict[str, np.ndarray] = {
            "pt": cpt,
            "eta": ceta,
            "phi": cphi,
            "e": ce,
            "charge": np.zeros(m, np.int8),
            "pid": np.zeros(m, np.int32),
            "type": np.full(m, UNKNOWN_TYPE, np.int8),
        }
        jf = {"pt": jpt, "eta": jeta, "phi": jphi, "mass": jm, "slot": slot}
        jets = build_jets(has_jet.sum(axis=1), jf, ncon[has_jet], cons, sort_jets=True, sort_constituents=False)
        extra = {k: feats[:, i].astype(np.float32) for i, k in enumerate(self.fnames)} if feats is not None else {}
        return event_fields(n, jets, extra=extra)

    @classmethod
    def jet_definition(cls, options):
        return {
            "source": "the stored constituents of each jet slot (as clustered by the producer)",
            "kinematics": "E-scheme sum of the stored (massless) constituents",
            "order": "sorted by decreasing pT; jets.slot is the position in the file (0 = j1 features)",
        }

    @classmethod
    def notes(cls, options):
        return {
            "met": "not in this format: met_pt = met_phi = 0",
            "constituent_ids": "unknown: charge 0, pid 0, type -1; particles massless",
            "coordinates": "relative (Δη, Δφ) inputs are made absolute with the feature jet axes; "
            "jet 2 axis = j1 − Delta*JJ (φ sign is a convention, not checkable)",
            "features_vs_constituents": "the stored j1Pt/j1M etc. need not equal the constituent sums "
            "(the producer's feature jets differ from the stored constituents)",
        }
