"""``python -m hepsonic_models.jets report NAME``: the validation report of a built tagger, from its ONNX file."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ..context import BuildContext
from . import TAGGERS, report


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and write the report; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m hepsonic_models.jets", description=__doc__)
    parser.add_argument("command", choices=["report"])
    parser.add_argument("name", choices=TAGGERS)
    parser.add_argument("--smoke", action="store_true", help="the smoke build's data and model")
    parser.add_argument("--seed", type=int, default=20240, help="master seed the model was built with")
    parser.add_argument("--workdir", type=Path, default=Path("data"), help="where the jets are cached")
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--reports", type=Path, default=Path("reports"))
    parser.add_argument("--jobs", type=int, default=max(1, len(os.sched_getaffinity(0))))
    args = parser.parse_args(argv)
    ctx = BuildContext(
        smoke=args.smoke,
        seed=args.seed,
        workdir=args.workdir,
        repository=args.repository,
        reports=args.reports,
        jobs=args.jobs,
    )
    try:
        path = report(args.name, ctx)
    except (FileNotFoundError, RuntimeError) as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 1
    sys.stdout.write(f"{args.name}: report written to {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
