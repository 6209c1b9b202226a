"""Validation of the shower generator against held-out parametrised showers: metrics, plots, report."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from hepsonic_client.physics.showers import sample_latent

from ..calorimeter import CALOGAN_LAYERS, simulate_calogan_showers
from ..export import run_served
from ..report import markdown_table, save_figure, separation_power, subplots
from ..specs import SPECS
from ._features import FEATURE_NAMES, SPARSITY_THRESHOLD_GEV, shower_features
from ._model import CaloGanGenerator

__all__ = [
    "ValidationResult",
    "generate",
    "generate_served",
    "report_markdown",
    "selection_score",
    "validate_generator",
]

Showers = dict[str, npt.NDArray[np.float32]]
_KEYS = tuple(spec.key for spec in CALOGAN_LAYERS)
#: Showers per onnxruntime call: the served max_batch_size.
_BATCH = SPECS["calo_gan"].max_batch_size


@dataclass
class ValidationResult:
    """Measured metrics (the model card's numbers)."""

    separation: dict[str, dict[str, float]] = field(default_factory=dict)
    response: dict[str, dict[str, float]] = field(default_factory=dict)
    classifier_auc: float = float("nan")
    parametrisation_per_s: float = float("nan")
    generator_per_s: float = float("nan")
    figures: list[Path] = field(default_factory=list)

    @property
    def speed_up(self) -> float:
        return self.generator_per_s / self.parametrisation_per_s

    def targets(self) -> list[tuple[str, str, str, bool]]:
        """(target, threshold, measured, met) rows."""
        return [
            *self._shape_and_response_targets(),
            (
                "real-vs-generated classifier AUC",
                "<= 0.75",
                f"{self.classifier_auc:.3f}",
                self.classifier_auc <= 0.75,
            ),
        ]

    def other_targets_met(self) -> bool:
        """Whether every target but the classifier AUC is met."""
        return all(met for *_, met in self._shape_and_response_targets())

    def _shape_and_response_targets(self) -> list[tuple[str, str, str, bool]]:
        spectrum = self.separation["spectrum"]
        worst = max(spectrum, key=lambda k: spectrum[k])
        mean_sep = float(np.mean(list(spectrum.values())))
        mean_dev = max(abs(r["mean_rel_diff"]) for r in self.response.values())
        res_dev = max(abs(r["resolution_rel_diff"]) for r in self.response.values())
        return [
            (
                "separation power, every feature (spectrum)",
                "<= 0.05",
                f"{spectrum[worst]:.3f} ({worst})",
                spectrum[worst] <= 0.05,
            ),
            ("separation power, mean over features", "<= 0.02", f"{mean_sep:.3f}", mean_sep <= 0.02),
            (
                "E_tot/E mean vs reference (10/50/90 GeV, spectrum)",
                "within 2%",
                f"{100 * mean_dev:.2f}%",
                mean_dev <= 0.02,
            ),
            ("E_tot/E resolution vs reference", "within 10%", f"{100 * res_dev:.1f}%", res_dev <= 0.10),
        ]


def generate(
    generator: CaloGanGenerator, energy_gev: npt.ArrayLike, seed: int, *, stream: int = 0
) -> Showers:
    """Generated showers for the given energies, latents from the client's reproducible sampler."""
    energy = np.asarray(energy_gev, dtype=np.float32).reshape(-1, 1)
    z = sample_latent(len(energy), seed, stream=stream)
    with torch.no_grad():
        layers = generator(torch.from_numpy(z), torch.from_numpy(energy))
    return {**{key: layer.numpy() for key, layer in zip(_KEYS, layers, strict=True)}, "energy": energy}


def generate_served(
    onnx_path: Path, energy_gev: npt.ArrayLike, seed: int, *, stream: int = 0, threads: int = 1
) -> Showers:
    """Like :func:`generate`, but from the exported ``model.onnx`` in onnxruntime (what Triton serves), in
    batches of the served ``max_batch_size``."""
    energy = np.asarray(energy_gev, dtype=np.float32).reshape(-1, 1)
    z = sample_latent(len(energy), seed, stream=stream)
    outputs = run_served(onnx_path, SPECS["calo_gan"], {"z": z, "energy": energy}, threads=threads)
    return {**{key: outputs[key] for key in _KEYS}, "energy": energy}


def _classifier_auc(
    reference: npt.NDArray[np.float64], generated: npt.NDArray[np.float64], seed: int
) -> float:
    x = np.concatenate([reference, generated])
    y = np.concatenate([np.zeros(len(reference)), np.ones(len(generated))])
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], y[order]
    half = len(x) // 2
    model = HistGradientBoostingClassifier(max_iter=200, random_state=seed)
    model.fit(x[:half], y[:half])
    return float(roc_auc_score(y[half:], model.predict_proba(x[half:])[:, 1]))


def _response(showers: Showers) -> npt.NDArray[np.float64]:
    total = sum(np.asarray(showers[key], dtype=np.float64).sum(axis=(1, 2)) for key in _KEYS)
    return np.asarray(total / np.asarray(showers["energy"], dtype=np.float64).reshape(-1))


def _speed(onnx_path: Path, seed: int, n: int) -> tuple[float, float]:
    energies = np.random.default_rng(seed).uniform(1, 100, size=n)
    start = time.perf_counter()
    simulate_calogan_showers(energies, seed)
    parametrisation = n / (time.perf_counter() - start)
    # A session of its own (not run_served): the timing must exclude opening the session.
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    feeds = {"z": sample_latent(n, seed), "energy": energies.astype(np.float32).reshape(-1, 1)}
    session.run(None, {k: v[:8] for k, v in feeds.items()})  # warm-up
    start = time.perf_counter()
    for begin in range(0, n, _BATCH):
        session.run(None, {k: v[begin : begin + _BATCH] for k, v in feeds.items()})
    return parametrisation, n / (time.perf_counter() - start)


def validate_generator(
    onnx_path: Path, references: dict[str, Showers], reports: Path, seed: int, *, threads: int = 1
) -> ValidationResult:
    """Compare showers of the served ``onnx_path`` with reference showers per sample ("spectrum", "10 GeV",
    ...); plots into ``reports``."""
    generated = {
        label: generate_served(onnx_path, reference["energy"], seed, stream=stream, threads=threads)
        for stream, (label, reference) in enumerate(references.items(), start=1)
    }
    result, features = _compare(references, generated, seed)
    result.parametrisation_per_s, result.generator_per_s = _speed(
        onnx_path, seed, min(5000, len(references["spectrum"]["energy"]))
    )
    result.figures = _plots(features, references, generated, result, reports)
    return result


def selection_score(generator: CaloGanGenerator, references: dict[str, Showers], seed: int) -> float:
    """How good a training checkpoint is on validation showers (never the test ones); lower is better.

    The classifier AUC, plus 1 when any other target (shapes, response) is missed there: a checkpoint that
    keeps every other target always wins over one that trades them for a lower AUC.
    """
    generated = {
        label: generate(generator, reference["energy"], seed, stream=stream)
        for stream, (label, reference) in enumerate(references.items(), start=1)
    }
    result, _ = _compare(references, generated, seed)
    return result.classifier_auc + (0.0 if result.other_targets_met() else 1.0)


def _compare(
    references: dict[str, Showers], generated: dict[str, Showers], seed: int
) -> tuple[ValidationResult, dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]]:
    """Separation powers, responses and the classifier AUC of generated vs reference showers per sample, and
    the shower features they came from."""
    result = ValidationResult()
    features: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
    for label, reference in references.items():
        ref_f = shower_features(reference, reference["energy"])
        gen_f = shower_features(generated[label], generated[label]["energy"])
        features[label] = (ref_f, gen_f)
        result.separation[label] = {
            name: separation_power(ref_f[:, i], gen_f[:, i]) for i, name in enumerate(FEATURE_NAMES)
        }
        ref_r, gen_r = _response(reference), _response(generated[label])
        result.response[label] = {
            "reference_mean": float(ref_r.mean()),
            "generated_mean": float(gen_r.mean()),
            "mean_rel_diff": float(gen_r.mean() / ref_r.mean() - 1),
            "reference_resolution": float(ref_r.std() / ref_r.mean()),
            "generated_resolution": float(gen_r.std() / gen_r.mean()),
            "resolution_rel_diff": float((gen_r.std() / gen_r.mean()) / (ref_r.std() / ref_r.mean()) - 1),
        }
    ref_f, gen_f = features["spectrum"]
    log_e = np.log(np.asarray(references["spectrum"]["energy"], dtype=np.float64))
    result.classifier_auc = _classifier_auc(
        np.column_stack([ref_f, log_e]), np.column_stack([gen_f, log_e]), seed
    )
    return result, features


def _plots(
    features: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]],
    references: dict[str, Showers],
    generated: dict[str, Showers],
    result: ValidationResult,
    reports: Path,
) -> list[Path]:
    figures = []
    ref_f, gen_f = features["spectrum"]
    ncols = 4
    nrows = -(-len(FEATURE_NAMES) // ncols)
    fig, axes = subplots(nrows, ncols, size=(3.6, 2.8))
    for i, name in enumerate(FEATURE_NAMES):
        ax = axes[i // ncols][i % ncols]
        low, high = np.quantile(ref_f[:, i], [0.005, 0.995])
        if not high > low:
            low, high = low - 0.5, high + 0.5
        edges = np.linspace(low, high, 41)
        ax.hist(
            np.clip(ref_f[:, i], low, high), edges, histtype="stepfilled", alpha=0.4, label="GFlash param."
        )
        ax.hist(np.clip(gen_f[:, i], low, high), edges, histtype="step", lw=1.5, label="calo_gan")
        ax.set_title(f"{name}  S={result.separation['spectrum'][name]:.3f}", fontsize=8)
        ax.tick_params(labelsize=7)
    for j in range(len(FEATURE_NAMES), nrows * ncols):
        axes[j // ncols][j % ncols].axis("off")
    axes[0][0].legend(fontsize=7)
    figures.append(save_figure(fig, reports / "shower_shapes.png"))

    labels = [label for label in references if label != "spectrum"]
    fig, axes = subplots(1, max(len(labels), 1), size=(4.0, 3.2))
    for ax, label in zip(axes[0], labels, strict=False):
        ref_r, gen_r = _response(references[label]), _response(generated[label])
        low, high = (float(q) for q in np.quantile(ref_r, [0.001, 0.999]))
        edges = np.linspace(low, high, 41)
        ax.hist(ref_r, edges, histtype="stepfilled", alpha=0.4, label="GFlash param.")
        ax.hist(gen_r, edges, histtype="step", lw=1.5, label="calo_gan")
        ax.set_xlabel("E_tot / E")
        ax.set_title(label)
    axes[0][0].legend(fontsize=7)
    figures.append(save_figure(fig, reports / "response.png"))

    label = "50 GeV" if "50 GeV" in references else "spectrum"
    fig, axes = subplots(2, 3, size=(3.6, 3.0))
    for row, (title, showers) in enumerate(
        (("GFlash param.", references[label]), ("calo_gan", generated[label]))
    ):
        for col, key in enumerate(_KEYS):
            image = np.asarray(showers[key], dtype=np.float64).mean(axis=0)
            shown = axes[row][col].imshow(np.log10(image + 1e-5), aspect="auto", cmap="viridis")
            axes[row][col].set_title(f"{title} {key} ({label}), log10 GeV", fontsize=8)
            fig.colorbar(shown, ax=axes[row][col])
    figures.append(save_figure(fig, reports / "mean_showers.png"))

    fig, axes = subplots(1, 3, size=(4.0, 3.2))
    energy = np.asarray(references["spectrum"]["energy"]).reshape(-1)
    bins = np.linspace(1, 100, 12)
    centres = 0.5 * (bins[1:] + bins[:-1])
    which = np.digitize(energy, bins) - 1
    for i in range(3):
        for values, name, style in ((ref_f, "GFlash param.", "o-"), (gen_f, "calo_gan", "s--")):
            means = [
                values[which == b, 3 + i].mean() if (which == b).any() else np.nan
                for b in range(len(centres))
            ]
            axes[0][i].plot(centres, means, style, label=name)
        axes[0][i].set_xlabel("E [GeV]")
        axes[0][i].set_ylabel(f"<E_{i}/E_tot>")
    axes[0][0].legend(fontsize=7)
    figures.append(save_figure(fig, reports / "layer_fractions_vs_energy.png"))
    figures.append(_correlation_figure(features, reports))
    figures.append(_back_layer_hits_figure(references["spectrum"], generated["spectrum"], reports))
    return figures


def _back_layer_hits_figure(reference: Showers, generated: Showers, reports: Path) -> Path:
    """How often each back-layer cell is hit (above the occupancy threshold), reference vs generated: a shower's
    tail leaves only a few spots there, and a generator that misplaces them shows dead or hot cells here."""
    maps = [
        (np.asarray(showers["layer_2"]) > SPARSITY_THRESHOLD_GEV).mean(axis=0)
        for showers in (reference, generated)
    ]
    # Logarithmic: the outer cells, hit in well under 1% of showers, are where a generator goes dead or hot.
    floor = 1e-4
    ratio = np.log2(np.maximum(maps[1], floor) / np.maximum(maps[0], floor))
    fig, axes = subplots(1, 3, size=(3.0, 4.2))
    panels = (
        (
            "GFlash param.: log10 P(hit)",
            np.log10(np.maximum(maps[0], floor)),
            "viridis",
            np.log10(floor),
            0.0,
        ),
        ("calo_gan: log10 P(hit)", np.log10(np.maximum(maps[1], floor)), "viridis", np.log10(floor), 0.0),
        ("log2(calo_gan / GFlash)", np.clip(ratio, -2.0, 2.0), "coolwarm", -2.0, 2.0),
    )
    for ax, (title, image, cmap, low, high) in zip(axes[0], panels, strict=True):
        shown = ax.imshow(image, vmin=low, vmax=high, cmap=cmap)
        ax.set_title(f"{title}\nlayer_2 cell > 1 MeV, per shower", fontsize=8)
        fig.colorbar(shown, ax=ax, fraction=0.08)
    return save_figure(fig, reports / "back_layer_hits.png")


def _correlation_figure(
    features: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]], reports: Path
) -> Path:
    """Correlations between the observables at one energy, reference vs generated: where a classifier finds
    the showers apart although every single distribution agrees."""
    label = "50 GeV" if "50 GeV" in features else "spectrum"
    ref_f, gen_f = features[label]
    varying = [i for i in range(len(FEATURE_NAMES)) if ref_f[:, i].std() > 0 and gen_f[:, i].std() > 0]
    names = [FEATURE_NAMES[i].split(" [")[0] for i in varying]
    matrices = [np.corrcoef(values[:, varying].T) for values in (ref_f, gen_f)]
    # The difference on a finer scale: its entries are tenths, the correlations themselves up to 1.
    panels = (
        ("GFlash param.", matrices[0], 1.0),
        ("calo_gan", matrices[1], 1.0),
        ("calo_gan - GFlash", matrices[1] - matrices[0], 0.4),
    )
    fig, axes = subplots(1, 3, size=(5.2, 4.6))
    for ax, (title, matrix, scale) in zip(axes[0], panels, strict=True):
        shown = ax.imshow(matrix, vmin=-scale, vmax=scale, cmap="coolwarm")
        ax.set_title(f"{title}: correlations ({label})", fontsize=8)
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        fig.colorbar(shown, ax=ax, fraction=0.046)
    return save_figure(fig, reports / "feature_correlations.png")


def report_markdown(result: ValidationResult, figures_prefix: str) -> str:
    """Tables and figure links of the validation (shared by the report and the model card)."""
    rows = [[t, thr, got, "yes" if ok else "**NO**"] for t, thr, got, ok in result.targets()]
    parts = ["### Targets", markdown_table(["target", "threshold", "measured", "met"], rows)]
    labels = list(result.separation)
    sep_rows = [
        [name, *(f"{result.separation[label][name]:.3f}" for label in labels)] for name in FEATURE_NAMES
    ]
    sep_rows.append(
        ["**mean**", *(f"{np.mean(list(result.separation[label].values())):.3f}" for label in labels)]
    )
    parts += ["### Separation power per feature", markdown_table(["feature", *labels], sep_rows)]
    resp_rows = [
        [
            label,
            f"{r['reference_mean']:.4f}",
            f"{r['generated_mean']:.4f}",
            f"{100 * r['mean_rel_diff']:+.2f}%",
            f"{100 * r['reference_resolution']:.2f}%",
            f"{100 * r['generated_resolution']:.2f}%",
            f"{100 * r['resolution_rel_diff']:+.1f}%",
        ]
        for label, r in result.response.items()
    ]
    parts += [
        "### Response E_tot/E",
        markdown_table(
            ["sample", "ref. mean", "gen. mean", "Δ mean", "ref. sigma/μ", "gen. sigma/μ", "Δ resolution"],
            resp_rows,
        ),
        "### Speed (one CPU core)",
        markdown_table(
            ["GFlash parametrisation", f"calo_gan (onnxruntime, batch {_BATCH})", "speed-up"],
            [
                [
                    f"{result.parametrisation_per_s:,.0f} showers/s",
                    f"{result.generator_per_s:,.0f} showers/s",
                    f"{result.speed_up:.1f}x",
                ]
            ],
        ),
        "### Figures",
        *(f"![{path.stem}]({figures_prefix}{path.name})" for path in result.figures),
    ]
    return "\n\n".join(parts)
