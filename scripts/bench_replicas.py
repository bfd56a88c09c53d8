#!/usr/bin/env python3
"""Medians of scripts/bench_replicas.sh's JSON lines, as Markdown tables."""
import json
import statistics
import sys
from collections import defaultdict


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, digits=1):
    if x is None:
        return "-"
    return f"{x:,.{digits}f}"


def main(path):
    rows = [json.loads(l) for l in open(path) if l.strip()]
    settings = {r["label"]: r["settings"] for r in rows if r.get("bench") == "pg-settings"}
    for label, s in settings.items():
        print(f"PostgreSQL ({label}): " + ", ".join(f"{k}={v}" for k, v in sorted(s.items())))
    for r in rows:
        if r.get("bench") == "pg-idle":
            pct = r["pg_cpu_secs"] / r["secs"] * 100
            print(f"PostgreSQL idle CPU with one gateway connected: {r['pg_cpu_secs']} s over {r['secs']} s ({pct:.1f}% of a core)")
    print()

    hs = defaultdict(list)
    for r in rows:
        if r.get("bench") == "replicas-handshake":
            hs[(r["mode"], r["label"])].append(r)
    if hs:
        print("| handshake | store | runs | ok/n | rate /s | p50 ms | p99 ms | server CPU us/handshake | PostgreSQL CPU us/handshake | server + PostgreSQL us |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for mode in ("token", "v3", "device-token"):
            for label in ("sqlite", "postgres"):
                rs = hs.get((mode, label))
                if not rs:
                    continue
                srv = med([r.get("server_cpu_us_per_op") for r in rs])
                pg = med([r.get("pg_cpu_us_per_op") for r in rs])
                tot = med([
                    (r.get("server_cpu_us_per_op") or 0) + (r.get("pg_cpu_us_per_op") or 0)
                    for r in rs
                ])
                ok = f"{min(r['ok'] for r in rs)}/{rs[0]['n']}"
                print(
                    f"| {mode} | {label} | {len(rs)} | {ok} | {fmt(med([r['rate'] for r in rs]), 0)} "
                    f"| {fmt(med([r['p50_ms'] for r in rs]), 2)} | {fmt(med([r['p99_ms'] for r in rs]), 2)} "
                    f"| {fmt(srv)} | {fmt(pg) if label == 'postgres' else '-'} | {fmt(tot)} |"
                )
        print()

    rv = defaultdict(list)
    for r in rows:
        if r.get("bench") == "replicas-revoke":
            rv[r["label"]].append(r)
    series = [
        ("revoke_propagation", "revoke sent on B -> device socket on A closed (4001)"),
        ("revoke_rpc", "revoke sent on B -> B's response"),
        ("approve_rpc", "approve sent on C -> C's response"),
        ("approve_propagation", "approve sent on C -> device.pair.resolved on A"),
        ("approve_propagation_b", "approve sent on C -> device.pair.resolved on B"),
        ("b_behind_by", "device-token session up on A -> B applied the approval (only when B was behind)"),
        ("approve_to_connect", "approve sent on C -> device's hello-ok on A"),
        ("request_propagation", "PAIRING_REQUIRED on A -> device.pair.requested on C"),
    ]
    for label, rs in rv.items():
        oks = ", ".join(f"{r['ok']}/{r['count']}" for r in rs)
        errs = [r["errors"] for r in rs if r.get("errors")]
        print(f"revoke [{label}]: {len(rs)} runs, 4001 closes per run: {oks}" + (f"; errors: {errs}" if errs else ""))
        behind = ", ".join(f"{r.get('b_behind_at_session')}/{r.get('approved')}" for r in rs)
        print(f"  device-token session on A up before B had applied the approval: {behind}")
        nores = ", ".join(str(r.get('b_no_resolved_event')) for r in rs)
        denied = ", ".join(str(r.get('revoke_denied_retried')) for r in rs)
        print(f"  B announced no device.pair.resolved (per run): {nores}; revokes B refused and the bench retried (per run): {denied}")
        print()
        print("| measure (ms, median over runs) | n/run | p50 | p90 | p99 | max |")
        print("|---|---|---|---|---|---|")
        for key, what in series:
            xs = [r[key] for r in rs if key in r]
            if not xs:
                continue
            print(
                f"| {key}: {what} | {int(med([x['n'] for x in xs]))} | {fmt(med([x['p50_ms'] for x in xs]), 2)} "
                f"| {fmt(med([x['p90_ms'] for x in xs]), 2)} | {fmt(med([x['p99_ms'] for x in xs]), 2)} "
                f"| {fmt(med([x['max_ms'] for x in xs]), 2)} |"
            )
        print()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench/replicas.jsonl")
