"""Training of the jet taggers: AdamW, one-cycle learning rate, best epoch chosen on the validation split."""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor, nn
from tqdm import tqdm

__all__ = ["TrainingResult", "TrainingSettings", "train_tagger"]

#: Input tensor names in the order the networks' ``logits`` take them.
TaggerInputs = dict[str, npt.NDArray[np.float32]]


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """Hyper-parameters of one training (written into the model card)."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float = 0.01
    seed: int = 0
    #: Stop after this many optimiser steps (smoke mode); None = full epochs.
    max_steps: int | None = None


@dataclass(frozen=True)
class TrainingResult:
    """The trained network (best validation epoch) and its history."""

    network: nn.Module
    train_loss: list[float]
    validation_loss: list[float]
    best_epoch: int
    seconds: float


def _logits(
    network: nn.Module, names: tuple[str, ...], inputs: TaggerInputs, index: npt.NDArray[np.int64]
) -> Tensor:
    tensors = [torch.from_numpy(inputs[name][index]) for name in names]
    return network.logits(*tensors)  # type: ignore[operator,no-any-return]


def _validation_loss(
    network: nn.Module, names: tuple[str, ...], inputs: TaggerInputs, target: npt.NDArray[np.int64]
) -> float:
    network.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(target), 1024):
            index = np.arange(start, min(start + 1024, len(target)))
            logits = _logits(network, names, inputs, index)
            total += float(
                nn.functional.cross_entropy(logits, torch.from_numpy(target[index]), reduction="sum")
            )
    return total / max(1, len(target))


def train_tagger(
    network: nn.Module,
    names: tuple[str, ...],
    train: tuple[TaggerInputs, npt.NDArray[np.int8]],
    validation: tuple[TaggerInputs, npt.NDArray[np.int8]],
    settings: TrainingSettings,
    *,
    description: str,
) -> TrainingResult:
    """Train ``network`` (labels: 1 = top -> class 0, 0 = QCD -> class 1) and keep its best validation epoch."""
    torch.manual_seed(settings.seed)
    rng = np.random.default_rng(settings.seed)
    train_inputs, train_labels = train
    validation_inputs, validation_labels = validation
    # Output order is (P(top), P(QCD)): class index 0 is top.
    train_target = (1 - train_labels).astype(np.int64)
    validation_target = (1 - validation_labels).astype(np.int64)
    steps_per_epoch = max(1, len(train_target) // settings.batch_size)
    total_steps = steps_per_epoch * settings.epochs
    if settings.max_steps is not None:
        total_steps = min(total_steps, settings.max_steps)
    optimiser = torch.optim.AdamW(
        network.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=settings.learning_rate, total_steps=total_steps, pct_start=0.2
    )
    start_time = time.perf_counter()
    history_train: list[float] = []
    history_validation: list[float] = []
    best_state = copy.deepcopy(network.state_dict())
    best_loss = float("inf")
    best_epoch = 0
    step = 0
    progress = tqdm(total=total_steps, desc=f"train {description}", unit="step")
    for epoch in range(settings.epochs):
        network.train()
        order = rng.permutation(len(train_target))
        running = 0.0
        n_batches = 0
        for batch in range(steps_per_epoch):
            if step >= total_steps:
                break
            index = order[batch * settings.batch_size : (batch + 1) * settings.batch_size]
            loss = nn.functional.cross_entropy(
                _logits(network, names, train_inputs, index), torch.from_numpy(train_target[index])
            )
            optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            optimiser.step()
            schedule.step()
            running += float(loss.detach())
            n_batches += 1
            step += 1
            progress.update(1)
            progress.set_postfix(epoch=epoch + 1, loss=f"{running / n_batches:.4f}")
        history_train.append(running / max(1, n_batches))
        history_validation.append(_validation_loss(network, names, validation_inputs, validation_target))
        if history_validation[-1] < best_loss:
            best_loss = history_validation[-1]
            best_epoch = epoch + 1
            best_state = copy.deepcopy(network.state_dict())
        if step >= total_steps:
            break
    progress.close()
    network.load_state_dict(best_state)
    network.eval()
    return TrainingResult(
        network=network,
        train_loss=history_train,
        validation_loss=history_validation,
        best_epoch=best_epoch,
        seconds=time.perf_counter() - start_time,
    )
