"""Linear probe of a frozen representation — **uses labels**, so it is a diagnostic reported
separately from the (label-free) anomaly scores, never a model-selection criterion.

``linear_probe(run, background, signal)`` embeds both datasets with ``method.embed(batch)`` of a
trained run (e.g. ``clr``, ``aclr``, ``rs3l``; ``space=``: the named embedding ``method.embed_in(batch, space)``,
e.g. ``pooled``), splits the events of each in two by a hash of the
event id (``test_fraction`` held out), fits a logistic regression on the standardized embeddings
of the training half and returns the ROC AUC on the held-out half: how linearly separable the
signal is in the learned space.
"""

from __future__ import annotations

import numpy as np

from darkshower.errors import ConfigError, DatasetError


def embed_dataset(method, rep, dataset, batch_size: int = 4096, jet_idx: int | None = 0, window=None,
                  space: str | None = None):
    """(z [n, D] numpy, event_id, jet_idx) of every sample of ``dataset`` (only rank ``jet_idx``
    jets unless None; ``window``: the run's data config, whose jet pT/mass window is applied first, as in
    training, so rank 0 is the leading jet inside it; ``space``: a named embedding of the method,
    ``method.embed_in``, e.g. ``pooled`` of a contrastive run; None: ``embed``)."""
    import torch

    from darkshower.data.dataset import open_dataset
    from darkshower.represent.build import build
    from darkshower.represent.store import store_from_rep
    from darkshower.train.data import batches, select_jets

    if not method.has_embedding:
        raise ConfigError(f"method {method.name!r} has no embed(batch); a linear probe needs a representation")
    method.check_space(space)
    ds = dataset if hasattr(dataset, "read_chunk") else open_dataset(dataset)
    zs, ev, jx = [], [], []
    with torch.no_grad():
        for i in range(len(ds.chunks)):
            events = ds.read_chunk(i) if window is None else select_jets(ds.read_chunk(i), window)
            store = store_from_rep(build(rep, events, f"{ds.path} (chunk {i})"), 0.0)
            if jet_idx is not None and "jet_idx" in store:
                keep = np.flatnonzero(store["jet_idx"] == jet_idx)
                store = {k: v[keep] for k, v in store.items()}
            for b in batches(store, batch_size):
                zs.append(method.embed_in(b, space).double().numpy())
            ev.append(np.asarray(store["event_id"]))
            jx.append(np.asarray(store.get("jet_idx", np.full(len(store["event_id"]), -1))))
    if not zs:
        raise DatasetError(f"{ds.path}: no samples to embed")
    return np.concatenate(zs), np.concatenate(ev), np.concatenate(jx)


def probe_embeddings(z_bkg: np.ndarray, z_sig: np.ndarray, test_bkg: np.ndarray, test_sig: np.ndarray,
                     C: float = 1.0, max_iter: int = 2000) -> dict:
    """Logistic regression on the non-test rows, AUC on the test rows."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    x = np.concatenate([z_bkg, z_sig])
    y = np.r_[np.zeros(len(z_bkg)), np.ones(len(z_sig))]
    test = np.r_[test_bkg, test_sig]
    if len(np.unique(y[~test])) < 2 or len(np.unique(y[test])) < 2:
        raise DatasetError("linear probe: both classes are needed in the training and the test half")
    mean, std = x[~test].mean(0), x[~test].std(0)
    std[std < 1e-12] = 1.0
    x = (x - mean) / std
    clf = LogisticRegression(C=C, max_iter=max_iter, class_weight="balanced").fit(x[~test], y[~test])
    s = clf.decision_function(x)
    return {"auc": float(roc_auc_score(y[test], s[test])), "auc_train": float(roc_auc_score(y[~test], s[~test])),
            "n_train": int((~test).sum()), "n_test": int(test.sum()), "dim": int(x.shape[1])}


def linear_probe(run, background, signal, which: str = "best", jet_idx: int | None = 0, test_fraction: float = 0.5,
                 seed: int = 0, C: float = 1.0, space: str | None = None) -> dict:
    """AUC of a logistic regression on the frozen embedding of ``run`` (signal vs background,
    leading jets by default), trained on one part of the events and tested on the rest (``space``: a
    named embedding of the method, e.g. ``pooled``; None: ``embed``)."""
    from darkshower.models.runs import load_run
    from darkshower.train.data import event_fraction

    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction {test_fraction}: must be in (0, 1)")
    method, rep, cfg, info = load_run(run, which)
    zb, eb, _ = embed_dataset(method, rep, background, jet_idx=jet_idx, window=cfg.data, space=space)
    zs, es, _ = embed_dataset(method, rep, signal, jet_idx=jet_idx, window=cfg.data, space=space)
    out = probe_embeddings(zb, zs, event_fraction(eb, seed + 1) < test_fraction,
                           event_fraction(es, seed + 2) < test_fraction, C=C)
    out.update({"method": info["method"], "run": str(run), "space": space, "uses_labels": True})
    return out
