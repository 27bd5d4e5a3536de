"""The dashboard's aggregation: what the fleet page counts, sorts and pages, and its charts."""

from __future__ import annotations

from typing import Any

from hybridai.dashboard import charts, views

NOW = 1_000_000.0


def _device(i: int, *, seen: float | None = NOW, **status: Any) -> views.Brief:
    report = {"agent_version": "1", "models": [], **status} if status or seen else None
    return views.Brief(f"d{i:04d}", f"s{i % 3}", "edge-server", seen, False, report)


def test_ago_reads_like_a_person_would_say_it() -> None:
    assert views.ago(None, NOW) == "never"
    assert views.ago(NOW - 12, NOW) == "12 s ago"
    assert views.ago(NOW - 600, NOW) == "10 min ago"
    assert views.ago(NOW - 7200, NOW) == "2 h ago"
    assert views.ago(NOW - 3 * 86400, NOW) == "3 d ago"


def test_health_names_the_first_problem() -> None:
    failed = [{"name": "pm", "version": "1", "state": "failed"}]
    assert views.health(_device(1, models=failed)) == "model failed: pm"
    loops = [{"name": "sync", "state": "backing_off"}]
    assert views.health(_device(2, loops=loops)) == "loop failing"
    assert views.health(_device(3, cloud_reachable=False)) == "cloud unreachable"
    assert views.health(_device(4, store={"over_quota": True})) == "over quota"
    assert views.health(_device(5, clock_hold="retention waits")) == "clock skew"
    assert views.health(_device(6, seen=None)) == "no report yet"
    assert views.health(_device(7)) == "ok"


def test_the_fleet_is_paged_with_trouble_first_and_counted_whole() -> None:
    devices = [_device(i, store={"backlog_records": 2}) for i in range(120)]
    devices[70] = _device(70, seen=NOW - 3600)  # silent
    devices[90] = _device(90, models=[{"name": "pm", "version": "3", "state": "failed"}])
    view = views.fleet_view(devices, NOW, 30, "", "", 1)
    assert (view.total, view.online, view.unhealthy, view.pages) == (120, 119, 1, 3)
    assert [r.device_id for r in view.rows[:2]] == ["d0070", "d0090"]
    assert len(view.rows) == views.PAGE_SIZE and view.backlog == 2 * 118
    assert dict(view.versions) == {"pm v3": 1}
    last = views.fleet_view(devices, NOW, 30, "", "", 99)  # past the end: the last page
    assert last.page == 3 and len(last.rows) == 20
    one_site = views.fleet_view(devices, NOW, 30, "s1", "d00", 1)
    assert {r.site for r in one_site.rows} == {"s1"} and len(one_site.rows) == 33


def test_buckets_and_bars() -> None:
    counts = charts.buckets([NOW - 1, NOW - 119, NOW - 121, NOW - 3599, NOW - 4000], NOW, 3600, 30)
    assert counts[-1] == 2 and counts[-2] == 1 and counts[0] == 1 and sum(counts) == 4
    svg = str(charts.bars(counts, "a <title>", "1 h ago", "now"))
    assert svg.count("<rect") == 30 and "a &lt;title&gt;" in svg and "<script" not in svg
