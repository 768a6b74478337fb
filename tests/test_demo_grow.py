"""`grow`: the next days of the same demo world, staged and landed day by day, earlier files left as they were."""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from cdp_spark.demo import generate, grow, landed_end

END = dt.date(2026, 11, 1)
WORLD = {"people": 40, "days": 5, "seed": 5, "end_date": END}


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def web_lines(folder: Path) -> dict[str, str]:
    """messageId -> the JSON line (a retry copy is the same line); the demo's deliberately broken lines left out."""
    out = {}
    for p in sorted(folder.rglob("*.json")):
        for line in p.read_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("messageId") and isinstance(event.get("timestamp"), str):
                out[event["messageId"]] = line
    return out


@pytest.fixture(scope="module")
def grown(spark, tmp_path_factory):
    out = tmp_path_factory.mktemp("grow")
    generate(spark, str(out / "demo"), truth_dir=str(out / "truth"), **WORLD)
    before = files(out / "demo" / "landing")
    growth = grow(spark, str(out / "demo"), truth_dir=str(out / "truth"), next_days=2, **WORLD)
    staged_listing = files(Path(growth.staged))
    landed = {day: growth.land(spark, day) for day in growth.days}
    growth.close(spark)
    return {"out": out, "before": before, "growth": growth, "landed": landed, "staged": staged_listing}


def test_the_new_days_land_after_the_last_and_nothing_landed_before_changes(grown):
    out, growth = grown["out"], grown["growth"]
    assert growth.days == [END + dt.timedelta(days=1), END + dt.timedelta(days=2)]
    assert all("web" in sources and "app" in sources for sources in grown["landed"].values())
    after = files(out / "demo" / "landing")
    assert {k: v for k, v in after.items() if k in grown["before"]} == grown["before"]
    new = sorted({k.split("/")[1] for k in set(after) - set(grown["before"])})
    assert new == [f"day={d.isoformat()}" for d in growth.days]
    assert not Path(growth.staged).exists()


def test_the_new_days_hold_late_events_for_earlier_days_from_the_same_world(grown):
    landing = grown["out"] / "demo" / "landing" / "web"
    old = {}
    for day in (END - dt.timedelta(days=i) for i in range(WORLD["days"])):
        old.update(web_lines(landing / f"day={day.isoformat()}"))
    new = {}
    for day in grown["growth"].days:
        new.update(web_lines(landing / f"day={day.isoformat()}"))
    late = {k: v for k, v in new.items() if json.loads(v)["timestamp"][:10] <= END.isoformat()}
    assert late, "no late events for earlier days"
    # An event delivered before and again (a retry) is the very same line: the same world, not a new one.
    again = set(late) & set(old)
    assert all(late[k] == old[k] for k in again)
    assert any(json.loads(v)["timestamp"][:10] > END.isoformat() for v in new.values())


def test_growing_again_continues_after_the_last_landed_day_and_is_deterministic(spark, grown, tmp_path):
    out = grown["out"]
    assert landed_end(spark, str(out / "demo"), END) == END + dt.timedelta(days=2)
    copy = tmp_path / "demo"
    shutil.copytree(out / "demo", copy)
    first = grow(spark, str(out / "demo"), truth_dir=str(tmp_path / "t1"), next_days=1, **WORLD)
    second = grow(spark, str(copy), truth_dir=str(tmp_path / "t2"), next_days=1, **WORLD)
    try:
        assert first.days == second.days == [END + dt.timedelta(days=3)]
        day = f"day={first.days[0].isoformat()}"
        a, b = (files(Path(g.staged) / "landing" / "web" / day) for g in (first, second))
        assert a and a == b
    finally:
        first.close(spark)
        second.close(spark)


def test_grow_refuses_zero_days(spark, tmp_path):
    with pytest.raises(ValueError, match="next_days"):
        grow(spark, str(tmp_path), next_days=0, **WORLD)
