"""The cut-based reference: a T2Calo-like selection (R_η in EM2, E_ratio in EM1, R_had) tuned per bin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["T2CaloCuts", "tune_t2calo"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class T2CaloCuts:
    """Per-bin cuts: accept if R_η ≥ r_eta_min, E_ratio ≥ e_ratio_min and R_had ≤ r_had_max."""

    r_eta_min: FloatArray
    e_ratio_min: FloatArray
    r_had_max: FloatArray

    def accept(
        self, bins: npt.NDArray[np.int64], r_eta: FloatArray, e_ratio: FloatArray, r_had: FloatArray
    ) -> npt.NDArray[np.bool_]:
        """Whether each candidate passes the cuts of its bin."""
        return np.asarray(
            (r_eta >= self.r_eta_min[bins])
            & (e_ratio >= self.e_ratio_min[bins])
            & (r_had <= self.r_had_max[bins])
        )


def tune_t2calo(
    bins: npt.NDArray[np.int64],
    is_electron: npt.NDArray[np.bool_],
    r_eta: FloatArray,
    e_ratio: FloatArray,
    r_had: FloatArray,
    n_bins: int,
    target_pd: float = 0.978,
) -> T2CaloCuts:
    """Cuts per bin at a common per-variable electron quantile q, with q chosen (bisection) so that the bin's
    electron efficiency is ``target_pd``: the same P_D everywhere, as the T2Calo tunings aim for."""
    cuts = np.zeros((3, n_bins))
    for b in range(n_bins):
        mine = (bins == b) & is_electron
        if mine.sum() < 10:
            cuts[:, b] = (-np.inf, -np.inf, np.inf)
            continue
        values = r_eta[mine], e_ratio[mine], r_had[mine]

        def efficiency(
            q: float, values: tuple[FloatArray, FloatArray, FloatArray] = values
        ) -> tuple[float, tuple[float, float, float]]:
            c = (
                float(np.quantile(values[0], q)),
                float(np.quantile(values[1], q)),
                float(np.quantile(values[2], 1 - q)),
            )
            passed = (values[0] >= c[0]) & (values[1] >= c[1]) & (values[2] <= c[2])
            return float(passed.mean()), c

        low, high = 0.0, 0.2
        for _ in range(30):
            middle = 0.5 * (low + high)
            if efficiency(middle)[0] >= target_pd:
                low = middle
            else:
                high = middle
        cuts[:, b] = efficiency(low)[1]
    return T2CaloCuts(r_eta_min=cuts[0], e_ratio_min=cuts[1], r_had_max=cuts[2])
