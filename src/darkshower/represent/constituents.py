"""Constituent point clouds: the leading N constituents of each jet, zero-padded, with a mask."""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from darkshower.errors import ConfigError
from darkshower.represent import kernels as K
from darkshower.represent.common import TYPE_NAMES, JetBatch, jet_batch, jet_energy

BASE_FEATURES = ("deta", "dphi", "log_pt", "log_e", "pt_rel", "e_rel", "dr", "charge") + tuple(
    f"is_{t}" for t in TYPE_NAMES
)
DISPLACEMENT_FEATURES = ("d0", "r_prod")
#: features left unscaled by the standardizer (categorical)
CATEGORICAL = ("charge",) + tuple(f"is_{t}" for t in TYPE_NAMES)


def feature_names(displacement: bool) -> list[str]:
    return list(BASE_FEATURES + (DISPLACEMENT_FEATURES if displacement else ()))


@dataclass
class PointClouds:
    features: np.ndarray  # (n_jets, N, F) float32
    mask: np.ndarray  # (n_jets, N) bool
    names: list[str]
    event_id: np.ndarray
    jet_idx: np.ndarray

    def __len__(self) -> int:
        return len(self.features)


class Standardizer:
    """Per-feature (x - mean) / std with statistics from a training set; JSON-able."""

    def __init__(self, names: list[str], mean, std):
        self.names = list(names)
        self.mean = np.asarray(mean, np.float64)
        self.std = np.asarray(std, np.float64)

    @classmethod
    def fit(cls, clouds: PointClouds, skip: tuple[str, ...] = CATEGORICAL) -> Standardizer:
        x = clouds.features[clouds.mask].astype(np.float64)
        if len(x) == 0:
            raise ConfigError("cannot fit a standardizer on an empty training set")
        mean = x.mean(axis=0)
        std = x.std(axis=0)
        std[std < 1e-12] = 1.0
        for i, n in enumerate(clouds.names):
            if n in skip:
                mean[i] = 0.0
                std[i] = 1.0
        return cls(clouds.names, mean, std)

    def apply(self, clouds: PointClouds) -> PointClouds:
        """Standardize in place (padding stays 0)."""
        self._check(clouds.names)
        f = clouds.features
        f -= self.mean.astype(np.float32)
        f /= self.std.astype(np.float32)
        f[~clouds.mask] = 0.0
        return clouds

    def invert(self, features: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = features * self.std.astype(np.float32) + self.mean.astype(np.float32)
        out[~mask] = 0.0
        return out

    def _check(self, names):
        if list(names) != self.names:
            raise ConfigError(f"standardizer was fitted on features {self.names}, got {list(names)}")

    def to_dict(self) -> dict:
        return {"names": self.names, "mean": self.mean.tolist(), "std": self.std.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Standardizer:
        try:
            return cls(d["names"], d["mean"], d["std"])
        except KeyError as exc:
            raise ConfigError(f"standardizer statistics miss the key {exc}; expected names, mean, std") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_json(cls, text: str) -> Standardizer:
        return cls.from_dict(json.loads(text))


def point_clouds(
    data,
    n_constituents: int = 100,
    centre: bool = False,
    rotate: bool = False,
    flip: bool = False,
    displacement: bool | None = None,
    standardizer: Standardizer | None = None,
    max_jets: int | None = None,
    use_weights: bool = True,
) -> PointClouds:
    """Leading ``n_constituents`` constituents of every jet, features relative to the jet axis.

    Features: ``deta, dphi`` (phi wrapped; optionally centred on the pT-weighted centroid,
    rotated so the principal axis lies along deta, flipped so the pT-weighted third moments are
    positive; all per jet), ``log_pt, log_e, pt_rel = pT/pT_jet, e_rel = E/E_jet, dr`` (distance
    to the origin of the transformed frame), ``charge``, a one-hot of the candidate type (all
    zero for a constituent of unknown type, -1, as imported samples have; it is kept) and,
    when the data have them (``displacement=None``) or when asked, ``d0, r_prod``.
    ``standardizer`` is applied inside the same compiled pass.
    """
    b: JetBatch = jet_batch(data, max_jets=max_jets, use_weights=use_weights)
    has_disp = (b.d0 is not None and b.r_prod is not None) if displacement is None else bool(displacement)
    if has_disp and (b.d0 is None or b.r_prod is None):
        raise ConfigError("displacement features asked for, but the constituents have no d0/r_prod fields")
    names = feature_names(has_disp)
    nf = len(names)
    out = np.empty((b.n_jets, n_constituents, nf), np.float32)
    mask = np.empty((b.n_jets, n_constituents), np.bool_)
    if standardizer is not None:
        standardizer._check(names)
        mean, std = standardizer.mean, standardizer.std
    else:
        mean = std = np.zeros(0)
    dummy = np.zeros(0, np.float32)
    if b.n_jets:
        K.point_cloud_kernel(
            b.offsets, b.pt, b.eta, b.phi, b.e, b.charge, b.type,
            b.d0 if has_disp else dummy, b.r_prod if has_disp else dummy, has_disp,
            b.jet_pt, b.jet_eta, b.jet_phi, jet_energy(b.jet_pt, b.jet_eta, b.jet_mass),
            bool(centre), bool(rotate), bool(flip), mean, std, out, mask,
        )
    return PointClouds(out, mask, names, b.event_id, b.jet_idx)
