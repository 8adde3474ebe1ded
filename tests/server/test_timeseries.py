"""The console's time series: counters become rates, a restart leaves a gap, a day is kept."""

from __future__ import annotations

from appliance.server.metrics import Metrics
from appliance.server.timeseries import KEEP_S, TimeSeries


def test_rates_gaps_and_retention(tmp_path):
    now = [1_000_000.0]
    series = TimeSeries(tmp_path / "ts.sqlite", clock=lambda: now[0])
    m = Metrics()
    series.sample(m)
    now[0] += 10
    m.tokens_generated.labels("chat").inc(50)
    m.ttft.labels("chat").observe(0.2)
    m.ttft.labels("chat").observe(0.4)
    m.queue_depth.labels("chat").set(3)
    series.sample(m)
    got = series.read(3600)
    assert got.tokens_per_s == [5.0] and got.ttft_s == [0.3] and got.queue == [3.0]
    now[0] += 10
    series.sample(Metrics())  # the server restarted: its counters began again at zero
    assert series.read(3600).tokens_per_s[-1] is None
    now[0] += KEEP_S + 20
    series.sample(m)
    assert series.db.execute("SELECT COUNT(*) FROM samples").fetchone()[0] == 1


def test_a_day_is_bucketed_to_a_few_hundred_points(tmp_path):
    now = [0.0]
    series = TimeSeries(tmp_path / "ts.sqlite", clock=lambda: now[0])
    m = Metrics()
    for _ in range(8640):
        m.tokens_generated.labels("chat").inc(10)
        series.sample(m)
        now[0] += 10
    day = series.read(86400)
    assert 300 <= len(day.at) <= 361 and all(abs(v - 1.0) < 1e-6 for v in day.tokens_per_s)
