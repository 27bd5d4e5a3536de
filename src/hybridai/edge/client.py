"""The Python SDK for an edge agent: write records, run inference, read its status.

    from hybridai.edge import Client
    with Client("http://127.0.0.1:8500", key=SITE_KEY) as edge:
        edge.write("telemetry", [{"ts": 1.7e9, "machine": "m01", "temperature": 61.5}])
        outputs = edge.infer("pm", {"input": features})  # numpy arrays in, numpy arrays out

Records travel as MessagePack (smaller and faster than JSON); a ``write`` that returns means
the edge stored them durably. Every refusal raises ``EdgeError`` carrying the edge's stable
error ``code`` (``schema_mismatch``, ``invalid_input``, ``model_not_found``...) and its message.
``key`` is a site key (``hybridai site key create SITE --role ingest --role infer``): an edge
admits LAN clients by it unless it runs with ``HYBRIDAI_EDGE_LAN_AUTH=open``.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeAlias

import httpx
import msgpack
import numpy as np

from hybridai.protocol.tensors import numpy_dtype, v2_datatype

MSGPACK = "application/msgpack"
JSON = "application/json"


class EdgeError(Exception):
    """The edge refused a call, or could not be reached (``code`` ``unreachable``)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if code else message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class WriteResult:
    stream: str
    accepted: int
    duplicates: int


Inputs: TypeAlias = "dict[str, np.ndarray[Any, Any]] | np.ndarray[Any, Any]"


class Client:
    """One edge agent's API over HTTP (httpx); use as a context manager or call ``close``."""

    def __init__(
        self,
        url: str,
        timeout: float = 30.0,
        format: str = "msgpack",
        verify: Any = True,
        headers: dict[str, str] | None = None,
        http: httpx.Client | None = None,
        key: str | None = None,
    ) -> None:
        """``http`` replaces the underlying client (an in-process ``TestClient``, a proxy)."""
        if format not in ("msgpack", "json"):
            raise ValueError("format must be 'msgpack' or 'json'")
        self.url = url.rstrip("/")
        self.format = format
        headers = {**(headers or {}), **({"Authorization": f"Bearer {key}"} if key else {})}
        self._http = http or httpx.Client(
            base_url=self.url, timeout=timeout, verify=verify, headers=headers
        )
        if http is not None and key:
            self._http.headers["Authorization"] = f"Bearer {key}"

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise EdgeError(0, "unreachable", f"edge {self.url} did not answer: {exc}") from exc
        if response.status_code >= 400:
            try:
                body = response.json()
                code, message = str(body.get("code", "")), str(body.get("error", body))
            except ValueError:
                code, message = "", response.text[:300]
            raise EdgeError(response.status_code, code or f"http_{response.status_code}", message)
        return response.json()

    def write(self, stream: str, records: list[dict[str, Any]]) -> WriteResult:
        """Store ``records`` (flat dicts, each with ``ts`` in epoch seconds) in ``stream``.

        All or nothing: on return every record is durable at the edge (or was a duplicate).
        """
        path = f"/api/v1/streams/{stream}/records"
        if self.format == "msgpack":
            content = msgpack.packb({"records": records}, use_bin_type=True)
            body = self._send("POST", path, content=content, headers={"Content-Type": MSGPACK})
        else:
            body = self._send("POST", path, json={"records": records})
        return WriteResult(body["stream"], int(body["accepted"]), int(body["duplicates"]))

    def infer(
        self, model: str, inputs: Inputs, parameters: dict[str, Any] | None = None
    ) -> dict[str, np.ndarray[Any, Any]]:
        """Run ``model`` (placed at the edge, a site peer or the cloud by the edge's router).

        ``inputs`` maps input names to arrays; a lone array is sent as input ``input``.
        Returns the outputs by name as numpy arrays of their v2 datatype and shape.
        """
        named = inputs if isinstance(inputs, dict) else {"input": inputs}
        tensors = []
        for name, value in named.items():
            array = np.asarray(value)
            tensors.append(
                {
                    "name": name,
                    "shape": list(array.shape),
                    "datatype": v2_datatype(array.dtype),
                    "data": array.reshape(-1).tolist(),
                }
            )
        request: dict[str, Any] = {"inputs": tensors}
        if parameters:
            request["parameters"] = parameters
        body = self._send("POST", f"/v2/models/{model}/infer", json=request)
        return {
            out["name"]: np.asarray(out["data"], dtype=numpy_dtype(out["datatype"])).reshape(
                out["shape"]
            )
            for out in body["outputs"]
        }

    def status(self) -> dict[str, Any]:
        """The edge's status report: models, store counters and backlog, reachability."""
        report: dict[str, Any] = self._send("GET", "/api/v1/status")
        return report
