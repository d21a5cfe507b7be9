"""Score files (written by ``darkshower score``) and their join with dataset events.

A score file ``S.parquet`` has one row per scored jet (``dataset``, ``event_id``, ``jet_idx``,
``score``; ``jet_idx = -1`` for event-level methods) and the method in the Parquet metadata key
``darkshower`` (JSON ``{"method": ..., "run": ..., "datasets": {path: fingerprint}}``; without it
the file stem is the method; ``datasets`` identifies the scored version of each dataset, see
:func:`check_identity`).
``S.events.parquet`` beside it has one row per event (``dataset``, ``event_id``, ``score_lead``,
``score_max2``, and for calibrated runs ``score_pair``: Fisher's method over the two leading jets'
``eff_b``, darkshower.train.scorefiles.pair_scores). Files scored with decorrelation also have ``score_decor`` (jets) and
``score_decor_lead``/``score_decor_max2``/``score_decor_pair`` (events): :func:`decorrelated` turns them into a
score file of their own (named ``<method> (decor)``). Either file may be missing as long as the other is there: the
event scores are derived from the jet scores (leading jet; maximum of the two leading jets; the pair from ``eff_b``).
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from darkshower.errors import EvaluationError
from darkshower.train.scorefiles import event_table

log = logging.getLogger(__name__)

#: event scores of jet-level methods: max of the two leading jets, the leading jet, Fisher's method over the two
EVENT_SCORES = ("max2", "lead", "pair")
META_KEY = b"darkshower"


@dataclass
class ScoreFile:
    """The scores of one method: per-jet (may be None) and per-event tables."""

    path: Path
    method: str
    events: pd.DataFrame  # dataset, event_id, score_lead, score_max2, score_pair
    jets: pd.DataFrame | None = None  # dataset, event_id, jet_idx, score
    run: str | None = None
    supervised: bool = False
    meta: dict = field(default_factory=dict)
    name: str = ""  # unique display name (method, disambiguated)

    @property
    def level(self) -> str:
        """``"event"`` for event-level methods (jet_idx -1 or no jet table), else ``"jet"``."""
        if self.jets is None or not len(self.jets) or (self.jets["jet_idx"] < 0).all():
            return "event"
        return "jet"

    @property
    def datasets(self) -> list[str]:
        return sorted(self.events["dataset"].unique())


def events_path_of(path: Path) -> Path:
    return path.with_name(path.name[: -len(".parquet")] + ".events.parquet")


def _read_meta(path: Path) -> dict:
    import pyarrow.parquet as pq

    try:
        md = pq.read_schema(path).metadata or {}
    except Exception as exc:  # pyarrow raises several types for damaged files
        raise EvaluationError(f"{path}: not a readable Parquet score file ({type(exc).__name__}: {exc})") from None
    raw = md.get(META_KEY)
    if not raw:
        return {}
    try:
        meta = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        log.warning("%s: metadata key 'darkshower' is not JSON; ignoring it", path)
        return {}
    return meta if isinstance(meta, dict) else {}


def _read_table(path: Path, required: tuple[str, ...]) -> pd.DataFrame:
    try:
        df = pd.read_parquet(path)
    except Exception as exc:
        raise EvaluationError(f"{path}: cannot read score file ({type(exc).__name__}: {exc})") from None
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise EvaluationError(
            f"{path}: not a score file: missing column(s) {missing} (has {list(df.columns)}); "
            "score files are written by `darkshower score RUN DATASET... --out SCORES.parquet`"
        )
    df["dataset"] = df["dataset"].astype(str)
    df["event_id"] = df["event_id"].astype(np.int64)
    return df


def read_scores(path: str | os.PathLike, supervised: bool = False) -> ScoreFile:
    """Read ``S.parquet`` (+ ``S.events.parquet``); either may be given, the other is optional."""
    p = Path(path)
    if p.name.endswith(".events.parquet"):
        ev_path, jet_path = p, p.with_name(p.name[: -len(".events.parquet")] + ".parquet")
    else:
        jet_path, ev_path = p, events_path_of(p)
    if p.is_dir():
        raise EvaluationError(f"{p}: is a directory; give a score file written by `darkshower score ... --out "
                              "S.parquet`")
    if not jet_path.exists() and not ev_path.exists():
        raise EvaluationError(f"{p}: score file not found")
    meta = _read_meta(jet_path if jet_path.exists() else ev_path)
    jets = None
    if jet_path.exists():
        jets = _read_table(jet_path, ("dataset", "event_id", "score"))
        if "jet_idx" not in jets.columns:
            jets["jet_idx"] = -1
        jets["jet_idx"] = jets["jet_idx"].astype(np.int64)
        jets["score"] = jets["score"].astype(np.float64)
        dup = jets.duplicated(["dataset", "event_id", "jet_idx"])
        if dup.any():
            r = jets[dup].iloc[0]
            raise EvaluationError(
                f"{jet_path}: {int(dup.sum())} duplicate (dataset, event_id, jet_idx) rows, e.g. "
                f"({r['dataset']}, {r['event_id']}, {r['jet_idx']}); rescore into a new file"
            )
    if ev_path.exists():
        events = _read_table(ev_path, ("dataset", "event_id"))
        if "score_max2" not in events.columns and "score_lead" not in events.columns:
            if "score" not in events.columns:
                raise EvaluationError(f"{ev_path}: needs columns score_lead and score_max2 (or score)")
            events["score_lead"] = events["score_max2"] = events["score"]
        for c in ("score_lead", "score_max2"):
            if c not in events.columns:
                events[c] = events["score_max2" if c == "score_lead" else "score_lead"]
            events[c] = events[c].astype(np.float64)
        # columns an older file lacks (score_decor_*, score_pair) come from its jet scores, as score writes them
        missing: list[str] = []
        if "score_decor_max2" not in events.columns and jets is not None and "score_decor" in jets.columns:
            missing += ["score_decor_lead", "score_decor_max2", "score_decor_pair"]
        for c in ("score", "score_decor"):
            if f"{c}_max2" in events.columns and f"{c}_pair" not in events.columns:
                missing.append(f"{c}_pair")
        if missing and jets is not None:
            derived = event_table(jets, meta.get("n_val_scores"))
            events = events.merge(derived[["dataset", "event_id", *[c for c in missing if c in derived.columns]]],
                                  on=["dataset", "event_id"], how="left")
        for c in missing:
            if c not in events.columns:  # no jet table: an event-level file's pair is its one score, else none
                events[c] = events[c.replace("_pair", "_max2")] if meta.get("level") == "event" else np.nan
        dup = events.duplicated(["dataset", "event_id"])
        if dup.any():
            r = events[dup].iloc[0]
            raise EvaluationError(
                f"{ev_path}: {int(dup.sum())} duplicate (dataset, event_id) rows, e.g. ({r['dataset']}, {r['event_id']})"
            )
    else:
        events = event_table(jets, meta.get("n_val_scores"))
    method = str(meta.get("method") or "") or jet_path.name[: -len(".parquet")]
    run = meta.get("run")
    sup = bool(supervised or meta.get("supervised", False))
    return ScoreFile(path=jet_path if jet_path.exists() else ev_path, method=method, events=events, jets=jets,
                     run=None if run is None else str(run), supervised=sup, meta=meta, name=method)


DECOR_SUFFIX = " (decor)"


def has_event_score(sf: ScoreFile, event_score: str) -> bool:
    """True when ``sf`` has a finite event score ``event_score`` for some event (``pair`` needs calibrated
    per-jet scores, ``eff_b``)."""
    col = f"score_{event_score}"
    return col in sf.events.columns and bool(np.isfinite(sf.events[col].to_numpy(np.float64)).any())


def has_decorrelated(sf: ScoreFile) -> bool:
    """True when ``sf`` carries decorrelated scores (``darkshower score`` of a run with val_decor.npz)."""
    return "score_decor_max2" in sf.events.columns or "score_decor_lead" in sf.events.columns


def decorrelated(sf: ScoreFile) -> ScoreFile:
    """The decorrelated scores of ``sf`` as a score file of their own (``score`` = ``score_decor``,
    ``score_lead``/``score_max2`` = ``score_decor_lead``/``score_decor_max2``); EvaluationError naming
    the file and the fix when it has none."""
    if not has_decorrelated(sf):
        raise EvaluationError(
            f"{sf.path} (method {sf.name!r}) has no decorrelated scores (columns score_decor_lead/score_decor_max2): "
            f"rescore with `darkshower score {sf.run or 'RUN'} DATASET...{_kind_opt(sf)} --decorrelate --out S.parquet`; a run trained "
            "before darkshower stored RUN/val_decor.npz must be retrained first"
        )
    ev = sf.events.copy()
    for c in ("lead", "max2"):
        other = "max2" if c == "lead" else "lead"
        ev[f"score_{c}"] = ev[f"score_decor_{c}" if f"score_decor_{c}" in ev.columns else f"score_decor_{other}"]
    ev["score_pair"] = ev["score_decor_pair"] if "score_decor_pair" in ev.columns else np.nan
    jets = None
    if sf.jets is not None and "score_decor" in sf.jets.columns:
        jets = sf.jets.copy()
        jets["score"] = jets["score_decor"].astype(np.float64)
    meta = dict(sf.meta, decorrelated=True)
    return ScoreFile(path=sf.path, method=sf.method, events=ev, jets=jets, run=sf.run, supervised=sf.supervised,
                     meta=meta, name=sf.name + DECOR_SUFFIX)


def _kind_opt(sf: ScoreFile) -> str:
    """`` --score-kind KIND`` for a score file written with one (rescore hints keep the file's score)."""
    kind = (sf.meta or {}).get("score_kind")
    return f" --score-kind {kind}" if kind else ""


def read_score_files(paths, supervised_paths=()) -> list[ScoreFile]:
    """Read several score files and give each a unique ``name``: the method; with several files of one method,
    ``method (run directory)``, or ``method (file stem)`` where one run has several files (e.g. two score kinds)."""
    files = [read_scores(p) for p in paths] + [read_scores(p, supervised=True) for p in supervised_paths]
    seen: dict[str, int] = {}
    for f in files:
        seen[f.method] = seen.get(f.method, 0) + 1
    by_run = [f"{f.method} ({Path(f.run).name})" if f.run else f"{f.method} ({f.path.stem})" for f in files]
    used: set[str] = set()
    for f, run_name in zip(files, by_run, strict=True):
        name = f.method
        if seen[f.method] > 1:  # one run scored twice (e.g. by two score kinds): the score files' names
            name = run_name if by_run.count(run_name) == 1 else f"{f.method} ({f.path.stem})"
        base, i = name, 2
        while name in used:
            name, i = f"{base} #{i}", i + 1
        used.add(name)
        f.name = name
    return files


def is_score_file(path: Path) -> bool:
    """True for a Parquet file with ``dataset``, ``event_id`` and a score column (used by report)."""
    import pyarrow.parquet as pq

    if path.name.endswith(".events.parquet") and path.with_name(path.name[: -len(".events.parquet")] + ".parquet").exists():
        return False
    try:
        names = set(pq.read_schema(path).names)
    except Exception:
        return False
    return {"dataset", "event_id"} <= names and bool({"score", "score_lead", "score_max2"} & names)


def _norm(p: str) -> str:
    return str(Path(p).resolve())


def _matching_keys(sf: ScoreFile, keys, dataset_path: str) -> list[str]:
    """Keys (dataset paths as recorded in ``sf``) of one dataset: the same resolved path, else the
    unique key with the same directory name (a moved dataset, with a warning)."""
    target = _norm(dataset_path)
    resolved = {d: _norm(d) for d in keys}
    hits = [d for d, r in resolved.items() if r == target]
    if not hits:
        same_name = [d for d in resolved if Path(d).name == Path(target).name]
        if len(same_name) == 1:
            log.warning("%s: scores of dataset %s matched to %s by directory name (the dataset moved?)",
                        sf.path, same_name[0], target)
            hits = same_name
    return hits


def has_scores(sf: ScoreFile, dataset_path: str) -> bool:
    """True when ``sf`` has rows for the dataset (see :func:`match_dataset`)."""
    return bool(_matching_keys(sf, sf.events["dataset"].unique(), dataset_path))


def match_dataset(sf: ScoreFile, table: pd.DataFrame, dataset_path: str) -> pd.DataFrame:
    """Rows of a score table for one dataset: same resolved path, else the unique same-named one."""
    hits = _matching_keys(sf, table["dataset"].unique(), dataset_path)
    if not hits:
        target = _norm(dataset_path)
        have = ", ".join(sorted({_norm(d) for d in table["dataset"].unique()})) or "none"
        raise EvaluationError(
            f"{sf.path} (method {sf.name!r}) has no scores for dataset {target} (it has scores for: {have}); "
            f"score it with `darkshower score {sf.run or 'RUN'} {target}{_kind_opt(sf)} --out ...`"
        )
    return table[table["dataset"].isin(hits)]


def check_identity(sf: ScoreFile, dataset_path: str, fingerprint: str | None) -> bool:
    """Check that ``sf`` scored this version of the dataset (its content fingerprint).

    ``darkshower score`` records each dataset's fingerprint (metadata key ``datasets``); a
    different one means the dataset was replaced at the same path after scoring, and the scores
    would be joined to other events by event id: :class:`EvaluationError` naming the dataset and
    the fix. Returns False (nothing to check) for score files without fingerprints (older files).
    """
    recorded = sf.meta.get("datasets")
    if not isinstance(recorded, dict) or fingerprint is None:
        return False
    keys = _matching_keys(sf, recorded, dataset_path)
    if not keys:
        return False
    was = recorded[keys[0]]
    if was != fingerprint:
        target = _norm(dataset_path)
        raise EvaluationError(
            f"{sf.path} (method {sf.name!r}): dataset {target} is not the one that was scored (its content "
            f"fingerprint is {fingerprint[:19]}…, the score file recorded {str(was)[:19]}…): it was regenerated or "
            f"replaced at the same path, and its events would be matched to old scores. Rescore it: "
            f"`darkshower score {sf.run or 'RUN'} {target} ...{_kind_opt(sf)} --out NEW.parquet`"
        )
    return True


def unchecked_warning(sf: ScoreFile) -> str:
    """The warning for a score file without dataset fingerprints (accepted, but not checked)."""
    return (f"{sf.path} (method {sf.name!r}) records no dataset fingerprints (written by an older darkshower): "
            "cannot check that the datasets are the versions that were scored; rescore with `darkshower score` "
            "to be sure")


def join_event_scores(sf: ScoreFile, events: pd.DataFrame, dataset_path: str, event_score: str = "max2") -> np.ndarray:
    """Event scores of ``sf`` aligned with ``events`` (rows of one dataset, column ``event_id``).

    Events without a score get NaN (evaluation drops them and counts them). Scores for event
    ids that the dataset does not have make an EvaluationError naming both.
    """
    if event_score not in EVENT_SCORES:
        raise EvaluationError(f"event score {event_score!r}: choose one of {EVENT_SCORES}")
    rows = match_dataset(sf, sf.events, dataset_path)
    ids = events["event_id"].to_numpy(np.int64)
    col = f"score_{event_score}"
    if event_score == "pair" and not has_event_score(sf, "pair"):
        raise EvaluationError(
            f"{sf.path} (method {sf.name!r}) has no event score 'pair': Fisher's method over the two leading jets "
            "needs calibrated per-jet scores (eff_b). A run's scores get them from `darkshower score` (a run trained "
            "before validation scores were stored must be retrained); an ensemble of jet-level members has none "
            "(its score is not calibrated). Use --event-score max2 for it"
        )
    sc = pd.Series(rows[col].to_numpy(np.float64), index=rows["event_id"].to_numpy(np.int64))
    unknown = ~sc.index.isin(ids)
    if unknown.any():
        ex = ", ".join(str(x) for x in sc.index[unknown][:5])
        raise EvaluationError(
            f"{sf.path} and dataset {dataset_path} do not join: {int(unknown.sum())} of {len(sc)} scored event ids "
            f"are not in the dataset (e.g. {ex}); were the scores made from another dataset or an older version "
            "of it? Rescore with `darkshower score`"
        )
    return sc.reindex(ids).to_numpy(np.float64)


def join_jet_scores(sf: ScoreFile, jets: pd.DataFrame, dataset_path: str) -> np.ndarray:
    """Jet scores aligned with ``jets`` (columns ``event_id``, ``jet_idx``) of one dataset."""
    if sf.jets is None:
        return np.full(len(jets), np.nan)
    rows = match_dataset(sf, sf.jets, dataset_path)
    rows = rows[rows["jet_idx"] >= 0]
    key = pd.MultiIndex.from_arrays([rows["event_id"].to_numpy(np.int64), rows["jet_idx"].to_numpy(np.int64)])
    sc = pd.Series(rows["score"].to_numpy(np.float64), index=key)
    want = pd.MultiIndex.from_arrays([jets["event_id"].to_numpy(np.int64), jets["jet_idx"].to_numpy(np.int64)])
    unknown = ~key.isin(want)
    if unknown.any():
        ex = ", ".join(f"({a}, {b})" for a, b in list(key[unknown][:5]))
        raise EvaluationError(
            f"{sf.path} and dataset {dataset_path} do not join: {int(unknown.sum())} of {len(sc)} scored "
            f"(event_id, jet_idx) pairs are not jets of the dataset (e.g. {ex}); rescore with `darkshower score`"
        )
    return sc.reindex(want).to_numpy(np.float64)
