"""Training as the ringer group does it: per-bin nets, k-fold cross-validation with several initialisations,
full-batch RProp on the MSE to ±1 targets (classes balanced per bin), early stopping on the SP index.

Every fold x initialisation x bin is trained at once: the stacked weights have shape
[models, bins, ...], each model sees only its fold's training rows, and RProp's per-element steps keep them
independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from ._model import Binning, RingerEnsemble

__all__ = ["CrossValidation", "TrainingSettings", "best_sp", "cross_validate", "sp_index"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, kw_only=True)
class TrainingSettings:
    """Cross-validation and optimisation settings."""

    folds: int = 5
    inits: int = 3
    max_epochs: int = 400
    eval_every: int = 5
    #: Stop when no (model, bin) improved its validation SP for this many epochs.
    patience: int = 60


SpValue = TypeVar("SpValue", float, FloatArray, torch.Tensor)


def sp_index(pd: SpValue, pf: SpValue) -> SpValue:
    """SP = sqrt( sqrt(P_D (1 - P_F)) · (P_D + 1 - P_F) / 2 )."""
    value: SpValue = ((pd * (1 - pf)) ** 0.5 * (pd + 1 - pf) / 2) ** 0.5
    return value


def best_sp(
    scores: torch.Tensor, is_signal: torch.Tensor, mask: torch.Tensor, n_hist: int = 200
) -> torch.Tensor:
    """Max SP over thresholds of scores [..., n] restricted to ``mask``; 0 where a class is empty."""
    edges = torch.clamp(((scores + 1) / 2 * n_hist).long(), 0, n_hist - 1)
    shape = (*scores.shape[:-1], n_hist)
    sig = torch.zeros(shape).scatter_add_(-1, edges, (mask & is_signal).float())
    bkg = torch.zeros(shape).scatter_add_(-1, edges, (mask & ~is_signal).float())
    # Accept score >= threshold: reverse cumulative sums.
    pd = sig.flip(-1).cumsum(-1).flip(-1) / sig.sum(-1, keepdim=True).clamp(min=1)
    pf = bkg.flip(-1).cumsum(-1).flip(-1) / bkg.sum(-1, keepdim=True).clamp(min=1)
    sp = sp_index(pd, pf)
    valid = (sig.sum(-1) > 0) & (bkg.sum(-1) > 0)
    return torch.where(valid, sp.max(-1).values, torch.zeros(()))


@dataclass
class CrossValidation:
    """Trained stacked models and what cross-validation measured."""

    ensemble: RingerEnsemble
    #: Best validation SP per (model, bin); model m belongs to fold m // inits.
    best_sp: FloatArray
    #: Epochs run.
    epochs: int
    #: Fold of every pool row (-1 never), and its bin.
    folds: int
    inits: int


def cross_validate(
    rings: FloatArray,
    bins: npt.NDArray[np.int64],
    is_electron: npt.NDArray[np.bool_],
    fold: npt.NDArray[np.int64],
    binning: Binning,
    settings: TrainingSettings,
    seed: int,
) -> tuple[CrossValidation, torch.Tensor, npt.NDArray[np.int64]]:
    """Train folds x inits stacked ensembles. Returns the result, the binned layout's row index
    [bins, n_max] (-1 = padding) and the scores of every pool row per model [models, rows]."""
    n_bins = binning.n_bins
    models = settings.folds * settings.inits
    counts = np.bincount(bins, minlength=n_bins)
    n_max = max(int(counts.max()), 1)
    layout = np.full((n_bins, n_max), -1, dtype=np.int64)
    for b in range(n_bins):
        rows = np.flatnonzero(bins == b)
        layout[b, : rows.size] = rows
    valid = torch.from_numpy(layout >= 0)
    safe = np.where(layout >= 0, layout, 0)
    x = RingerEnsemble.normalise(torch.from_numpy(rings[safe.ravel()].astype(np.float32))).reshape(
        n_bins, n_max, -1
    )
    signal = torch.from_numpy(is_electron[safe]) & valid
    target = torch.where(signal, 1.0, -1.0)
    row_fold = torch.from_numpy(fold[safe])
    model_fold = torch.arange(models) // settings.inits
    in_val = valid.unsqueeze(0) & (row_fold.unsqueeze(0) == model_fold[:, None, None])
    in_train = valid.unsqueeze(0) & ~in_val
    # Classes balanced within each (model, bin): each class carries weight 1/2.
    n_sig = (in_train & signal).sum(-1, keepdim=True).clamp(min=1)
    n_bkg = (in_train & ~signal).sum(-1, keepdim=True).clamp(min=1)
    weight = torch.where(signal, 0.5 / n_sig, 0.5 / n_bkg) * in_train

    generator = torch.Generator().manual_seed(seed)
    ensemble = RingerEnsemble(binning, models=models, generator=generator)
    optimiser = torch.optim.Rprop(ensemble.parameters(), lr=0.01, step_sizes=(1e-6, 1.0))
    params = [ensemble.w1, ensemble.b1, ensemble.w2, ensemble.b2]
    best = [p.detach().clone() for p in params]
    best_score = torch.zeros(models, n_bins)
    since_improvement = 0
    epochs = 0
    progress = tqdm(
        range(settings.max_epochs), desc=f"ringer CV ({models} models x {n_bins} bins)", unit="epoch"
    )
    for epoch in progress:
        optimiser.zero_grad(set_to_none=True)
        output = ensemble.forward_binned(x)
        loss: torch.Tensor = (weight * (output - target) ** 2).sum()
        loss.backward()  # type: ignore[no-untyped-call]
        optimiser.step()
        epochs = epoch + 1
        if epochs % settings.eval_every:
            continue
        with torch.no_grad():
            sp = best_sp(ensemble.forward_binned(x), signal.expand_as(in_val), in_val)
            improved = sp > best_score + 1e-5
            best_score = torch.where(improved, sp, best_score)
            for keep, param in zip(best, params, strict=True):
                keep[improved] = param.detach()[improved]
        since_improvement = 0 if improved.any() else since_improvement + settings.eval_every
        progress.set_postfix(loss=f"{loss.item():.4f}", mean_sp=f"{best_score.mean().item():.4f}")
        if since_improvement >= settings.patience:
            break
    progress.close()
    with torch.no_grad():
        for keep, param in zip(best, params, strict=True):
            param.copy_(keep)
        binned = ensemble.forward_binned(x)
    scores = torch.zeros(models, len(bins))
    scores[:, torch.from_numpy(layout[layout >= 0])] = binned[:, valid]
    result = CrossValidation(
        ensemble=ensemble,
        best_sp=best_score.numpy(),
        epochs=epochs,
        folds=settings.folds,
        inits=settings.inits,
    )
    return result, scores, layout
