"""The training loop: epochs of gradient steps (or one offline fit), validation, callbacks.

:class:`TrainingLoop` owns the model, optimizer and scheduler and runs

    for epoch: on_epoch_start -> train_epoch (batches, NaN guard) -> validate -> on_epoch_end

with :mod:`darkshower.train.callbacks` doing selection, early stopping, model files and metrics; the
loop writes the full ``checkpoint.pt`` after every callback has seen the epoch.
Data arrive as :class:`TrainingData` (in-memory stores today; a streaming source or a distributed
sampler plugs in by providing the same ``train_batches(epoch)`` / ``val_batches()``).
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from darkshower.errors import ConfigError, RunError, TrainingError
from darkshower.models.runs import atomic_torch_save
from darkshower.represent.store import iter_batches, store_len, take, to_torch
from darkshower.train import distributed as D
from darkshower.train.callbacks import Callback
from darkshower.train.distributed import SINGLE, World

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Training and validation samples of one run, as in-memory stores."""

    train: dict
    val: dict
    build_seconds: float = 0.0

    @property
    def n_train(self) -> int:
        return store_len(self.train)

    @property
    def n_val(self) -> int:
        return store_len(self.val)

    def train_batches(self, model, batch_size: int, seed: int, epoch: int, world: World = SINGLE):
        """One epoch of training batches: the method's order if it has one, else a (seed, epoch) shuffle;
        the last incomplete batch is dropped. In a distributed run the batches are cut into whole rounds
        of ``world.size`` and this rank takes every ``world.size``-th one (every rank takes as many steps)."""
        order = model.batch_order(self.train, batch_size, seed, epoch)
        if order is None:
            if not world.distributed:
                return iter_batches(self.train, batch_size, seed, epoch, drop_last=True)
            order = np.random.default_rng([seed, epoch]).permutation(self.n_train)
        order = np.asarray(order)
        n_batches = len(order) // batch_size if len(order) >= batch_size else (1 if len(order) else 0)
        starts = np.arange(n_batches) * batch_size
        if world.distributed:
            rounds = n_batches // world.size
            starts = starts[: rounds * world.size][world.rank::world.size]
        return (to_torch(take(self.train, order[a:a + batch_size])) for a in starts)

    def val_batches(self, batch_size: int, world: World = SINGLE) -> list:
        """Validation batches (in a distributed run: of this rank's share of the samples, every
        ``world.size``-th one, so the shares differ by at most one sample)."""
        if not world.distributed:
            return list(iter_batches(self.val, batch_size))
        return list(iter_batches(take(self.val, np.arange(world.rank, self.n_val, world.size)), batch_size))

    def emd_batches(self, n_samples: int) -> list:
        n = min(self.n_val, n_samples)
        return list(iter_batches(take(self.val, np.arange(n)), n))


def make_optimizer(params, cfg):
    import torch

    o = cfg.optimizer
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, weight_decay=o.weight_decay)
    if o.name == "adamw":
        return torch.optim.AdamW(params, lr=o.lr, weight_decay=o.weight_decay)
    return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)


def make_scheduler(opt, cfg):
    import torch

    s = cfg.schedule
    if s.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs, eta_min=s.min_lr)
    if s.name == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=s.step_size, gamma=s.gamma)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 1.0)


def rng_state() -> dict:
    import torch

    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(s: dict) -> None:
    import torch

    torch.set_rng_state(s["torch"])
    np.random.set_state(s["numpy"])
    random.setstate(s["python"])
    if "cuda" in s and torch.cuda.is_available() and len(s["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(s["cuda"])


def to_device(batch: dict, device) -> dict:
    """A batch's tensors on ``device`` (unchanged on CPU)."""
    if getattr(device, "type", device) == "cpu":
        return batch
    return {k: v.to(device, non_blocking=True) if hasattr(v, "to") else v for k, v in batch.items()}


class _LossModule(torch.nn.Module):
    """The method's loss as a module's forward, so DistributedDataParallel can hook the backward."""

    def __init__(self, method):
        super().__init__()
        self.method = method

    def forward(self, batch, ctx):
        return self.method.loss(batch, ctx)


class TrainingLoop:
    """Runs the epochs of one session; see the module docstring."""

    def __init__(self, session, data: TrainingData, model, callbacks: list[Callback], progress: bool = True):
        import torch

        self.session = session
        self.cfg = session.cfg
        self.data = data
        self.model = model
        self.callbacks = list(callbacks)
        self.world = D.current_world()
        self.progress = progress and self.world.is_main
        from darkshower.train.session import resolve_device

        # the training device (TrainConfig.device); the model goes back to the CPU when training ends
        self.device = torch.device(resolve_device(self.cfg.device))
        if self.world.distributed and self.device.type == "cuda":
            self.device = torch.device("cuda", torch.cuda.current_device())
        model.to(self.device)
        self.loss_fn = model.loss
        if self.world.distributed:
            if session.cls.fits_offline:
                raise ConfigError(f"{session.method} is fitted offline (no gradient steps): train it without --nproc")
            # gradients averaged over the ranks by DistributedDataParallel; buffers (e.g. an NAE's replay
            # buffer) stay per rank; some methods leave parameters unused in a phase (pre-training)
            self.ddp = torch.nn.parallel.DistributedDataParallel(_LossModule(model), broadcast_buffers=False,
                                                                 find_unused_parameters=True)
            self.loss_fn = self.ddp
        # a model without trainable parameters (e.g. sup-bdt, fitted offline) gets a dummy one
        params = [p for p in model.parameters() if p.requires_grad] or [torch.zeros((), requires_grad=True)]
        self.optimizer = make_optimizer(params, self.cfg)
        self.scheduler = make_scheduler(self.optimizer, self.cfg)
        self.history: list[dict] = []
        self.start_epoch = 0
        self.step = 0
        self.should_stop = False
        self.stop_reason = ""
        self.stopped_early_before = False

    # -- state ----------------------------------------------------------------------------------
    def restore(self, ckpt: dict) -> None:
        """Continue from a checkpoint written by :meth:`checkpoint_state`."""
        try:
            self.model.load_state_dict(ckpt["model"])
            self.optimizer.load_state_dict(ckpt["optimizer"])
            self.scheduler.load_state_dict(ckpt["scheduler"])
            ranks = ckpt.get("rng_ranks")
            set_rng_state(ranks[self.world.rank] if ranks and len(ranks) == self.world.size else ckpt["rng"])
            self.history, self.start_epoch = ckpt["history"], ckpt["epoch"] + 1
            for cb in self.callbacks:
                cb.load_state_dict(ckpt)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise RunError(f"{self.session.checkpoint_file}: checkpoint does not fit this run ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0]}); start a new run") from None
        self.stopped_early_before = bool(ckpt.get("stopped_early"))

    def checkpoint_state(self, epoch: int) -> dict:
        """Everything ``--resume`` needs to continue after ``epoch`` exactly."""
        rngs = D.gather_objects(rng_state())  # a collective in a distributed run: every rank calls this
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "rng": rngs[0], "epoch": epoch,
                 "history": self.history, "stopped_early": self.should_stop}
        if self.world.distributed:
            state["rng_ranks"] = rngs
            state["world_size"] = self.world.size
        for cb in self.callbacks:
            state.update(cb.state_dict())
        return state

    def stop(self, reason: str) -> None:
        """Ask the loop to stop after the current epoch (callbacks call this)."""
        self.should_stop = True
        self.stop_reason = reason

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> list[dict]:
        if self.stopped_early_before:
            log.info("run had stopped early at epoch %d; nothing to do", self.start_epoch)
            return self.history
        offline = self.session.cls.fits_offline
        self.step = self.start_epoch * math.ceil(self.data.n_train / self.cfg.batch_size)
        val_batches = self.data.val_batches(self.cfg.eval_batch_size, self.world)
        for cb in self.callbacks:
            cb.on_train_start(self)
        for epoch in range(self.start_epoch, 1 if offline else self.cfg.epochs):
            self.model.on_epoch_start(epoch)
            for cb in self.callbacks:
                cb.on_epoch_start(self, epoch)
            row = self.fit_offline() if offline else self.train_epoch(epoch)
            row.update(self.validate(val_batches))
            row.update({"lr": self.optimizer.param_groups[0]["lr"],
                        "build_seconds": self.data.build_seconds if epoch == self.start_epoch else 0.0})
            row = {"epoch": epoch + 1, **row}
            for cb in self.callbacks:
                cb.on_epoch_end(self, epoch, row)
            self.history.append(row)
            state = self.checkpoint_state(epoch)
            if self.world.is_main:
                atomic_torch_save(state, self.session.checkpoint_file)
            if self.should_stop:
                log.info(self.stop_reason)
                break
        self.model.to("cpu")  # what follows training (validation scores, files) runs on the CPU
        for cb in self.callbacks:
            cb.on_train_end(self)
        return self.history

    def _epoch_row(self, loss_sum: float, logs_sum: dict, n_seen: int, t_train: float, t_data: float) -> dict:
        if self.world.distributed:  # averages over every rank's samples; throughput of the whole job
            tot = D.all_reduce_sums({"loss": loss_sum, "n": n_seen, **{f"log_{k}": v for k, v in logs_sum.items()}})
            loss_sum, n_seen = tot.pop("loss"), int(tot.pop("n"))
            logs_sum = {k[4:]: v for k, v in tot.items()}
        row = {"train_loss": loss_sum / max(n_seen, 1)}
        row.update({f"train_{k}": v / max(n_seen, 1) for k, v in logs_sum.items()})
        row.update({"train_seconds": t_train, "data_seconds": t_data, "data_fraction": t_data / max(t_train, 1e-12),
                    "jets_per_s": n_seen / max(t_train, 1e-12)})
        return row

    def fit_offline(self) -> dict:
        """A non-gradient method: one fit on the whole training store."""
        t0 = time.perf_counter()
        self.model.train()
        logs = dict(self.model.fit_offline(self.data.train, self.data.val) or {})
        n = self.data.n_train
        loss_sum = float(logs.pop("loss", math.nan)) * n
        return self._epoch_row(loss_sum, {k: float(v) * n for k, v in logs.items()}, n, time.perf_counter() - t0, 0.0)

    def train_epoch(self, epoch: int) -> dict:
        import torch

        from darkshower.models.base import StepContext
        from darkshower.progress import progress

        cfg, model, opt = self.cfg, self.model, self.optimizer
        model.train()
        t_epoch = time.perf_counter()
        t_data = 0.0
        loss_sum, n_seen = 0.0, 0
        logs_sum: dict[str, float] = {}
        it = self.data.train_batches(model, cfg.batch_size, cfg.seed, epoch, self.world)
        with progress(self.data.n_train, f"{self.session.label} epoch {epoch + 1}/{cfg.epochs}", "jet",
                      enabled=self.progress, leave=False) as bar:
            while True:
                t0 = time.perf_counter()
                batch = next(it, None)
                t_data += time.perf_counter() - t0
                if batch is None:
                    break
                batch = to_device(batch, self.device)
                loss, logs = self.loss_fn(batch, StepContext(epoch, self.step, cfg.epochs))
                bad = not bool(torch.isfinite(loss))
                if self.world.distributed:
                    bad = D.any_rank(bad)  # every rank stops together
                if bad:
                    self._fail_nonfinite(loss.item(), epoch)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                bs = len(batch["label"])
                loss_sum += loss.item() * bs
                for k, v in logs.items():
                    logs_sum[k] = logs_sum.get(k, 0.0) + float(v) * bs
                n_seen += bs
                self.step += 1
                bar.update(bs)
                bar.set_postfix(loss=f"{loss_sum / n_seen:.4g}",
                                jets_s=f"{n_seen / max(time.perf_counter() - t_epoch, 1e-9):.0f}")
                for cb in self.callbacks:
                    cb.on_batch_end(self, bs, loss.item())
        self.scheduler.step()
        return self._epoch_row(loss_sum, logs_sum, n_seen, time.perf_counter() - t_epoch, t_data)

    def _fail_nonfinite(self, value: float, epoch: int) -> None:
        from darkshower.data.dataset import atomic_write_json

        run = self.session.run
        info = self.session.info
        info["status"] = f"failed: non-finite loss at epoch {epoch + 1}, step {self.step}"
        if self.world.is_main:
            atomic_write_json(run / "run.json", info)
        raise TrainingError(
            f"{run}: loss became {value} at epoch {epoch + 1}, step {self.step}; training stopped. "
            f"The last good checkpoint (epoch {epoch}) is kept. Lower optimizer.lr, keep grad_clip on, "
            "or for energy-based methods lower the MCMC step size / raise the energy regularization.")

    def validate(self, val_batches: list) -> dict:
        """Label-free validation metrics (``val_*``), and ``val_emd`` for energy-based methods."""
        import torch

        model = self.model
        model.eval()
        t0 = time.perf_counter()
        vsum: dict[str, float] = {}
        nv = 0
        with torch.no_grad():
            for b in val_batches:
                bs = len(b["label"])
                for k, v in model.val_metrics(to_device(b, self.device)).items():
                    vsum[k] = vsum.get(k, 0.0) + float(v) * bs
                nv += bs
        if self.world.distributed:  # the selection metric sees every rank's share of the validation data
            tot = D.all_reduce_sums({"__n": nv, **vsum})
            nv = int(tot.pop("__n"))
            vsum = tot
        row: dict[str, Any] = {f"val_{k}": v / max(nv, 1) for k, v in vsum.items()}
        if self.session.cls.energy_based:
            emd = float(model.validation_emd([to_device(b, self.device) for b in self.data.emd_batches(self.cfg.emd_samples)]))
            if self.world.distributed:  # each rank's own model samples; the mean over ranks
                emd = D.all_reduce_sums({"emd": emd})["emd"] / self.world.size
            row["val_emd"] = emd
        row["val_seconds"] = time.perf_counter() - t0
        return row
