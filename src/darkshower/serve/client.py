"""Scoring through an inference server (KServe v2 / Triton, e.g. ``darkshower serve`` or a Triton server with a
repository written by ``darkshower export --format triton``), with the official ``tritonclient.http`` client.

- :class:`RemoteScorer` — ``RemoteScorer(url, model, representation).score(events)``: the same table as
  :func:`darkshower.models.inference.score_arrays` (event_id, jet_idx, score, nonfinite_input) for one batch of
  events (awkward), e.g. inside a coffea processor. Representations are built locally; batches go out as binary
  tensors with several requests in flight.
- :func:`score_remote` — ``darkshower score RUN DATASET... --server URL [--model NAME]``: the same score files
  as local scoring.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from darkshower.errors import ConfigError, DatasetError, ServeError

log = logging.getLogger(__name__)

__all__ = ["RemoteScorer", "score_remote"]


def _require():
    try:
        import tritonclient.http  # noqa: F401
    except ImportError as exc:
        raise ServeError(f"scoring through a server needs the optional package {exc.name!r}: "
                         "pip install -e \".[serve]\"") from None


def _hostport(url: str) -> tuple[str, bool]:
    url = str(url).strip()
    ssl = url.startswith("https://")
    for p in ("http://", "https://"):
        if url.startswith(p):
            url = url[len(p):]
    url = url.rstrip("/")
    if not url or "/" in url:
        raise ConfigError(f"--server {url!r}: give the server as http://HOST:PORT")
    return url, ssl


class RemoteScorer:
    """Scores of events by a model on a KServe v2 server. ``representation``: the run's representation config
    (``run.json``'s, with fitted statistics; a run directory or a repository model directory with
    darkshower.json can be given instead)."""

    def __init__(self, url: str, model: str, representation=None, version: str = "", batch_size: int = 1024,
                 concurrency: int = 4, timeout: float = 60.0):
        _require()
        import tritonclient.http as th
        from tritonclient.utils import InferenceServerException

        from darkshower.represent.config import parse_representation

        for what, v in (("batch_size", batch_size), ("concurrency", concurrency)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{what}={v!r}: must be an integer >= 1")
        if isinstance(representation, (str, os.PathLike)):
            representation = _representation_of(Path(representation))
        self.rep = parse_representation(representation) if representation is not None else None
        self.url, self.model, self.version = url, model, str(version or "")
        self.batch_size = batch_size
        host, ssl = _hostport(url)
        self._client = th.InferenceServerClient(host, ssl=ssl, concurrency=concurrency, connection_timeout=timeout,
                                                network_timeout=timeout)
        self._exc = InferenceServerException
        try:
            if not self._client.is_model_ready(model, self.version):
                meta = None
                try:
                    idx = self._client.get_model_repository_index()
                    meta = [f"{e.get('name')}/{e.get('version')}: {e.get('state')} {e.get('reason', '')}".strip()
                            for e in idx]
                except Exception:
                    pass
                raise ServeError(f"model {model!r}{' version ' + self.version if self.version else ''} is not ready "
                                 f"on {url}" + (f" (server models: {meta})" if meta else ""))
            md = self._client.get_model_metadata(model, self.version)
        except (self._exc, OSError, ConnectionError) as exc:
            raise ServeError(f"cannot use model {model!r} on {url}: {exc}") from None
        self.inputs = {t["name"]: t for t in md["inputs"]}
        self.output = md["outputs"][0]["name"]
        self.version = md.get("versions", [self.version])[-1] if not self.version else self.version

    def close(self) -> None:
        self._client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _feeds(self, batch: dict) -> dict:
        from tritonclient.utils import triton_to_np_dtype

        missing = sorted(set(self.inputs) - set(batch))
        if missing:
            raise ServeError(f"model {self.model!r} on {self.url} takes inputs {sorted(self.inputs)}; the "
                             f"representation gives {sorted(batch)}: is it the model of this run?")
        out = {}
        for name, t in self.inputs.items():
            a = batch[name]
            a = a.numpy() if hasattr(a, "numpy") else np.asarray(a)
            out[name] = np.ascontiguousarray(a.astype(triton_to_np_dtype(t["datatype"]), copy=False))
        return out

    def score_store(self, store: dict) -> np.ndarray:
        """Scores [n] (float64) of a sample store (:mod:`darkshower.represent.store`); NaN/inf inputs -> NaN."""
        import tritonclient.http as th

        from darkshower.represent.store import iter_batches, nonfinite_rows, store_len

        n = store_len(store)
        if "graphs" in store:
            raise ServeError("graph representations (Lund graphs) cannot be scored through a server")
        pending = []
        for b in iter_batches(store, self.batch_size):
            feeds = self._feeds(b)
            inputs = []
            for name, a in feeds.items():
                i = th.InferInput(name, list(a.shape), self.inputs[name]["datatype"])
                i.set_data_from_numpy(a, binary_data=True)
                inputs.append(i)
            outputs = [th.InferRequestedOutput(self.output, binary_data=True)]
            pending.append((len(next(iter(feeds.values()))),
                            self._client.async_infer(self.model, inputs, model_version=self.version,
                                                     outputs=outputs)))
        scores = np.empty(n, np.float64)
        a = 0
        try:
            for rows, req in pending:
                s = req.get_result().as_numpy(self.output).reshape(-1)
                if len(s) != rows:
                    raise ServeError(f"model {self.model!r} on {self.url} returned {len(s)} scores for {rows} samples")
                scores[a:a + rows] = s
                a += rows
        except (self._exc, OSError, ConnectionError) as exc:
            raise ServeError(f"inference on {self.url} (model {self.model!r}) failed: {exc}") from None
        scores[nonfinite_rows(store)] = np.nan
        return scores

    def score(self, events, source: str | None = None) -> pd.DataFrame:
        """Scores of a batch of events (awkward): ``event_id``, ``jet_idx``, ``score``, ``nonfinite_input``."""
        from darkshower.represent.build import build
        from darkshower.represent.store import nonfinite_rows, store_from_rep, store_len

        if self.rep is None:
            raise ConfigError("RemoteScorer needs the representation (run directory or its representation config)")
        store = store_from_rep(build(self.rep, events, source), 0.0)
        s = self.score_store(store)
        n = store_len(store)
        return pd.DataFrame({"event_id": np.asarray(store["event_id"], np.int64),
                             "jet_idx": np.asarray(store.get("jet_idx", np.full(n, -1)), np.int64), "score": s,
                             "nonfinite_input": nonfinite_rows(store)})


def _representation_of(path: Path) -> dict:
    import json

    from darkshower.export.triton import MODEL_INFO
    from darkshower.models.runs import read_run_json

    if (path / MODEL_INFO).exists():
        return json.loads((path / MODEL_INFO).read_text())["representation"]
    from darkshower.models.runs import require_model

    info = read_run_json(path)
    require_model(path, info, "served")
    return info["representation"]


def score_remote(run, datasets, out, server: str, model: str | None = None, version: str = "",
                 batch_size: int = 1024, concurrency: int = 4, progress: bool = True) -> tuple[Path, Path]:
    """Like :func:`darkshower.train.score.score`, with the model on ``server`` (served as ``model``, default: the
    run's directory name): the same two score files. Representations are built here from the run's config."""
    from darkshower.data.dataset import acquire_lock, open_dataset
    from darkshower.data.fingerprint import dataset_fingerprint
    from darkshower.models.runs import read_run_config, read_run_json, require_model
    from darkshower.progress import progress as _progress
    from darkshower.represent.window import dataset_jet_idx, select_jets_indexed
    from darkshower.train.score import check_score_output, eff_b, read_val_scores, write_score_files

    run = Path(run)
    info = read_run_json(run)
    require_model(run, info, "scored on a server")
    window = read_run_config(run).data  # the run's jet window, applied as in training and local scoring
    model = model or run.resolve().name
    out = check_score_output(out)
    if isinstance(datasets, (str, os.PathLike)) or hasattr(datasets, "read_chunk"):
        datasets = [datasets]
    dss = [d if hasattr(d, "read_chunk") else open_dataset(d) for d in datasets]
    for ds in dss:
        if not ds.chunks:
            raise DatasetError(f"{ds.path}: dataset has no chunks")
    with RemoteScorer(server, model, info["representation"], version, batch_size, concurrency) as scorer:
        created = [a for a in reversed(out.parents) if not a.exists()]
        out.parent.mkdir(parents=True, exist_ok=True)
        lock = None
        try:
            lock = acquire_lock(out.with_name(f".{out.name}.lock"), f"--out {out}", "these scores", ConfigError)
            t0 = time.perf_counter()
            parts, fingerprints = [], {}
            bar = _progress(sum(len(ds.chunks) for ds in dss), f"score {run.name} via {server}", "chunk",
                            enabled=progress, leave=False)
            with bar:
                for ds in dss:
                    fingerprints[str(ds.path.resolve())] = dataset_fingerprint(ds)
                    for i in range(len(ds.chunks)):
                        events, index = select_jets_indexed(ds.read_chunk(i), window)
                        try:
                            df = scorer.score(events, f"{ds.path} (chunk {i})")
                        except (KeyError, ValueError) as exc:
                            raise DatasetError(f"{ds.path}: cannot build representation '{scorer.rep.kind}' for "
                                               f"scoring: {exc}") from None
                        df = dataset_jet_idx(df, events, index)
                        df.insert(0, "dataset", str(ds.path.resolve()))
                        parts.append(df)
                        bar.update(1)
            jets = pd.concat(parts, ignore_index=True)
            n_bad = int(jets["nonfinite_input"].sum())
            if n_bad:
                log.warning("%d of %d samples have NaN/inf model inputs: not scored (score NaN, "
                            "nonfinite_input=True)", n_bad, len(jets))
            val = read_val_scores(run, "best")
            jets["eff_b"] = eff_b(val, jets["score"].to_numpy())  # as local scoring
            meta = {"method": info["method"], "run": str(run.resolve()), "model": "server",
                    "n_val_scores": None if val is None else len(val),
                    "server": server, "server_model": model, "server_model_version": scorer.version,
                    "representation": info["representation"]["kind"], "level": info.get("level", "jet"),
                    "supervised": info.get("supervised", False), "n_nonfinite_input": n_bad,
                    "datasets": fingerprints, "jets_per_s": len(jets) / max(time.perf_counter() - t0, 1e-9)}
            out, evp = write_score_files(jets, out, meta)
            log.info("scored %d samples through %s in %.1f s", len(jets), server, time.perf_counter() - t0)
            return out, evp
        finally:
            if lock is not None:
                lock.unlink(missing_ok=True)
            for a in reversed(created):
                try:
                    a.rmdir()
                except OSError:
                    break
