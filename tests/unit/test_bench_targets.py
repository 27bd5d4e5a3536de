"""`make bench` runs every benchmark, and `make bench-quick` runs each with --quick."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _target(name: str) -> list[str]:
    makefile = (ROOT / "Makefile").read_text()
    body = re.search(rf"^{re.escape(name)}:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert body, f"no `{name}` target in the Makefile"
    return body.group(1).splitlines()


def _benchmarks() -> set[str]:
    return {p.name for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_")}


def test_make_bench_runs_every_benchmark() -> None:
    run = {m.group(1) for line in _target("bench") if (m := re.search(r"bench/(\w+\.py)", line))}
    assert run == _benchmarks()


def test_make_bench_quick_runs_every_benchmark_quick() -> None:
    lines = [line for line in _target("bench-quick") if "bench/" in line]
    assert {re.search(r"bench/(\w+\.py)", line).group(1) for line in lines} == _benchmarks()  # type: ignore[union-attr]
    assert all(line.rstrip().endswith("--quick") for line in lines)
