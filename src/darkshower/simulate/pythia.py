"""Pythia 8 sessions (PyPI ``pythia8mc``): settings, seeding, quiet output, provenance."""

from __future__ import annotations

import logging

import numpy as np

from darkshower.errors import PythiaSettingError

log = logging.getLogger(__name__)

#: always applied first; user settings may override them
BASE_SETTINGS = [
    "Print:quiet = on",
    "Next:numberCount = 0",
    "Next:numberShowEvent = 0",
    "Next:numberShowInfo = 0",
    "Next:numberShowProcess = 0",
    "Check:event = on",
    # long-lived SM particles (ctau > 10 mm) are left stable: the detector sees K0L, n, ...; K0S and
    # Lambda decay as in a detector (ParticleDecays:tau0Max default is 10 mm)
    "ParticleDecays:limitTau0 = on",
]


def pythia_module():
    try:
        import pythia8mc as pythia8
    except ImportError:  # conda-forge / source builds call it pythia8
        try:
            import pythia8
        except ImportError:
            raise PythiaSettingError(
                "Pythia 8 Python bindings not found: install the PyPI package 'pythia8mc==8.317.2'"
            ) from None
    return pythia8


def pythia_version() -> str:
    try:
        from importlib.metadata import version

        return version("pythia8mc")
    except Exception:  # pragma: no cover
        return "unknown"


def seed_settings(seed: int) -> list[str]:
    if not 1 <= seed <= 900_000_000:
        raise PythiaSettingError(f"Pythia seed must be in 1..900000000, got {seed}")
    return ["Random:setSeed = on", f"Random:seed = {seed}"]


#: values Pythia reads as a flag; it silently takes any other word as "off"
FLAG_WORDS = {"on", "off", "true", "false", "yes", "no", "ok", "1", "0"}
#: particle-data properties (``id:prop = value``) and the kind of value Pythia expects
PARTICLE_PROPERTY_KINDS = {
    **dict.fromkeys(("m0", "mwidth", "mmin", "mmax", "tau0"), "parm"),
    **dict.fromkeys(("spintype", "chargetype", "coltype"), "mode"),
    **dict.fromkeys(("maydecay", "isresonance", "isvisible", "doexternaldecay", "varwidth", "doforcewidth"), "flag"),
}


def check_value(py, line: str) -> str | None:
    """Why Pythia would silently misread ``line`` (a flag set to 'maybe', a mode to 2.5, a mass
    to 'abc'), or None. Pythia itself rejects unknown keys and non-numbers for parameters only."""
    if "=" not in line:
        return None
    key, value = (x.strip() for x in line.split("=", 1))
    value = value.split()[0] if value.split() else ""
    head, _, prop = key.partition(":")
    s = py.settings
    if head.strip().lstrip("-").isdigit():
        kind = PARTICLE_PROPERTY_KINDS.get(prop.strip().lower())
    elif s.isFlag(key):
        kind = "flag"
    elif s.isMode(key):
        kind = "mode"
    else:
        kind = None
    if kind == "flag" and value.lower() not in FLAG_WORDS:
        return f"{value!r} is not a flag value (on/off, true/false, yes/no, 1/0)"
    try:
        if kind == "mode" and float(value) != int(float(value)):
            raise ValueError
        if kind in ("mode", "parm"):
            float(value)
    except ValueError:
        return f"{value!r} is not {'an integer' if kind == 'mode' else 'a number'}"
    return None


def make_pythia(settings: list[str], seed: int, before_init=None):
    """Create and initialize a Pythia instance; any rejected setting is one clear error.

    ``before_init(pythia)`` may attach user hooks before initialization."""
    pythia8 = pythia_module()
    py = pythia8.Pythia("", False)
    for line in BASE_SETTINGS + list(settings) + seed_settings(seed):
        why = check_value(py, line)
        if why is not None:
            raise PythiaSettingError(f"Pythia rejected the setting {line!r}: {why}; check it against the Pythia 8 manual")
        if not py.readString(line):
            raise PythiaSettingError(
                f"Pythia rejected the setting {line!r} (unknown key or malformed value); "
                "check it against the Pythia 8 manual"
            )
    if before_init is not None:
        before_init(py)
    if not py.init():
        raise PythiaSettingError(
            "Pythia failed to initialize with these settings (e.g. zero cross-section or inconsistent "
            "masses); rerun with `--pythia 'Print:quiet = off'` to see Pythia's own message"
        )
    return py


def effective_values(py, settings: list[str]) -> dict[str, object]:
    """The values Pythia actually holds after init for the global keys that were set."""
    out: dict[str, object] = {}
    s = py.settings
    for line in settings:
        key = line.split("=", 1)[0].strip()
        if ":" not in key or key.split(":", 1)[0].isdigit():
            continue  # particle data entries are recorded as given
        try:
            if s.isFlag(key):
                out[key] = bool(s.flag(key))
            elif s.isMode(key):
                out[key] = int(s.mode(key))
            elif s.isParm(key):
                out[key] = float(s.parm(key))
            elif s.isWord(key):
                out[key] = str(s.word(key))
        except Exception:  # pragma: no cover - exotic setting types (vectors)
            continue
    return out


def make_reseed_hook(py):
    """A user hook that reseeds Pythia's generator right after the process level (re-simulation)."""
    pythia8 = pythia_module()

    class ReseedAfterProcessLevel(pythia8.UserHooks):
        def __init__(self, rndm):
            pythia8.UserHooks.__init__(self)
            self.rndm = rndm
            self.seed = 1

        def canVetoProcessLevel(self):
            return True

        def doVetoProcessLevel(self, process):
            self.rndm.init(int(self.seed))
            return False

    return ReseedAfterProcessLevel(py.rndm)


class ChargeTable:
    """PDG id → electric charge, from Pythia's particle data (dense table for |id| < 10000)."""

    DENSE = 10000

    def __init__(self, pythia):
        self._pd = pythia.particleData
        ids = np.arange(self.DENSE)
        self._table = np.array([int(round(self._pd.charge(int(i)))) if self._pd.isParticle(int(i)) else 0
                                for i in ids], dtype=np.int8)
        self._cache: dict[int, int] = {}

    def __call__(self, pid: np.ndarray) -> np.ndarray:
        absid = np.abs(pid)
        dense = absid < self.DENSE
        out = np.empty(len(pid), dtype=np.int8)
        out[dense] = self._table[absid[dense]] * np.sign(pid[dense]).astype(np.int8)
        if not dense.all():  # nuclei and other rare states
            rare = np.flatnonzero(~dense)
            for k in rare.tolist():
                u = int(pid[k])
                c = self._cache.get(u)
                if c is None:
                    c = self._cache[u] = int(round(self._pd.charge(u)))
                out[k] = c
        return out
