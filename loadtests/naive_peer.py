"""BASELINE ONLY: the "naive peer", a plain FastAPI + onnxruntime server with one ``session.run`` per request.

This is what a physicist would write instead of deploying Triton: no batching across requests, no queue
policy, no metrics. It exists so the benchmark harness can show what hepsonic buys; it is not part of the
product and must never be deployed.

It answers ``POST /v2/models/{model}/infer`` in the KServe v2 HTTP form that ``tritonclient.http`` sends
(binary tensor extension, or plain JSON), so the same load generator drives it, and replies in JSON.

    python -m loadtests.naive_peer --model-file model_repository/particlenet_lite/1/model.onnx \\
        --model-name particlenet_lite --port 8500 --threads 2
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import uvicorn
from fastapi import FastAPI, HTTPException, Request

__all__ = ["create_app", "main"]

_DTYPES = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


def _decode_inputs(body: bytes, header_length: int | None) -> dict[str, np.ndarray[Any, Any]]:
    """Input tensors of a KServe v2 request (JSON, or JSON header + binary tensors)."""
    header = json.loads(body[:header_length] if header_length else body)
    binary = memoryview(body)[header_length:] if header_length else memoryview(b"")
    offset = 0
    tensors = {}
    for item in header.get("inputs", []):
        dtype = _DTYPES.get(item["datatype"])
        if dtype is None:
            raise HTTPException(400, f"input {item['name']!r}: datatype {item['datatype']} not supported")
        size = item.get("parameters", {}).get("binary_data_size")
        if size is not None:
            array = np.frombuffer(binary[offset : offset + size], dtype=dtype)
            offset += size
        else:
            array = np.asarray(item["data"], dtype=dtype)
        tensors[item["name"]] = array.reshape(item["shape"])
    return tensors


def create_app(model_name: str, model_file: Path, *, threads: int, device: str = "cpu") -> FastAPI:
    """The naive server for one ONNX file (one session; each request runs it once, on its own)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    providers: list[Any] = ["CPUExecutionProvider"]
    if device == "gpu" and "CUDAExecutionProvider" in ort.get_available_providers():
        providers.insert(0, "CUDAExecutionProvider")
    session = ort.InferenceSession(str(model_file), options, providers=providers)
    output_names = [output.name for output in session.get_outputs()]
    app = FastAPI(title="naive peer (baseline, not hepsonic)")

    @app.get("/v2/health/ready")
    def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v2/models/{model}/infer")
    async def infer(model: str, request: Request) -> dict[str, Any]:
        if model != model_name:
            raise HTTPException(404, f"model {model!r} is not served here (only {model_name!r})")
        body = await request.body()
        header_length = request.headers.get("inference-header-content-length")
        feed = _decode_inputs(body, int(header_length) if header_length else None)
        # The naive part: one session.run per request, straight on the event loop, as a quick script would.
        results = session.run(output_names, feed)
        return {
            "model_name": model_name,
            "model_version": "1",
            "outputs": [
                {"name": name, "datatype": "FP32", "shape": list(value.shape), "data": value.ravel().tolist()}
                for name, value in zip(output_names, results, strict=True)
            ],
        }

    return app


def main(argv: list[str] | None = None) -> int:
    """Serve one model on loopback until interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.naive_peer", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--model-file", type=Path, required=True)
    parser.add_argument("--model-name", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8500)
    parser.add_argument("--threads", type=int, default=1, help="onnxruntime intra-op threads")
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    args = parser.parse_args(argv)
    if not args.model_file.is_file():
        print(f"naive peer: model file {args.model_file} does not exist", file=sys.stderr)
        return 2
    app = create_app(args.model_name, args.model_file, threads=args.threads, device=args.device)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
