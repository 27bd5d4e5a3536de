"""One ``EdgeAgent.apply`` fans a desired state out to every part, live; a restart restores it.

The agent runs without its loops (nothing dials the cloud): the test hands it desired states
as the long-poll would, and reads what each part now does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from hybridai.edge.agent import EdgeAgent
from hybridai.edge.settings import EdgeSettings
from hybridai.protocol.edge_settings import DeviceSettings
from hybridai.protocol.fleet import DesiredState
from hybridai.protocol.policy import DataPolicy


def _agent(data_dir: Path) -> EdgeAgent:
    settings = EdgeSettings(
        data_dir=data_dir,
        device_id="gw-1",
        cloud_url="https://127.0.0.1:9",
        sync_interval_s=5.0,
        store_quota_bytes=10_000,
        stream_priorities={"vibration": "low"},
    )
    return EdgeAgent(settings)


def _desired(generation: str, **settings: object) -> DesiredState:
    return DesiredState(
        device_id="gw-1",
        generation=generation,
        settings=DeviceSettings.model_validate(settings),
        policies=[DataPolicy(stream="telemetry", classification="restricted")],
    )


def test_apply_fans_out_live_and_reports_each_settings_source(tmp_path: Path) -> None:
    agent = _agent(tmp_path / "edge")
    try:
        agent.site = "north"
        agent._on_enrolled()  # an uploader, as after enrollment
        assert agent.uploader is not None and agent.uploader.max_records == 5000
        before = agent.status()
        assert before.settings["sync_interval_s"].model_dump() == {"value": 5.0, "source": "local"}

        desired = _desired(
            "g1",
            heartbeat_interval_s=0.5,
            batch_max_records=7,
            store_quota_bytes=50_000,
            sync_bandwidth_bytes_per_s=2000,
            stream_priorities={"alerts": "normal"},
            token_public_key="PEM",
        )
        asyncio.run(agent.apply(desired))

        assert agent._setting("heartbeat_interval_s", 99.0) == 0.5
        assert agent._setting("sync_interval_s", 99.0) == 5.0  # not set by the cloud: its own
        assert agent.uploader.max_records == 7
        assert agent.store.config.quota_bytes == 50_000 and agent.dataplane.bandwidth == 2000.0
        assert agent.store.config.priority("vibration") == 0  # the edge's own, kept
        assert agent.store.config.priority("alerts") == 1
        assert agent.token_public_key == "PEM" and sorted(agent.policies) == ["telemetry"]
        assert agent.desired.generation == "g1"  # the poll asks for the next one from here
        shown = agent.status()
        assert shown.settings["heartbeat_interval_s"].source == "cloud"
        assert shown.settings["stream_priorities.vibration"].source == "local"
        assert shown.settings["stream_priorities.alerts"].model_dump() == {
            "value": "normal",
            "source": "cloud",
        }
        assert shown.policies == ["telemetry"] and shown.settings_error is None

        # The cloud stops setting the bandwidth: the edge's own (no cap) applies again
        asyncio.run(agent.apply(_desired("g2", heartbeat_interval_s=0.5)))
        assert agent.dataplane.bandwidth is None and agent.store.config.quota_bytes == 10_000
        assert agent.uploader.max_records == 5000
    finally:
        asyncio.run(agent.stop())


def test_a_restart_runs_the_cached_desired_state_before_the_cloud_answers(
    tmp_path: Path,
) -> None:
    agent = _agent(tmp_path / "edge")
    try:
        asyncio.run(agent.apply(_desired("g1", sync_window="22:00-06:00", token_public_key="K")))
    finally:
        asyncio.run(agent.stop())

    restarted = _agent(tmp_path / "edge")
    try:
        cached = restarted.desired.load()
        assert cached is not None and cached.generation == "g1"
        asyncio.run(restarted.apply(cached, restoring=True))
        assert restarted.dataplane.window is not None and restarted.token_public_key == "K"
        assert restarted.status().settings["sync_window"].source == "cloud"
        assert restarted.desired.generation is None  # the first poll still fetches a fresh one
    finally:
        asyncio.run(restarted.stop())
