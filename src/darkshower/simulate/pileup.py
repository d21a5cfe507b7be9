"""Pileup: overlay of minimum-bias interactions from a library, vertex association, and the classical
mitigations (charged-hadron subtraction, PUPPI-like weights). See docs/pileup.md.

Everything works on the flat particle / candidate arrays of a whole batch of events (key ``ev``
= event index), like the detector (darkshower.simulate.detector).

- :func:`overlay` adds Poisson(mu) minimum-bias interactions drawn (with replacement, each rotated
  by a random azimuth and mirrored in z with probability 1/2) from a library to every event, each
  at its own vertex z from a Gaussian beam spot; the hard interaction (the primary vertex, PV) gets
  its own z too. Particles gain ``dz`` (true vertex z minus PV z, mm) and the truth flag ``from_pv``.
- :func:`pv_associated` is the vertex association of the reconstruction: a track is associated
  with the PV when its measured |dz| < n sigma_dz(pT, eta).
- :func:`chs` drops charged candidates not associated with the PV.
- :func:`puppi_weights` is the PUPPI-like per-particle weight of arXiv:1407.6013.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from darkshower.errors import DatasetError
from darkshower.simulate.config import PileupConfig, PuppiConfig

#: tracks (and so vertex association and the charged PV reference of PUPPI) exist up to this |eta|
TRACKER_ETA_MAX = 2.5
#: particle keys of the flat arrays the overlay fills from the library
PARTICLE_KEYS = ("pt", "eta", "phi", "e", "pid", "charge", "d0", "r_prod")


# ---- library ------------------------------------------------------------------------------------
def library_checksum(path: str | Path) -> str:
    """SHA-256 identifying a library's content: its recorded config and every chunk's file name, event count and
    SHA-256 — not the manifest file's bytes (a rerun that regenerates a lost chunk rewrites them with new
    timestamps), so that datasets overlaid from a library stay resumable."""
    import json

    mp = Path(path) / "manifest.json"
    try:
        m = json.loads(mp.read_text())
    except FileNotFoundError:
        raise DatasetError(
            f"pileup library {path}: not a darkshower dataset (no manifest.json); make one with "
            "`darkshower generate minbias --events N --out DIR`"
        ) from None
    except ValueError as exc:
        raise DatasetError(f"pileup library {path}: {mp.name} is not valid JSON ({exc})") from None
    content = {"config": m.get("config"),
               "chunks": [[c.get("file"), c.get("n_events"), c.get("sha256")] for c in m.get("chunks") or []]}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


@dataclass
class Library:
    """All particles of a minimum-bias library, flat (float64 kinematics), with per-event offsets."""

    path: str
    content_sha256: str
    run_seed: int | None
    counts: np.ndarray
    offsets: np.ndarray
    arrays: dict[str, np.ndarray]
    ecm: float | None = None

    @property
    def n_events(self) -> int:
        return len(self.counts)

    def within(self, eta_max: float) -> Library:
        """The same interactions with only the particles at |eta| < eta_max (what a detector with that
        acceptance can see; the overlay mirrors eta, so |eta| is what counts). Cached."""
        cache = self.__dict__.setdefault("_within", {})
        if eta_max not in cache:
            keep = np.abs(self.arrays["eta"]) < eta_max
            ev = np.repeat(np.arange(self.n_events), self.counts)
            counts = np.bincount(ev[keep], minlength=self.n_events).astype(np.int64)
            offsets = np.zeros(self.n_events, np.int64)
            np.cumsum(counts[:-1], out=offsets[1:])
            cache[eta_max] = Library(self.path, self.content_sha256, self.run_seed, counts, offsets,
                                     {k: v[keep] for k, v in self.arrays.items()}, self.ecm)
        return cache[eta_max]

    def summary(self) -> dict:
        return {"path": self.path, "content_sha256": self.content_sha256, "n_events": self.n_events,
                "run_seed": self.run_seed, "mean_particles": float(self.counts.mean()) if self.n_events else 0.0}


_LIBRARIES: dict[tuple[str, str], Library] = {}


def open_library(path: str | Path, ecm: float | None = None) -> Library:
    """Read a minimum-bias library (cached per process by path and content checksum); check that
    it was made at the centre-of-mass energy ``ecm``."""
    p = Path(path).resolve()
    sha = library_checksum(p)
    key = (str(p), sha)
    lib = _LIBRARIES.get(key)
    if lib is None:
        lib = _read_library(p, sha)
        _LIBRARIES.clear()  # one library per process is enough
        _LIBRARIES[key] = lib
    if ecm is not None and lib.ecm is not None and float(lib.ecm) != float(ecm):
        raise DatasetError(
            f"pileup library {p}: generated at ecm = {lib.ecm:g} GeV, this run uses {ecm:g} GeV; "
            f"use a library made with --ecm {ecm:g}"
        )
    return lib


def _read_library(p: Path, sha: str) -> Library:
    import awkward as ak

    from darkshower.data.dataset import open_dataset

    ds = open_dataset(p)
    hint = "make one with `darkshower generate minbias --events N --out DIR`"
    if ds.manifest.get("process") != "minbias":
        raise DatasetError(f"pileup library {p}: is a {ds.manifest.get('process')!r} dataset, not minbias; {hint}")
    if ds.n_events == 0:
        raise DatasetError(f"pileup library {p}: holds no events; {hint}")
    parts = ds.arrays(columns=["particles"]).particles
    counts = ak.to_numpy(ak.num(parts, axis=1)).astype(np.int64)
    flat = ak.flatten(parts)
    arrays = {}
    for k in PARTICLE_KEYS:
        if k not in ak.fields(flat):
            raise DatasetError(f"pileup library {p}: particles miss the field {k!r}; regenerate it ({hint})")
        dtype = {"pid": np.int32, "charge": np.int8}.get(k, np.float64)
        arrays[k] = ak.to_numpy(flat[k]).astype(dtype)
    offsets = np.zeros(len(counts), np.int64)
    np.cumsum(counts[:-1], out=offsets[1:])
    return Library(str(p), sha, ds.manifest.get("provenance", {}).get("run_seed"), counts, offsets, arrays,
                   ds.manifest.get("config", {}).get("ecm"))


# ---- overlay ------------------------------------------------------------------------------------
def _wrap(phi: np.ndarray) -> np.ndarray:
    return (phi + np.pi) % (2 * np.pi) - np.pi


def overlay(parts: dict[str, np.ndarray], n_ev: int, lib: Library | None, cfg: PileupConfig,
            rng: np.random.Generator, eta_max: float | None = None) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Add Poisson(mu) library interactions to every event of the flat visible particles ``parts``.
    With ``eta_max``, pileup particles at |eta| >= eta_max (beyond the detector) are not added.

    Returns (particles sorted by event, the hard interaction's first, with ``dz`` and ``from_pv``
    added; number of overlaid interactions per event; PV z per event [mm])."""
    z_pv = rng.normal(0.0, cfg.beam_spot_z_mm, n_ev)
    n_pu = rng.poisson(cfg.mu, n_ev) if cfg.mu > 0 else np.zeros(n_ev, np.int64)
    n_int = int(n_pu.sum())
    out = {k: np.asarray(v) for k, v in parts.items()}
    out["dz"] = np.zeros(len(parts["ev"]))
    out["from_pv"] = np.ones(len(parts["ev"]), bool)
    if n_int == 0:
        return out, n_pu.astype(np.int64), z_pv
    assert lib is not None
    if eta_max is not None:
        lib = lib.within(eta_max)
    pick = rng.integers(0, lib.n_events, n_int)
    z_int = rng.normal(0.0, cfg.beam_spot_z_mm, n_int)
    rot = rng.uniform(-np.pi, np.pi, n_int)
    mirror = rng.random(n_int) < 0.5
    ev_int = np.repeat(np.arange(n_ev), n_pu)
    cnt = lib.counts[pick]
    total = int(cnt.sum())
    first = np.zeros(n_int, np.int64)
    np.cumsum(cnt[:-1], out=first[1:])
    idx = np.repeat(lib.offsets[pick] - first, cnt) + np.arange(total)
    which = np.repeat(np.arange(n_int), cnt)
    pu = {k: lib.arrays[k][idx] for k in PARTICLE_KEYS}
    pu["eta"] = np.where(mirror[which], -pu["eta"], pu["eta"])
    pu["phi"] = _wrap(pu["phi"] + rot[which])
    pu["ev"] = ev_int[which]
    pu["dz"] = z_int[which] - z_pv[pu["ev"]]
    pu["from_pv"] = np.zeros(total, bool)
    # scatter both into place: each event holds its hard-scatter particles, then its pileup ones
    n_sig = np.bincount(out["ev"], minlength=n_ev)
    n_add = np.bincount(pu["ev"], minlength=n_ev)
    start = np.zeros(n_ev, np.int64)
    np.cumsum((n_sig + n_add)[:-1], out=start[1:])
    sig_first = np.zeros(n_ev, np.int64)
    np.cumsum(n_sig[:-1], out=sig_first[1:])
    pos_sig = start[out["ev"]] + np.arange(len(out["ev"])) - sig_first[out["ev"]]
    # pileup particles are already grouped by event (interactions were drawn event by event)
    pos_pu = start[pu["ev"]] + n_sig[pu["ev"]] + np.arange(total) - np.repeat(np.cumsum(n_add) - n_add, n_add)
    merged = {}
    for k, v in out.items():
        m = np.empty(len(v) + total, dtype=v.dtype)
        m[pos_sig] = v
        m[pos_pu] = pu[k]
        merged[k] = m
    return merged, n_pu.astype(np.int64), z_pv


# ---- vertex association ---------------------------------------------------------------------
def dz_sigma(pt: np.ndarray, eta: np.ndarray, cfg: PileupConfig) -> np.ndarray:
    """Track dz resolution [mm]: sqrt(a^2 + (b sqrt(cosh eta) / pT)^2) (multiple scattering grows as
    1 / (p sin^(3/2) theta) = sqrt(cosh eta) / pT)."""
    pt = np.maximum(np.asarray(pt, np.float64), 1e-3)
    ms = cfg.dz_ms_mm_gev * np.sqrt(np.cosh(np.asarray(eta, np.float64))) / pt
    return np.sqrt(cfg.dz_resolution_mm**2 + ms**2)


def has_track(c: dict[str, np.ndarray]) -> np.ndarray:
    """Charged candidates inside the tracker (at detector level every charged candidate is a track)."""
    return (c["charge"] != 0) & (np.abs(c["eta"]) <= TRACKER_ETA_MAX)


def pv_associated(c: dict[str, np.ndarray], cfg: PileupConfig, particle_level: bool = False) -> np.ndarray:
    """Vertex association per candidate: 1 track associated with the PV, 0 track from another vertex
    (pileup), -1 no track (neutral, or charged outside the tracker). At particle level (--detector
    none) the association is the truth (``from_pv``)."""
    trk = has_track(c)
    if particle_level:
        near = c["from_pv"].astype(bool)
    else:
        near = np.abs(c["dz"]) < cfg.association_nsigma * dz_sigma(c["pt"], c["eta"], cfg)
    return np.where(trk, near.astype(np.int8), np.int8(-1)).astype(np.int8)


def chs(c: dict[str, np.ndarray], assoc: np.ndarray) -> dict[str, np.ndarray]:
    """Charged-hadron subtraction: drop the tracks that are not associated with the PV."""
    keep = assoc != 0
    return {k: v[keep] for k, v in c.items()}


# ---- PUPPI-like weights -------------------------------------------------------------------------
_EVENT_GAP = 40.0  # events sit this far apart in eta in the shared search tree (> 2 * |eta| cap + R0)
_ETA_CAP = 15.0
_BLOCK = 200_000  # candidates (query + reference) per search block


def _local_sum(c: dict[str, np.ndarray], query: np.ndarray, ref: np.ndarray, r0: float, r_min: float) -> np.ndarray:
    """For each candidate in ``query`` (indices): sum over ``ref`` candidates j != i of the same event
    with r_min <= dR_ij < r0 of (pT_j / dR_ij)^2."""
    from scipy.spatial import cKDTree

    out = np.zeros(len(query))
    if len(query) == 0 or len(ref) == 0:
        return out
    ev = c["ev"].astype(np.int64)
    n_ev = int(ev.max()) + 1
    # one search tree for many events: event k sits at eta offset k * _EVENT_GAP, phi is periodic
    x = np.clip(c["eta"], -_ETA_CAP, _ETA_CAP) + _ETA_CAP + 2.0 + _EVENT_GAP * ev
    y = np.mod(c["phi"] + np.pi, 2 * np.pi)
    y = np.where(y >= 2 * np.pi, 0.0, y)
    pts = np.column_stack([x, y])
    box = [_EVENT_GAP * n_ev, 2 * np.pi]
    pt_ref = c["pt"][ref]
    # blocks of whole events bound the memory of the pair list (~ query size x neighbours)
    q_ev, r_ev = ev[query], ev[ref]  # both sorted by event (candidates are)
    per_ev = np.bincount(q_ev, minlength=n_ev) + np.bincount(r_ev, minlength=n_ev)
    block = np.cumsum(per_ev) // _BLOCK
    for b in np.unique(block):
        evs = np.flatnonzero(block == b)
        q0, q1 = np.searchsorted(q_ev, [evs[0], evs[-1] + 1])
        r0_, r1 = np.searchsorted(r_ev, [evs[0], evs[-1] + 1])
        if q0 == q1 or r0_ == r1:
            continue
        tq = cKDTree(pts[query[q0:q1]], boxsize=box)
        tr = cKDTree(pts[ref[r0_:r1]], boxsize=box)
        pairs = tq.sparse_distance_matrix(tr, r0, output_type="ndarray")
        qi, rj, d = pairs["i"], pairs["j"] + r0_, pairs["v"]
        ok = (query[q0 + qi] != ref[rj]) & (d >= r_min) & (d > 0) & (d < r0)
        out[q0:q1] = np.bincount(qi[ok], weights=(pt_ref[rj[ok]] / d[ok]) ** 2, minlength=q1 - q0)
    return out


def _class_sums(c: dict[str, np.ndarray], cls: np.ndarray, n_cls: int, radii: tuple[float, ...],
                r_min: float) -> np.ndarray:
    """[n, len(radii), n_cls]: for every candidate i and radius R, the sums over candidates j != i of the same
    event of class ``cls[j]`` with r_min <= dR_ij < R of (pT_j / dR_ij)^2 — what :func:`_local_sum` gives for
    each class and radius, in one pass (compiled cell lists, darkshower.simulate.neighbours)."""
    from darkshower.simulate.neighbours import class_sums

    return class_sums(c["ev"], c["eta"], c["phi"], c["pt"], cls, n_cls, radii, r_min)


def _median_rms(alpha: np.ndarray, ev: np.ndarray, n_ev: int, min_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per event: median and RMS (about the median) of the finite ``alpha``; and whether >= min_n exist."""
    med = np.full(n_ev, np.nan)
    rms = np.full(n_ev, np.nan)
    fin = np.isfinite(alpha)
    a, e = alpha[fin], ev[fin]
    order = np.lexsort((a, e))
    a, e = a[order], e[order]
    n = np.bincount(e, minlength=n_ev)
    start = np.zeros(n_ev, np.int64)
    np.cumsum(n[:-1], out=start[1:])
    has = n >= max(min_n, 1)
    lo = start + (n - 1) // 2
    hi = start + n // 2
    med[has] = 0.5 * (a[lo[has]] + a[hi[has]])
    dev2 = np.bincount(e, weights=(a - np.nan_to_num(med[e])) ** 2, minlength=n_ev)
    rms[has] = np.sqrt(dev2[has] / n[has])
    return med, rms, has


def puppi_weights(c: dict[str, np.ndarray], assoc: np.ndarray, n_vertices: np.ndarray,
                  cfg: PuppiConfig) -> np.ndarray:
    """PUPPI-like weight per candidate (arXiv:1407.6013).

    Tracks: 1 when associated with the PV, 0 otherwise. Other candidates: the local shape
    alpha_i = log sum_j (pT_j / dR_ij)^2 over neighbours j with r_min <= dR < r0 — inside the
    tracker (|eta| < 2.5) over the charged PV candidates, beyond it over all candidates; per event,
    the median and RMS of alpha over the charged pileup candidates (inside; their alpha computed the
    same way) or over all candidates beyond the tracker (mostly pileup); chi2 = (alpha - median)^2 /
    RMS^2 for alpha above the median (else 0), w = F_chi2(ndf=1)(chi2); weights below ``weight_min``
    and neutrals with w pT < neutral_pt_min + neutral_pt_slope * N_vertices become 0. Candidates
    without neighbours get 0; events with fewer than ``min_charged_pu`` usable pileup tracks
    (no pileup) keep weight 1 for neutrals.
    """
    from scipy.special import erf

    n = len(assoc)
    w = np.ones(n)
    if n == 0:
        return w.astype(np.float32)
    ev = c["ev"].astype(np.int64)
    n_ev = int(ev.max()) + 1
    central = np.abs(c["eta"]) < TRACKER_ETA_MAX
    neutral = assoc < 0
    alpha = np.full(n, -np.inf)
    ref_c = np.flatnonzero(assoc == 1)
    q_c = np.flatnonzero(central & (assoc != 1))  # neutrals and charged pileup inside the tracker
    q_f = np.flatnonzero(~central)
    with np.errstate(divide="ignore"):
        alpha[q_c] = np.log(_local_sum(c, q_c, ref_c, cfg.r0, cfg.r_min))
        alpha[q_f] = np.log(_local_sum(c, q_f, np.arange(n), cfg.r0, cfg.r_min))
    pu_c = np.flatnonzero(assoc == 0)
    med_c, rms_c, has_c = _median_rms(alpha[pu_c], ev[pu_c], n_ev, cfg.min_charged_pu)
    med_f, rms_f, _ = _median_rms(alpha[q_f], ev[q_f], n_ev, 2)
    # events without pileup tracks have no pileup reference: their neutrals keep weight 1 everywhere
    med = np.where(central, med_c[ev], med_f[ev])
    rms = np.where(central, rms_c[ev], rms_f[ev])
    usable = has_c[ev] & np.isfinite(med) & np.isfinite(rms)
    nq = neutral & usable
    with np.errstate(invalid="ignore"):
        above = np.isfinite(alpha) & (alpha > med)
        chi2 = np.where(above & nq, (alpha - med) ** 2 / np.maximum(rms, 1e-9) ** 2, 0.0)
    wn = erf(np.sqrt(chi2 / 2.0))  # CDF of chi2 with one degree of freedom
    wn = np.where(wn < cfg.weight_min, 0.0, wn)
    pt_cut = cfg.neutral_pt_min + cfg.neutral_pt_slope * n_vertices[ev]
    wn = np.where(wn * c["pt"] < pt_cut, 0.0, wn)
    w = np.where(nq, wn, w)
    w = np.where(assoc == 0, 0.0, w)
    return w.astype(np.float32)


def mitigate(c: dict[str, np.ndarray], cfg: PileupConfig, n_vertices: np.ndarray,
             particle_level: bool = False) -> dict[str, np.ndarray]:
    """Apply ``cfg.mitigation`` to the flat candidates: none (unchanged), chs (pileup tracks dropped),
    puppi or distillnet:RUN (``weight`` added: PUPPI-like or the DistillNet student's; nothing dropped)."""
    if cfg.mitigation == "none":
        return c
    assoc = pv_associated(c, cfg, particle_level)
    if cfg.mitigation == "chs":
        return chs(c, assoc)
    if cfg.mitigation.startswith("distillnet:"):
        student = load_student(student_path(cfg.mitigation))
        return {**c, "weight": distillnet_weights(c, assoc, np.asarray(n_vertices), cfg, student, particle_level)}
    return {**c, "weight": puppi_weights(c, assoc, np.asarray(n_vertices), cfg.puppi)}


def library_header(cfg: PileupConfig, ecm: float) -> dict | None:
    """What the manifest records about the pileup of a run (None when inactive)."""
    if not cfg.active:
        return None
    out: dict = {"mu": cfg.mu, "beam_spot_z_mm": cfg.beam_spot_z_mm, "mitigation": cfg.mitigation}
    if cfg.mu > 0 and cfg.library:
        out["library"] = open_library(cfg.library, ecm).summary()
    if cfg.mitigation.startswith("distillnet:"):  # checked here, before any event is generated
        st = load_student(student_path(cfg.mitigation))
        out["distillnet"] = {"run": st.path, "student_sha256": st.sha256, "feature_version": FEATURE_VERSION}
    return out


__all__ = ["Library", "open_library", "overlay", "dz_sigma", "pv_associated", "chs", "puppi_weights", "mitigate",
           "library_checksum", "particle_features", "feature_names", "FEATURE_VERSION", "Student", "load_student",
           "distillnet_weights"]


# ---- DistillNet student features and weights -------------------------------------------------------
#: version of :func:`particle_features` (stored in student.npz; a student of another version is refused)
FEATURE_VERSION = 1
#: neighbourhood radii of the PUPPI-like sums of the student's features
FEATURE_RADII = (0.4, 0.2)
_N_TYPES = 5  # darkshower.data.schema.CANDIDATE_TYPES


def feature_names(radii: tuple[float, ...] = FEATURE_RADII) -> list[str]:
    """Names of the columns of :func:`particle_features`, in order."""
    names = ["log_pt", "eta", "log_e", "charge", *[f"type_{t}" for t in range(_N_TYPES)], "has_track", "assoc_pv",
             "log1p_dz_sig"]
    for r in radii:
        names += [f"alpha_pv_{r:g}", f"alpha_pu_{r:g}", f"alpha_neutral_{r:g}", f"alpha_pv_z_{r:g}"]
    return names


def particle_features(c: dict[str, np.ndarray], cfg: PileupConfig, n_vertices: np.ndarray | None = None,
                      assoc: np.ndarray | None = None, particle_level: bool = False,
                      radii: tuple[float, ...] = FEATURE_RADII) -> np.ndarray:
    """The DistillNet student's per-particle inputs, [n candidates, len(feature_names(radii))] float32.

    ``c``: flat candidates of a batch of events sorted by event (keys ev, pt, eta, e, charge, type, dz);
    ``n_vertices`` is accepted for symmetry with :func:`puppi_weights` and unused (the features carry no
    event-level pileup count, so a student can be applied at another mu). Columns (``feature_names``):
    log pT, eta, log E, charge, one-hot type (5), has-track flag, PV association (1 associated track, else 0),
    log(1 + |dz| / sigma_dz) for tracks (0 otherwise); then for each radius R in ``radii`` the PUPPI-like
    neighbourhood sums S = sum_j (pT_j / dR_ij)^2 over neighbours with r_min <= dR < R (r_min from
    ``cfg.puppi``) as log(1 + S): over the PV-associated tracks, over the pileup tracks, over the candidates
    without a track; and the first of them standardized per event like PUPPI's chi: (a - median) / RMS with
    the median and RMS over the event's pileup tracks (0 when the event has fewer than
    ``cfg.puppi.min_charged_pu`` of them). No absolute phi. One compiled pass over the batch
    (darkshower.simulate.neighbours.student_features); computed in float64, returned as float32."""
    from darkshower.simulate.neighbours import student_features

    if assoc is None:
        assoc = pv_associated(c, cfg, particle_level)
    return student_features(c["ev"], c["pt"], c["eta"], c["phi"], c["e"], c["charge"], c["type"], assoc,
                            None if particle_level else c["dz"], cfg.dz_resolution_mm, cfg.dz_ms_mm_gev,
                            tuple(radii), cfg.puppi.r_min, cfg.puppi.min_charged_pu)


@dataclass
class Student:
    """A DistillNet per-particle student as numpy arrays (read from a run's student.npz): standardization,
    then Linear+ReLU layers and a final Linear + sigmoid."""

    path: str
    sha256: str
    mean: np.ndarray
    std: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]
    radii: tuple[float, ...]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """Student output (probability of coming from the PV) for features ``x`` [n, F] (float32 math)."""
        z = self.logits(self.standardize(x)).astype(np.float64)
        return (0.5 * (1.0 + np.tanh(0.5 * z))).astype(np.float32)  # sigmoid without overflow

    def standardize(self, x: np.ndarray) -> np.ndarray:
        """(x - mean) / std, float32, a new array."""
        h = np.subtract(np.asarray(x, np.float32), self.mean)
        h /= self.std
        return h

    def logits(self, h: np.ndarray) -> np.ndarray:
        """The layers on standardized inputs ``h``: [n] float32 logits."""
        from darkshower.simulate.neighbours import bias_relu

        for i, (w, b) in enumerate(self.layers):
            h = h @ w.T
            if i < len(self.layers) - 1:
                bias_relu(h, b)  # = np.maximum(h + b, 0), one pass
            else:
                h += b
        return h[:, 0]


STUDENT_FILE = "student.npz"
_STUDENTS: dict[tuple[str, str], Student] = {}


def student_path(spec: str) -> Path:
    """The run directory of a ``distillnet:RUN`` mitigation."""
    return Path(spec.split(":", 1)[1])


def load_student(run: str | Path) -> Student:
    """Read and check ``RUN/student.npz`` (written by ``darkshower distill --student per-particle``); cached
    per process by path and checksum. Missing, corrupt or incompatible files raise one DatasetError."""
    p = Path(run) / STUDENT_FILE
    hint = ("make it with `darkshower distill PU_GNN_RUN --student per-particle --data DS --out RUN`, "
            "then pass --pu-mitigation distillnet:RUN")
    try:
        raw = p.read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise DatasetError(f"--pu-mitigation distillnet:{run}: no {STUDENT_FILE} in {run}; {hint}") from None
    sha = hashlib.sha256(raw).hexdigest()
    key = (str(p.resolve()), sha)
    if key in _STUDENTS:
        return _STUDENTS[key]
    import io
    import zipfile

    try:
        z = np.load(io.BytesIO(raw), allow_pickle=False)
        version = int(z["feature_version"])
        names = [str(s) for s in z["feature_names"]]
        radii = tuple(float(r) for r in z["radii"])
        n_layers = int(z["n_layers"])
        layers = [(z[f"w{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32)) for i in range(n_layers)]
        mean, std = z["mean"].astype(np.float32), z["std"].astype(np.float32)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"--pu-mitigation distillnet:{run}: {p} is corrupt or not a student file "
                           f"({type(exc).__name__}: {exc}); {hint}") from None
    if version != FEATURE_VERSION or names != feature_names(radii):
        raise DatasetError(f"--pu-mitigation distillnet:{run}: {p} was made for particle features version {version} "
                           f"({len(names)} features); this darkshower computes version {FEATURE_VERSION}; "
                           f"distill the student again ({hint})")
    shapes_ok = (len(layers) >= 1 and layers[0][0].shape[1] == len(names) == len(mean) == len(std)
                 and layers[-1][0].shape[0] == 1
                 and all(w.shape[0] == b.shape[0] for w, b in layers)
                 and all(layers[i + 1][0].shape[1] == layers[i][0].shape[0] for i in range(len(layers) - 1)))
    if not shapes_ok or not all(np.isfinite(a).all() for w, b in layers for a in (w, b)) or not (std > 0).all():
        raise DatasetError(f"--pu-mitigation distillnet:{run}: {p} holds inconsistent or non-finite layers; {hint}")
    st = Student(str(Path(run).resolve()), sha, mean, std, layers, radii)
    _STUDENTS.clear()
    _STUDENTS[key] = st
    return st


def distillnet_weights(c: dict[str, np.ndarray], assoc: np.ndarray, n_vertices: np.ndarray, cfg: PileupConfig,
                       student: Student, particle_level: bool = False) -> np.ndarray:
    """The student's output per candidate as its weight; below ``cfg.puppi.weight_min`` it becomes 0 (as
    for PUPPI). Tracks too get the student's output (it sees their association and dz)."""
    x = particle_features(c, cfg, n_vertices, assoc, particle_level, student.radii)
    w = student(x) if len(x) else np.zeros(0, np.float32)
    return np.where(w < cfg.puppi.weight_min, np.float32(0.0), w).astype(np.float32)
