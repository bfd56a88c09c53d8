#!/usr/bin/env python3
"""Summarises scripts/bench.sh results: medians per scenario, clawgate vs
the reference, and the issue's targets. Usage: bench_summary.py results.jsonl"""
import json
import statistics
import sys

rows = []
with open(sys.argv[1]) as f:
    for line in f:
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                pass


def pick(label, bench, field, **match):
    vals = []
    for r in rows:
        if r.get("label") != label or r.get("bench") != bench:
            continue
        if any(r.get(k) != v for k, v in match.items()):
            continue
        v = r.get(field)
        if isinstance(v, (int, float)):
            vals.append(v)
    return vals


def median(vals):
    return statistics.median(vals) if vals else None


# (title, bench, field, match, unit, target, higher_is_better)
MEASURES = [
    ("signed-device (v3) handshakes/s, C=64", "handshake", "rate", {"device": "v3"}, "/s", ">= 12000", True),
    ("token handshakes/s, C=64", "handshake", "rate", {"device": None}, "/s", ">= 15000", True),
    ("p99 connect latency, token, C=64", "handshake", "p99_ms", {"device": None}, "ms", "<= 10", False),
    ("p99 connect latency, v3, C=64", "handshake", "p99_ms", {"device": "v3"}, "ms", "<= 10", False),
    ("trivial RPC/s over 16 connections", "rpc", "rate", {}, "/s", ">= 150000", True),
    ("start to first hello-ok", "startup", "ready_ms", {}, "ms", "<= 50", False),
    ("idle RSS after start", "idle", "rss_kb", {}, "KiB", "<= 20480", False),
    ("RSS per idle authenticated connection", "hold", "rss_per_conn_bytes", {"after_secs": 0}, "B", "<= 4096", False),
    ("idle connections dropped during hold", "hold", "dropped", {"after_secs": 0}, "", "0", False),
    ("server CPU while the idle connections are held", "hold", "server_idle_cpu_pct", {"after_secs": 0}, "%", "<= 2", False),
    ("RSS before a burst of connections", "hold", "server_rss_kb_before", {"after_secs": 30}, "KiB", "", False),
    ("RSS with the burst connected", "hold", "server_rss_kb_held", {"after_secs": 30}, "KiB", "", False),
    ("RSS 30 s after the burst closed", "hold", "server_rss_kb_after_close", {"after_secs": 30}, "KiB", "<= 2x before", False),
    ("seconds until RSS within 2x of before", "hold", "rss_within_2x_after_secs", {"after_secs": 30}, "s", "<= 30", False),
    ("server CPU per rejected wrong token", "badauth", "server_cpu_us_per_op", {}, "us", "<= 25", False),
    ("server CPU per token handshake", "handshake", "server_cpu_us_per_op", {"device": None}, "us", "<= 35", False),
    ("server CPU per v3 handshake", "handshake", "server_cpu_us_per_op", {"device": "v3"}, "us", "<= 75", False),
    ("server CPU per trivial RPC (health, 16 connections)", "rpc", "server_cpu_us_per_op", {}, "us", "<= 4", False),
    ("load tool CPU during token handshakes", "handshake", "client_cpu_pct", {"device": None}, "%", "", False),
    ("release binary size", "binary", "bytes", {}, "B", "<= 15728640", False),
]


def fmt(v):
    if v is None:
        return "-"
    if abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


# The floor (clawgate-bench floor: the socket work alone) is measured only
# for the CPU figures; a column appears when a run has it.
has_floor = any(r.get("label") == "floor" for r in rows)
floor_head = " floor: socket work only (median) |" if has_floor else ""
print(f"| measure | target | clawgate (median) | reference (median) | ratio |{floor_head}")
print("|---|---|---|---|---|" + ("---|" if has_floor else ""))
for title, bench, field, match, unit, target, higher in MEASURES:
    cg_vals = pick("clawgate", bench, field, **match)
    ref_vals = pick("openclaw", bench, field, **match)
    cg, ref = median(cg_vals), median(ref_vals)
    ratio = "-"
    if cg and ref:
        ratio = f"{(cg / ref) if higher else (ref / cg):.1f}x"
    runs = f" ({len(cg_vals)} runs)" if len(cg_vals) > 1 else ""
    floor = ""
    if has_floor:
        fl = median(pick("floor", bench, field, **match)) if field.startswith("server_cpu_us") else None
        floor = f" {fmt(fl)} {unit if fl is not None else ''} |"
    print(f"| {title} | {target} {unit} | {fmt(cg)} {unit}{runs} | {fmt(ref)} {unit} | {ratio} |{floor}")
