"""Staged load shapes: add this file to ``-f`` and pick ``--load-profile`` (ramp, spike, soak).

    locust --config loadtests/locust.conf -f loadtests/locustfile.py,loadtests/shapes.py --load-profile spike

``--stage-scale`` stretches or shrinks every stage (0.1 turns the 3-minute ramp into 18 s).
"""

from __future__ import annotations

from typing import Any

from locust import LoadTestShape

__all__ = ["PROFILES", "StagedShape"]

#: Per profile: (stage duration in s, users at the end of the stage, spawn rate per s).
PROFILES: dict[str, tuple[tuple[float, int, float], ...]] = {
    # Find the knee: 1 -> 64 users in doubling steps.
    "ramp": ((20, 1, 1), (20, 4, 4), (20, 8, 8), (20, 16, 16), (30, 32, 32), (30, 64, 64), (40, 64, 64)),
    # A job wave arrives at once, then leaves: does admission control shed load and recover?
    "spike": ((30, 8, 8), (30, 128, 128), (30, 8, 128), (30, 8, 8)),
    # Steady production-like load, long enough to see drifts (memory, queue growth).
    "soak": ((600, 24, 4),),
}


class StagedShape(LoadTestShape):
    """Runs the stages of ``--load-profile`` one after the other, then stops."""

    def tick(self) -> tuple[int, float] | None:
        """(users, spawn rate) for the current stage, or None when the profile is over."""
        options: Any = self.runner.environment.parsed_options if self.runner else None
        profile = PROFILES[getattr(options, "load_profile", "ramp")]
        scale = float(getattr(options, "stage_scale", 1.0))
        elapsed = float(self.get_run_time())  # type: ignore[no-untyped-call]
        end = 0.0
        for duration, users, rate in profile:
            end += duration * scale
            if elapsed < end:
                return users, rate
        return None
