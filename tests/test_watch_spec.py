"""The watch spec, the step kinds, baselines and rendering."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.engine.store import Store
from bot.runbook.targets import AwsAlbTarget, DoAppTarget, HttpTarget
from bot.steps.base import PlanRefused, get_kind
from bot.steps.context import StepContext
from bot.watch import service
from bot.watch.collect import baseline_at
from bot.watch.render import console_lines
from bot.watch.spec import WatchSpec, format_duration, parse_duration
from bot.watch.summary import sparkline


@pytest.mark.parametrize("text,seconds", [("10m", 600), ("24h", 86400), ("1h30m", 5400), ("45s", 45),
                                          ("2d", 172800), (90, 90)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds
    assert parse_duration(format_duration(seconds)) == seconds


def test_defaults_and_aliases():
    spec = WatchSpec.model_validate({"alb": "a", "signals": ["edge_504_rate"]})
    assert spec.every == 600 and spec.for_ == 86400
    assert spec.dump()["for"] == 86400
    assert WatchSpec.model_validate(spec.dump()) == spec


@pytest.mark.parametrize("raw,message", [
    ({"signals": ["cpu"]}, "unknown signal 'cpu'"),
    ({"every": "ten minutes", "signals": ["probe"]}, "not a duration"),
    ({"every": "2h", "for": "1h", "signals": ["probe"]}, "longer than for"),
    ({"signals": ["probe", "probe"]}, "appear twice"),
    ({"signals": [{"name": "edge_504_rate", "over": "lots"}]}, "not a percentage"),
    ({"signals": ["probe"], "pager": "x"}, "pager"),
    ({"signals": []}, "signals"),
])
def test_bad_specs_name_the_field(raw, message):
    with pytest.raises(ValidationError, match=message):
        WatchSpec.model_validate(raw)


def _ctx(store=None):
    return StepContext(run_id="r1", step_id="watch", runbook_name="t", params={}, outputs={}, store=store,
                       targets={"new-alb": AwsAlbTarget(load_balancer="app/api/1"),
                                "new": DoAppTarget(app="api-production"),
                                "api": HttpTarget(url="http://127.0.0.1:9/", host="api.example.com")})


def test_plan_lists_signals_sources_and_thresholds():
    kind = get_kind("watch.start")
    inputs = kind.Inputs.model_validate({"alb": "new-alb", "log_group": "/ecs/api", "on_call": ["@oncall"],
                                         "signals": ["log_volume", {"name": "edge_504_rate", "over": "2%"},
                                                     {"name": "probe", "probe": "api"}]})
    plan = kind.plan(_ctx(), inputs)
    assert plan.table[0] == ["signal", "source", "threshold"]
    assert ["edge_504_rate", "alb: new-alb", "over 2%"] in plan.table
    assert ["probe", "probe: http://127.0.0.1:9/ (Host: api.example.com)", "3 failed in a row"] in plan.table
    assert ["log_volume", "log_group: /ecs/api", "under 50% of baseline"] in plan.table
    assert "every 10m for 1d" in plan.summary


@pytest.mark.parametrize("raw,message", [
    ({"alb": "old-alb", "signals": ["edge_504_rate"]}, "not a target of this runbook"),
    ({"alb": "new", "signals": ["edge_504_rate"]}, "is a do-app target, not aws-alb"),
    ({"app": "new", "signals": ["edge_5xx_rate"]}, "no edge status metric"),
    ({"log_group": "/ecs/api", "signals": ["log_volume"]}, "needs `aws`"),
])
def test_plan_refuses_sources_it_cannot_read(raw, message):
    kind = get_kind("watch.start")
    with pytest.raises(PlanRefused, match=message):
        kind.plan(_ctx(), kind.Inputs.model_validate(raw))


def test_apply_schedules_and_rollback_stops(tmp_path):
    store = Store(tmp_path / "s.sqlite")
    ctx = _ctx(store)
    kind = get_kind("watch.start")
    inputs = kind.Inputs.model_validate({"probe": "api", "signals": ["probe"]})
    result = kind.apply(ctx, inputs, kind.plan(ctx, inputs))
    assert result.undo == {"run_id": "r1"}
    assert service.status(store, "r1")["state"] == "active"
    assert kind.verify(ctx, inputs, result).ok
    undo = kind.rollback(ctx, inputs, result)
    assert undo.summary == "watch stopped"
    assert service.status(store, "r1")["state"] == "stopped"
    assert kind.verify_rollback(ctx, inputs, result, undo).ok
    stop = get_kind("watch.stop")
    assert stop.plan(ctx, stop.Inputs()).no_op is True


def test_baseline_same_hour_when_history_reaches_back_a_day():
    every = 600.0
    start = 1_000_000.0
    # 145 buckets from start: data from the first bucket (history reaches back a day).
    values = [float(i) for i in range(145)]
    profile = {"start": start, "every": every, "values": values, "first_data": 0}
    at = start + 86400 + every + 5 * every  # the interval ending 24h earlier is bucket 5
    assert baseline_at(profile, at) == (5.0, "same hour yesterday")
    short = {"start": start, "every": every, "values": [0.0] * 140 + [10.0, 20.0, 30.0], "first_data": 140}
    value, how = baseline_at(short, at)
    assert value == 20.0 and how.startswith("mean of the 3 intervals")
    assert baseline_at({"start": start, "every": every, "values": [0.0] * 3, "first_data": None}, at)[0] is None


def test_sparkline_and_console_lines():
    assert sparkline([0, 5, 10]) == "▁▅█"
    assert sparkline([3, None, 3]) == "▅ ▅"
    summary = {"run_id": "r1", "tick_no": 4, "at": 1779271200.0, "gap_seconds": 1900.0, "final": False,
               "state": "warn", "signals": [{"name": "probe", "label": "probe", "value": 1.0,
                                             "unit": "failed in a row", "baseline": None,
                                             "threshold": "3 failed in a row", "state": "warn",
                                             "sparkline": "▁▁█", "detail": "1/3 probes failed"}]}
    lines = console_lines(summary)
    assert "tick 4" in lines[0] and "WARN" in lines[0]
    assert "away 31m40s" in lines[1]
    assert "WARN" in lines[2] and "▁▁█" in lines[2]


def test_delay_defaults_to_two_minutes_and_may_be_zero():
    assert WatchSpec.model_validate({"signals": ["probe"]}).delay == 120
    assert WatchSpec.model_validate({"delay": "0s", "signals": ["probe"]}).delay == 0
    with pytest.raises(ValidationError, match="not a duration"):
        WatchSpec.model_validate({"delay": "soon", "signals": ["probe"]})
