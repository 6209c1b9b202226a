"""``hepsonic-build-models``: generate data, train, validate and export the served models.

Each model name is dispatched to its family module's ``build(name, ctx)`` (see :mod:`hepsonic_models.context`),
or with ``--report-only`` to its ``report(name, ctx)``, which redoes the validation report and model card from the
exported ONNX file(s) and the cached test data without retraining, or with ``--refit`` to its ``refit(name, ctx)``
(families that have one), which redoes only the cheap stages after the expensive training on top of the served
network. Family modules are imported only when one of their models is built, so a missing or broken family stops
only its own models, with a clear message.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

from .context import BuildContext
from .report import BuildRecordError
from .specs import SPECS

__all__ = ["FAMILIES", "BuildFailedError", "build_model", "main", "refit_model", "report_model"]

#: Which module of this package builds which served model.
FAMILIES: dict[str, str] = {
    "ringer": "hepsonic_models.ringer",
    "calo_gan": "hepsonic_models.calo_gan",
    "particlenet_lite": "hepsonic_models.jets",
    "part_small": "hepsonic_models.jets",
    "pv_finder": "hepsonic_models.pv",
}

BuildFunction = Callable[[str, BuildContext], None]
ReportFunction = Callable[[str, BuildContext], Path]


class BuildFailedError(RuntimeError):
    """A model could not be built (unknown name, or its family module is missing)."""


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")
    sys.stdout.flush()


def _family_function(name: str, function: str) -> Callable[[str, BuildContext], object]:
    if name not in FAMILIES:
        raise BuildFailedError(f"unknown model {name!r}; known models: {', '.join(FAMILIES)}")
    module_name = FAMILIES[name]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            raise BuildFailedError(
                f"model {name!r}: its builder module {module_name!r} does not exist (yet)"
            ) from exc
        raise
    found = getattr(module, function, None)
    if not callable(found):
        raise BuildFailedError(f"model {name!r}: {module_name!r} has no {function}(name, ctx) function")
    return cast(Callable[[str, BuildContext], object], found)


def build_model(name: str, ctx: BuildContext) -> float:
    """Build one model into ``ctx.repository`` and return the seconds it took."""
    build = cast(BuildFunction, _family_function(name, "build"))
    start = time.perf_counter()
    build(name, ctx)
    return time.perf_counter() - start


def report_model(name: str, ctx: BuildContext) -> float:
    """Redo one model's validation report and card from its exported ONNX file(s) and cached test data (no
    retraining; ``model.onnx`` and ``config.pbtxt`` are left untouched); return the seconds it took."""
    report = cast(ReportFunction, _family_function(name, "report"))
    start = time.perf_counter()
    report(name, ctx)
    return time.perf_counter() - start


def refit_model(name: str, ctx: BuildContext) -> float:
    """Redo the stages after one model's expensive training on top of its served network (calo_gan: the
    back-layer fit), export, validate; return the seconds it took."""
    refit = cast(BuildFunction, _family_function(name, "refit"))
    start = time.perf_counter()
    refit(name, ctx)
    return time.perf_counter() - start


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hepsonic-build-models",
        description="Generate data, train, validate and export the hepsonic models into a Triton repository.",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny data and a few steps (CI); never commit its output"
    )
    parser.add_argument(
        "--only", nargs="+", metavar="NAME", choices=list(FAMILIES), help="build only these models"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--refit",
        action="store_true",
        help=(
            "keep the trained network in the repository and redo only what follows its training (calo_gan: the "
            "back-layer model fitted by maximum likelihood), then export and validate"
        ),
    )
    mode.add_argument(
        "--report-only",
        action="store_true",
        help=(
            "no generation or training: redo each model's validation report and model card from its exported "
            "ONNX file(s), the build's record and the cached test data (regenerated when missing)"
        ),
    )
    parser.add_argument("--repository", type=Path, default=Path("model_repository"), help="Triton repository")
    parser.add_argument("--workdir", type=Path, default=Path("data"), help="scratch space for data sets")
    parser.add_argument("--reports", type=Path, default=Path("reports"), help="validation reports folder")
    parser.add_argument("--seed", type=int, default=20240, help="master seed of every generator and training")
    parser.add_argument(
        "--jobs",
        type=int,
        default=max(1, len(os.sched_getaffinity(0))),
        help="worker processes for event generation (default: usable cores)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``hepsonic-build-models``; returns the process exit code."""
    args = _parser().parse_args(argv)
    if args.jobs < 1:
        _parser().error("--jobs must be at least 1")
    names = list(dict.fromkeys(args.only)) if args.only else list(FAMILIES)
    ctx = BuildContext(
        smoke=args.smoke,
        seed=args.seed,
        workdir=args.workdir,
        repository=args.repository,
        reports=args.reports,
        jobs=args.jobs,
    )
    for folder in (ctx.workdir, ctx.repository, ctx.reports):
        folder.mkdir(parents=True, exist_ok=True)
    mode = ("smoke" if ctx.smoke else "full") + (
        ", report only" if args.report_only else ", refit" if args.refit else ""
    )
    _say(
        f"hepsonic-build-models ({mode}): {', '.join(names)} -> {ctx.repository} (seed {ctx.seed}, jobs {ctx.jobs})"
    )
    run = report_model if args.report_only else refit_model if args.refit else build_model
    # A report or a refit needs the build's outputs: a missing one is a plain message, not a traceback.
    expected: tuple[type[Exception], ...] = (
        (BuildFailedError, BuildRecordError) if args.report_only or args.refit else (BuildFailedError,)
    )

    timings: dict[str, float] = {}
    failures: dict[str, str] = {}
    for index, name in enumerate(names, start=1):
        versions = ", ".join(str(v) for v in SPECS[name].versions)
        _say(f"[{index}/{len(names)}] {name} (versions {versions}) ...")
        try:
            timings[name] = run(name, ctx)
        except expected as exc:
            failures[name] = str(exc)
            _say(f"[{index}/{len(names)}] {name}: FAILED: {exc}")
        except Exception as exc:  # noqa: BLE001 -- one family's bug must not stop the others' builds
            traceback.print_exc()
            failures[name] = f"{type(exc).__name__}: {exc}"
            _say(f"[{index}/{len(names)}] {name}: FAILED: {type(exc).__name__}: {exc}")
        else:
            _say(f"[{index}/{len(names)}] {name}: done in {timings[name]:.1f} s")

    _say("summary:")
    for name in names:
        status = f"{timings[name]:8.1f} s" if name in timings else f"FAILED ({failures[name]})"
        _say(f"  {name:<17} {status}")
    _say(f"  {'total':<17} {sum(timings.values()):8.1f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
