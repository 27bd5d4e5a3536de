"""Lake queries are bounded: memory, time, rows, and only the streams one holds a grant on.

Before: a viewer could pin the cloud at 2 GB RSS or keep it busy for minutes after the client
left, and every role read every stream. The in-process tests pin each limit down; the
process tests show a real cloud refusing, staying small and stopping work nobody waits for.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pyarrow as pa
import pytest

from _fleet import cloud_client, error_of, local_fleet
from hybridai.cloud.data.lake import Lake, LakeQueryError
from hybridai.cloud.data.lake_query import (
    QueryHandle,
    QueryLimitExceeded,
    QueryLimits,
    StreamNotGranted,
    check_readable,
    run_query,
)

LONG_SCAN = "SELECT count(*) AS n FROM range(1000000000000) WHERE range % 7 = 3"
BIG_LIST = "SELECT list(range) AS l FROM range(400000000)"
PASSWORD = "correct horse battery staple"


def _rows(device: str, n: int, **extra: list[object]) -> pa.Table:
    return pa.table(
        {
            "record_id": [f"{device}:{i}" for i in range(n)],
            "device_id": [device] * n,
            "site": ["plant-a"] * n,
            "ts": [1_700_000_000.0 + i for i in range(n)],
            "date": ["2023-11-14"] * n,
            **extra,
        }
    )


def _seed(lake: Lake) -> None:
    lake.commit_batch(
        "telemetry", "gw-1", 1, _rows("gw-1", 50, value=[float(i) for i in range(50)])
    )
    lake.commit_batch("payroll", "gw-1", 1, _rows("gw-1", 5, salary=[1000.0 + i for i in range(5)]))


@pytest.fixture
def lake(tmp_path: Path) -> Lake:
    opened = Lake(str(tmp_path / "lake"))
    _seed(opened)
    return opened


def test_a_query_past_its_memory_limit_is_refused(lake: Lake) -> None:
    with pytest.raises(QueryLimitExceeded, match="64 MB memory limit"):
        run_query(lake, BIG_LIST, limits=QueryLimits(memory_mb=64))


def test_a_query_past_its_time_limit_is_interrupted(lake: Lake) -> None:
    started = time.monotonic()
    with pytest.raises(QueryLimitExceeded, match="1 s time limit"):
        run_query(lake, LONG_SCAN, limits=QueryLimits(timeout_s=1.0))
    assert time.monotonic() - started < 60  # interrupted, not run to its end (hours)


def test_a_cancelled_query_stops_and_says_so(lake: Lake) -> None:
    handle = QueryHandle()
    handle.cancel()
    with pytest.raises(QueryLimitExceeded, match="cancelled"):
        run_query(lake, LONG_SCAN, handle=handle)


def test_results_stop_at_the_row_cap_and_say_they_were_truncated(lake: Lake) -> None:
    capped = run_query(lake, "SELECT * FROM range(5000)", limits=QueryLimits(max_rows=100))
    assert (capped.table.num_rows, capped.truncated) == (100, True)
    asked = run_query(lake, "SELECT * FROM range(5000)", max_rows=10_000)
    assert (asked.table.num_rows, asked.truncated) == (5000, False)
    # a request cannot ask for more than the cloud's cap
    over = run_query(
        lake, "SELECT * FROM range(5000)", max_rows=10**9, limits=QueryLimits(max_rows=7)
    )
    assert over.table.num_rows == 7


def test_only_granted_streams_can_be_named(lake: Lake) -> None:
    ok = run_query(lake, "SELECT count(*) AS n FROM telemetry", readable={"telemetry"})
    assert ok.table.to_pylist() == [{"n": 50}]
    for sql in (
        "SELECT * FROM payroll",
        "SELECT t.value, p.salary FROM telemetry t JOIN payroll p USING (record_id)",
        "SELECT * FROM telemetry WHERE record_id IN (SELECT record_id FROM payroll)",
    ):
        with pytest.raises(StreamNotGranted, match="payroll"):
            run_query(lake, sql, readable={"telemetry"})
        with pytest.raises(StreamNotGranted):
            check_readable(lake, sql, {"telemetry"})
    with pytest.raises(LakeQueryError) as missing:  # not a stream at all: no grant talk
        run_query(lake, "SELECT * FROM nothing_here", readable={"telemetry"})
    assert not isinstance(missing.value, StreamNotGranted)
    check_readable(lake, "SELECT * FROM payroll", None)  # admins: everything


def _rss_kb(pid: int) -> tuple[int, int]:
    """(current RSS, peak RSS) of a process, in kB."""
    fields = dict(
        line.split(":", 1)
        for line in Path(f"/proc/{pid}/status").read_text().splitlines()
        if ":" in line
    )
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


def _cpu_s(pid: int) -> float:
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    env = {
        "HYBRIDAI_CLOUD_LAKE_QUERY_MEMORY_MB": "128",
        "HYBRIDAI_CLOUD_LAKE_QUERY_MAX_ROWS": "1000",
    }
    with local_fleet(tmp_path_factory.mktemp("lakeq"), env) as started:
        _seed(Lake(str(started.workspace / "cloud" / "lake")))
        yield started


def _viewer(fleet: object) -> httpx.Client:
    api = fleet.api  # type: ignore[attr-defined]
    made = api.post("/api/v1/users", json={"name": "vera", "role": "viewer", "password": PASSWORD})
    assert made.status_code in (201, 409), made.text
    login = api.post("/api/v1/auth/login", json={"username": "vera", "password": PASSWORD})
    assert login.status_code == 200, login.text
    return cloud_client(fleet, login.json()["access_token"])  # type: ignore[arg-type]


def _query(client: httpx.Client, sql: str, **extra: object) -> httpx.Response:
    return client.post("/api/v1/lake/query", json={"sql": sql, **extra})


def test_a_viewer_reads_only_streams_granted_to_it(fleet: object) -> None:
    api = fleet.api  # type: ignore[attr-defined]
    with _viewer(fleet) as viewer:
        assert error_of(_query(viewer, "SELECT count(*) FROM telemetry")) == (403, "forbidden")
        granted = api.put("/api/v1/lake/grants/telemetry", json={"kind": "role", "name": "viewer"})
        assert granted.status_code == 200, granted.text
        assert _query(viewer, "SELECT count(*) AS n FROM telemetry").json()["rows"] == [[50]]
        refused = _query(viewer, "SELECT * FROM telemetry JOIN payroll USING (record_id)")
        assert error_of(refused) == (403, "forbidden")
        assert "lake grant payroll" in refused.json()["error"]
        assert "1000.0" not in refused.text  # no row of the stream in the answer
        # viewers cannot hand out grants
        self_grant = viewer.put(
            "/api/v1/lake/grants/payroll", json={"kind": "user", "name": "vera"}
        )
        assert error_of(self_grant) == (403, "forbidden")
        listed = api.get("/api/v1/lake/grants").json()
        assert [(g["stream"], g["kind"], g["name"]) for g in listed] == [
            ("telemetry", "role", "viewer")
        ]
        assert api.delete("/api/v1/lake/grants/telemetry/role/viewer").status_code == 204
        assert error_of(_query(viewer, "SELECT count(*) FROM telemetry")) == (403, "forbidden")
    entries = api.get("/api/v1/audit", params={"limit": 50}).json()
    actions = {e["action"] for e in entries}
    assert "PUT /api/v1/lake/grants/{stream}" in actions
    assert admin_reads_all(api)


def admin_reads_all(api: httpx.Client) -> bool:
    response = _query(api, "SELECT count(*) AS n FROM payroll")
    return response.status_code == 200 and response.json()["rows"] == [[5]]


def test_a_memory_hungry_query_is_refused_and_the_cloud_stays_small(fleet: object) -> None:
    pid = fleet.cloud.process.pid  # type: ignore[attr-defined]
    before, _ = _rss_kb(pid)
    response = _query(fleet.api, BIG_LIST)  # type: ignore[attr-defined]
    assert error_of(response) == (422, "query_limit")
    assert "memory limit" in response.json()["error"]
    _, peak = _rss_kb(pid)
    assert peak - before < 256 * 1024, f"RSS rose {(peak - before) // 1024} MB"
    assert admin_reads_all(fleet.api)  # type: ignore[attr-defined]


def test_rows_are_capped_by_the_cloud(fleet: object) -> None:
    body = _query(fleet.api, "SELECT * FROM range(5000)", limit=100_000).json()  # type: ignore[attr-defined]
    assert (len(body["rows"]), body["truncated"]) == (1000, True)


def test_a_query_whose_client_left_stops_using_the_cpu(fleet: object) -> None:
    pid = fleet.cloud.process.pid  # type: ignore[attr-defined]
    with pytest.raises(httpx.ReadTimeout):
        fleet.api.post("/api/v1/lake/query", json={"sql": LONG_SCAN}, timeout=2.0)  # type: ignore[attr-defined]
    time.sleep(3.0)  # the cloud notices within half a second; DuckDB stops at its next check
    start = _cpu_s(pid)
    time.sleep(4.0)
    spent = _cpu_s(pid) - start
    assert spent < 1.0, f"the cloud spent {spent:.1f} s of CPU in 4 s after the client left"
    assert admin_reads_all(fleet.api)  # type: ignore[attr-defined]


def test_grants_from_the_command_line(fleet: object) -> None:
    from typer.testing import CliRunner

    from hybridai.cli.main import app as cli

    token = (fleet.workspace / "cloud" / "admin.token").read_text().strip()  # type: ignore[attr-defined]
    env = {"HYBRIDAI_CA_FILE": str(fleet.ca_file), "HYBRIDAI_TOKEN": token}  # type: ignore[attr-defined]
    common = ["--cloud", fleet.cloud.url]  # type: ignore[attr-defined]
    runner = CliRunner()
    done = runner.invoke(cli, ["lake", "grant", "payroll", "--user", "vera", *common], env=env)
    assert done.exit_code == 0, done.output
    listed = runner.invoke(cli, ["lake", "grants", "--json", *common], env=env)
    assert '"payroll"' in listed.output and '"vera"' in listed.output
    both = runner.invoke(
        cli, ["lake", "grant", "payroll", "--user", "a", "--role", "viewer", *common], env=env
    )
    assert both.exit_code != 0 and "exactly one of --role or --user" in both.output
    gone = runner.invoke(cli, ["lake", "revoke", "payroll", "--user", "vera", *common], env=env)
    assert gone.exit_code == 0, gone.output
    again = runner.invoke(cli, ["lake", "revoke", "payroll", "--user", "vera", *common], env=env)
    assert again.exit_code != 0 and "no grant on 'payroll'" in again.output
