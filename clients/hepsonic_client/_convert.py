"""The one place where foreign errors (grpc, tritonclient, sockets) become hepsonic_client errors."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping

from ._exceptions import (
    ConnectError,
    HepsonicError,
    InferenceError,
    ModelNotFoundError,
    OverloadedError,
    RequestTimeoutError,
    TransportError,
    UnavailableError,
)

__all__ = ["HttpStatusError", "converted_errors"]


class HttpStatusError(Exception):
    """Internal: a non-200 HTTP answer, raised by the HTTP transport and converted below."""

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str]) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers

    def message(self) -> str:
        try:
            return str(json.loads(self.body)["error"])
        except (ValueError, KeyError, TypeError):
            return self.body.decode(errors="replace")[:500] or f"HTTP {self.status}"


def _is_unknown_model(message: str) -> bool:
    lowered = message.lower()
    return "unknown model" in lowered or "is not found" in lowered or "no available versions" in lowered


def _retry_after_seconds(value: str | None, *, milliseconds: bool) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value) / (1000.0 if milliseconds else 1.0)
    except ValueError:
        return None
    return max(seconds, 0.0)


def _from_grpc(exc: BaseException, server: str, model: str | None) -> HepsonicError:
    import grpc  # noqa: PLC0415

    assert isinstance(exc, grpc.RpcError)
    code = exc.code() if isinstance(exc, grpc.Call) else None
    details = (exc.details() if isinstance(exc, grpc.Call) else None) or str(exc)
    where = f"{server}" + (f" (model {model!r})" if model else "")
    text = f"{where}: {details}"
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        trailing = dict(exc.trailing_metadata() or ()) if isinstance(exc, grpc.Call) else {}
        hint = trailing.get("retry-after-ms")
        retry_after = _retry_after_seconds(hint if isinstance(hint, str) else None, milliseconds=True)
        return OverloadedError(text, retry_after_s=retry_after, server=server, model=model)
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return RequestTimeoutError(text, server=server, model=model)
    if code == grpc.StatusCode.NOT_FOUND or _is_unknown_model(details):
        return ModelNotFoundError(text, server=server, model=model)
    if code == grpc.StatusCode.UNAVAILABLE:
        lowered = details.lower()
        if "connect" in lowered or "socket closed" in lowered or "unreachable" in lowered:
            return ConnectError(text, server=server, model=model)
        return UnavailableError(text, server=server, model=model)
    if code == grpc.StatusCode.CANCELLED:
        return UnavailableError(text, server=server, model=model)
    return InferenceError(text, server=server, model=model)


def _from_http(exc: HttpStatusError, server: str, model: str | None) -> HepsonicError:
    message = exc.message()
    where = f"{server}" + (f" (model {model!r})" if model else "")
    text = f"{where}: HTTP {exc.status}: {message}"
    if exc.status == 429:
        retry_after = _retry_after_seconds(exc.headers.get("retry-after"), milliseconds=False)
        return OverloadedError(text, retry_after_s=retry_after, server=server, model=model)
    if exc.status == 404 or _is_unknown_model(message):
        return ModelNotFoundError(text, server=server, model=model)
    if exc.status in (502, 503):
        return UnavailableError(text, server=server, model=model)
    if exc.status == 504:
        return RequestTimeoutError(text, server=server, model=model)
    return InferenceError(text, server=server, model=model)


@contextlib.contextmanager
def converted_errors(*, server: str, model: str | None = None) -> Iterator[None]:
    """Re-raise anything foreign raised inside the block as a :class:`HepsonicError`."""
    try:
        yield
    except HepsonicError:
        raise
    except HttpStatusError as exc:
        raise _from_http(exc, server, model) from exc
    except TimeoutError as exc:  # socket.timeout is TimeoutError
        raise RequestTimeoutError(f"{server}: timed out ({exc})", server=server, model=model) from exc
    except (ConnectionError, OSError) as exc:
        raise ConnectError(f"{server}: cannot connect ({exc})", server=server, model=model) from exc
    except Exception as exc:
        import grpc  # noqa: PLC0415
        from tritonclient.utils import InferenceServerException  # noqa: PLC0415

        if isinstance(exc, grpc.RpcError):
            raise _from_grpc(exc, server, model) from exc
        if isinstance(exc, InferenceServerException):
            status = exc.status() or ""
            message = exc.message() or str(exc)
            if "Timeout" in type(exc.__cause__).__name__ or "timed out" in message.lower():
                raise RequestTimeoutError(f"{server}: {message}", server=server, model=model) from exc
            if "connect" in message.lower() or status == "":
                raise ConnectError(f"{server}: {message}", server=server, model=model) from exc
            raise InferenceError(f"{server}: {message} ({status})", server=server, model=model) from exc
        if type(exc).__module__.startswith(("gevent", "geventhttpclient")):
            raise TransportError(f"{server}: {exc!r}", server=server, model=model) from exc
        raise
