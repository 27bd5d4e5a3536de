"""Fitting a sync batch to its stream: declared types win, misfits are named, never quoted."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from hybridai.cloud.data.lake import Lake, retyped
from hybridai.cloud.data.quarantine import fit

SECRET = "SECRET-VALUE-1f3a"


def _batch(device: str, seq: int, **fields: list[object]) -> pa.Table:
    n = len(next(iter(fields.values())))
    return pa.table(
        {
            "record_id": [f"{device}:{seq}:{i}" for i in range(n)],
            "device_id": [device] * n,
            "site": ["north"] * n,
            "ts": [1.7e9 + i for i in range(n)],
            "date": ["2023-11-14"] * n,
            **fields,
        }
    )


def test_a_batch_of_another_type_is_named_by_field_and_type_only(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.commit_batch("telemetry", "a", 1, _batch("a", 1, temp=[61.5]))
    wrong = fit(_batch("b", 1, temp=[SECRET]), {}, lake.arrow_schema("telemetry"))
    assert wrong.problems == ["field 'temp' is string but the lake table has it as number"]
    assert SECRET not in wrong.reason
    widened = fit(_batch("b", 1, temp=[3]), {}, lake.arrow_schema("telemetry"))
    assert widened.problems == [] and widened.table.schema.field("temp").type == pa.float64()


def test_the_declared_type_decides_before_any_table_exists() -> None:
    wrong = fit(_batch("a", 1, temp=["hot"]), {"temp": "number"}, None)
    assert wrong.problems == ["field 'temp' is string but the declared schema has it as number"]
    right = fit(_batch("b", 1, temp=[1], count=[2]), {"temp": "number"}, None)
    assert right.problems == [] and right.table.schema.field("temp").type == pa.float64()
    assert right.table.schema.field("count").type == pa.int64()  # undeclared: as sent


def test_a_declaration_asks_to_retype_a_table_a_wrong_first_writer_made(tmp_path: Path) -> None:
    lake = Lake(str(tmp_path / "lake"))
    lake.commit_batch("telemetry", "a", 1, _batch("a", 1, temp=["61.5", SECRET, None]))
    fitted = fit(_batch("b", 1, temp=[60.0]), {"temp": "number"}, lake.arrow_schema("telemetry"))
    assert fitted.retype == {"temp": pa.float64()}

    misfits = lake.retype("telemetry", fitted.retype)
    assert misfits is not None and misfits.column("temp").to_pylist() == [SECRET]
    assert lake.arrow_schema("telemetry").field("temp").type == pa.float64()  # type: ignore[union-attr]
    rows = lake.query("SELECT temp FROM telemetry ORDER BY ts").column("temp").to_pylist()
    assert rows == [61.5, None]
    assert lake.committed_seq("telemetry", "a") == 1  # exactly-once keys survive the rewrite
    assert lake.commit_batch("telemetry", "a", 1, _batch("a", 1, temp=[1.0]))[1] is True
    assert lake.retype("telemetry", {"temp": pa.float64()}) is None  # nothing left to do


def test_values_convert_only_where_exact() -> None:
    assert retyped(["1", "2.5", "x", None], pa.int64()) == (
        [1, None, None, None],
        [True, False, False, True],
    )
    assert retyped([1, 2.5], pa.string()) == (["1", "2.5"], [True, True])
    assert retyped(["true", "no", 1], pa.bool_())[1] == [True, False, False]
    assert retyped([True, "nan"], pa.float64())[1] == [False, False]
