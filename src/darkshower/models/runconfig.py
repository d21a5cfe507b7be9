"""The validated configuration of a training run (YAML via ``--config``; every run saves it as
``config.yaml``, part of the run-directory format of :mod:`darkshower.models.runs`)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from darkshower.config import StrictModel


class OptimizerConfig(StrictModel):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="sgd only")


class ScheduleConfig(StrictModel):
    name: Literal["constant", "cosine", "step"] = "constant"
    step_size: int = Field(10, ge=1, description="step: epochs between decays")
    gamma: float = Field(0.5, gt=0, le=1, description="step: decay factor")
    min_lr: float = Field(0.0, ge=0, description="cosine: final learning rate")


class EarlyStoppingConfig(StrictModel):
    patience: int | None = Field(5, ge=1, description="epochs without improvement of the selection metric; null: off")
    min_delta: float = Field(0.0, ge=0)


class DataConfig(StrictModel):
    val_fraction: float = Field(0.2, gt=0, lt=1, description="events held out for validation when --val is not given")
    max_train: int | None = Field(None, ge=1, description="use at most this many training samples")
    max_val: int | None = Field(None, ge=1)
    jet_pt_min: float | None = Field(None, ge=0, description="keep jets with pT above (GeV)")
    jet_pt_max: float | None = Field(None, gt=0)
    jet_mass_min: float | None = Field(None, ge=0)
    jet_mass_max: float | None = Field(None, gt=0)
    cache: bool = Field(True, description="cache each chunk's representation in RUN/cache (npz)")
    signal: list[str] = Field(default_factory=list, description="signal datasets (label 1): supervised references only")
    streaming: Literal["auto", "on", "off"] = Field(
        "auto", description="read training batches chunk by chunk from the cache instead of holding the training "
                            "set in memory; auto: when it has more than stream_above samples")
    stream_above: int = Field(2_000_000, ge=1, description="auto streaming: sample count above which training streams")
    shuffle_buffer: int = Field(200_000, ge=1, description="streaming: samples shuffled together (a larger buffer "
                                                           "mixes better and uses more memory)")
    prepare_samples: int = Field(200_000, ge=1, description="streaming: training samples the preprocessing is fitted on")

    @field_validator("streaming", mode="before")
    @classmethod
    def _yaml_on_off(cls, v):
        # YAML reads a bare on/off (e.g. `--set data.streaming=on`) as a boolean
        return {True: "on", False: "off"}.get(v, v) if isinstance(v, bool) else v


class TrainConfig(StrictModel):
    method: str
    representation: dict = Field(default_factory=dict, description="merged over the method's default representation")
    model: dict = Field(default_factory=dict, description="method hyper-parameters (validated by the method)")
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    epochs: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    eval_batch_size: int = Field(4096, ge=1)
    seed: int = Field(0, ge=0)
    grad_clip: float | None = Field(5.0, gt=0, description="max gradient norm; null: off")
    selection: Literal["val_loss", "val_emd", "last"] | None = Field(
        None, description="how the 'best' model is chosen (never with labels); null: the method's default")
    emd_samples: int = Field(512, ge=16, description="validation samples used for the EMD selection metric")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads (default: all cores)")
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="training device: auto = CUDA when torch sees a GPU, else CPU (may change on --resume)")
