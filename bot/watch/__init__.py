"""The post-cutover watch: scheduled summaries from the caller's side, alerts on the absence of work.

    spec.py       the `watch.start` spec (every, for, signals, thresholds, on_call)
    signals.py    log_volume, edge_504_rate, edge_5xx_rate, throughput_floor, probe, caller_log
    collect.py    one tick: every CloudWatch signal in ONE GetMetricData call; baselines
    service.py    start / stop / tick_now / status / chart_png: what front ends call
    scheduler.py  APScheduler jobs rebuilt from the store; one scheduler per store (a lease)
    summary.py    the summary and alert dicts posted through the engine's Channel
    render.py     console_lines(summary): the console front end's rendering
    tables.py     the `watches` and `samples` tables
"""
