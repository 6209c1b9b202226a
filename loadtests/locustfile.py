"""hepsonic load test: every user of :mod:`loadtests.locust_users` (config: loadtests/locust.conf).

    locust --config loadtests/locust.conf --host http://127.0.0.1:8080 --grpc-host 127.0.0.1:8081
    locust --config loadtests/locust.conf -f loadtests/locustfile.py,loadtests/shapes.py --load-profile spike

``python -m loadtests.loadtest`` wraps this with a results folder and a summary.
"""

import sys
from pathlib import Path

# locust puts only this folder on sys.path; the users live in the `loadtests` package next to the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtests.locust_users import (
    CaloGanUser,
    JetTaggerGrpcUser,
    JetTaggerUser,
    ParTUser,
    PvFinderUser,
    RecoJobGrpcUser,
    RecoJobUser,
    RingerUser,
)

__all__ = [
    "CaloGanUser",
    "JetTaggerGrpcUser",
    "JetTaggerUser",
    "ParTUser",
    "PvFinderUser",
    "RecoJobGrpcUser",
    "RecoJobUser",
    "RingerUser",
]
