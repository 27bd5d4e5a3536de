"""The lean ingest route answers exactly as the framework's route does, for every outcome."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hybridai.edge.agent import EdgeAgent
from hybridai.edge.app import create_app
from hybridai.edge.ingest.formats import encode_arrow
from hybridai.edge.ingest.schemas import StreamSchema
from hybridai.edge.settings import EdgeSettings

PATH = "/api/v1/streams/{}/records"
JSON = "application/json"
ARROW = "application/vnd.apache.arrow.stream"
GOOD = [{"ts": 1_700_000_000.0 + i, "machine_id": f"m{i}", "vibration": 1.5 * i} for i in range(5)]


def _agent(path: Path, lan_auth: str = "open") -> EdgeAgent:
    settings = EdgeSettings(
        data_dir=path,
        device_id="gw-1",
        cloud_url="https://127.0.0.1:9",
        lan_auth=lan_auth,
        max_ingest_records=100,
        max_ingest_bytes=64 * 1024,
        stream_schemas={
            "strict": StreamSchema(fields={"machine_id": "string"}, required=["machine_id"])
        },
    )
    return EdgeAgent(settings)


def _framework_only(app: FastAPI) -> ASGIApp:
    """The app as FastAPI alone serves it: routing, dependencies, the mounted route."""

    async def asgi(scope: Scope, receive: Receive, send: Send) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    return asgi


@pytest.fixture
def clients(tmp_path: Path) -> Iterator[Callable[[], tuple[TestClient, TestClient]]]:
    """Fresh (lean, framework) client pairs, each on its own agent and store."""
    agents: list[EdgeAgent] = []

    def make(lan_auth: str = "open") -> tuple[TestClient, TestClient]:
        lean_agent = _agent(tmp_path / f"lean-{len(agents)}", lan_auth)
        framework_agent = _agent(tmp_path / f"framework-{len(agents)}", lan_auth)
        agents.extend([lean_agent, framework_agent])
        return (
            TestClient(create_app(lean_agent)),
            TestClient(_framework_only(create_app(framework_agent))),
        )

    yield make
    for agent in agents:
        agent.store.close()


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


CASES: dict[str, tuple[str, str | None, bytes]] = {
    "stored": ("plant", JSON, _json({"records": GOOD})),
    "stored as arrow": ("plant", ARROW, encode_arrow(GOOD)),
    "stored as msgpack": ("plant", "application/msgpack", msgpack.packb({"records": GOOD})),
    "no content type": ("plant", None, _json({"records": GOOD})),
    "empty batch": ("plant", JSON, b'{"records": []}'),
    "name off the allow-list": ("Plant-1", JSON, _json({"records": GOOD})),
    "name off the route's rule": ("_plant", JSON, _json({"records": GOOD})),
    "unknown media type": ("plant", "text/csv", b"ts,v\n1,2\n"),
    "not json": ("plant", JSON, b'{"records": [{"ts": 1'),
    "not utf-8": ("plant", JSON, b'{"records": [{"ts": 1, "v": "\xff"}]}'),
    "no envelope": ("plant", JSON, _json(GOOD)),
    "records not a list": ("plant", JSON, _json({"records": 5})),
    "a record not an object": ("plant", JSON, _json({"records": [GOOD[0], 7]})),
    "nested too deep": ("plant", JSON, b"[" * 5000 + b"]" * 5000),
    "an integer beyond 64 bits": (
        "plant",
        JSON,
        b'{"records": [{"ts": 1, "v": 1' + b"0" * 30 + b"}]}",
    ),
    "NaN": ("plant", JSON, b'{"records": [{"ts": 1, "v": NaN}]}'),
    "a record without ts": ("plant", JSON, _json({"records": [{"v": 1}]})),
    "a nested field": ("plant", JSON, _json({"records": [{"ts": 1, "v": {"a": 1}}]})),
    "a reserved field": ("plant", JSON, _json({"records": [{"ts": 1, "device_id": "x"}]})),
    "schema mismatch": ("strict", JSON, _json({"records": [{"ts": 1, "v": 1}]})),
    "more records than allowed": (
        "plant",
        JSON,
        _json({"records": [{"ts": i} for i in range(101)]}),
    ),
    "bad msgpack": ("plant", "application/msgpack", b"\xc1\xc1"),
    "bad arrow": ("plant", ARROW, b"not arrow at all"),
    "body over the limit": ("plant", JSON, b" " * (64 * 1024 + 1)),
}


@pytest.mark.parametrize("case", CASES)
def test_the_lean_route_answers_as_the_framework_does(
    clients: Callable[..., tuple[TestClient, TestClient]], case: str
) -> None:
    stream, content_type, body = CASES[case]
    headers = {} if content_type is None else {"Content-Type": content_type}
    answers = [
        client.post(PATH.format(stream), content=body, headers=headers) for client in clients()
    ]
    lean, framework = ((a.status_code, a.json()) for a in answers)
    assert lean == framework
    assert lean[0] == 200 or (400 <= lean[0] < 500 and lean[1]["code"] != "internal"), lean


def test_without_the_sites_key_the_lean_route_refuses_before_reading(
    clients: Callable[..., tuple[TestClient, TestClient]],
) -> None:
    lean, framework = clients("keys")
    answers = [
        client.post(PATH.format("plant"), content=_json({"records": GOOD}))
        for client in (lean, framework)
    ]
    assert answers[0].status_code == 401
    assert (answers[0].status_code, answers[0].json()) == (
        answers[1].status_code,
        answers[1].json(),
    )


def test_ingest_requests_take_the_lean_route(tmp_path: Path) -> None:
    agent = _agent(tmp_path / "edge")
    app = create_app(agent)
    app.router.routes = [  # without the framework's ingest route, only the lean one can answer
        r for r in app.router.routes if not (isinstance(r, Route) and "streams" in r.path)
    ]
    client = TestClient(app)
    response = client.post(PATH.format("plant"), content=_json({"records": GOOD}))
    assert response.json() == {"stream": "plant", "accepted": 5, "duplicates": 0}
    assert client.get(PATH.format("plant")).status_code in (404, 405)  # not a POST: framework
    agent.store.close()
