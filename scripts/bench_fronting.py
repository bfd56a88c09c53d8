"""Fronting benchmarks: clawgate in front of a real OpenClaw 2026.9.6 gateway,
measured against the same upstream reached directly, in the same run.

Per round (ROUNDS, default 3), with release builds:
  rpc      relayed trivial RPC (`health`) through clawgate vs direct: latency
           p50/p99 of both, clawgate CPU per relayed request (its own process
           only) and upstream CPU per request;
  connect  full handshakes (TCP, upgrade, challenge, connect, hello-ok)
           through clawgate vs direct: p50/p99;
  hold     K idle fronted clients: clawgate RSS per client (both sockets of
           each client live in clawgate);
  storm    a 10,000-connect wrong-token storm at clawgate: upstream CPU
           during the storm vs the same time idle, and connections that
           reached it;
  relay    clawgate's CPU per relayed request when the upstream is not the
           bottleneck: the same front door over a standalone clawgate
           upstream (OpenClaw answers a trivial call in ~150 us of its own
           CPU, so against it clawgate mostly waits, and each relayed call
           costs it two thread wake-ups).
Prints one JSON line per measurement and a table of medians.

usage: bench_fronting.py --openclaw BIN --clawgate BIN --bench BIN --work DIR [--rounds N]
"""
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "interop"))
from fronting import Clawgate, Failed, Upstream, rand_token  # noqa: E402


def cpu_secs(pid):
    """utime + stime of a process and its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def node_pid(upstream):
    """The pid of the upstream's gateway process (the CLI may fork it)."""
    out = subprocess.run(["ss", "-ltnpH", f"sport = :{upstream.port}"], capture_output=True, text=True).stdout
    for part in out.split("pid=")[1:]:
        return int(part.split(",")[0])
    return upstream.proc.pid


def bench(binary, url, token, pid, *args, label):
    cmd = [binary, "--url", url, "--token", token, "--label", label]
    if pid:
        cmd += ["--server-pid", str(pid)]
    r = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=600)
    lines = [l for l in r.stdout.splitlines() if l.startswith("{")]
    if r.returncode != 0 or not lines:
        raise Failed(f"clawgate-bench {' '.join(args)} exited {r.returncode}: {r.stderr[-600:]}")
    return json.loads(lines[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--openclaw", required=True)
    ap.add_argument("--clawgate", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", "3")))
    ap.add_argument("--rpc-r", type=int, default=int(os.environ.get("RPC_R", "20000")))
    ap.add_argument("--hs-n", type=int, default=int(os.environ.get("HS_N", "600")))
    ap.add_argument("--hold-k", type=int, default=int(os.environ.get("HOLD_K", "1000")))
    ap.add_argument("--method", default=os.environ.get("RPC_METHOD", "last-heartbeat"))
    ap.add_argument("--storm-m", type=int, default=int(os.environ.get("STORM_M", "10000")))
    a = ap.parse_args()

    up_token, cg_token = rand_token("up"), rand_token("cg")
    upstream = Upstream(a.openclaw, a.work, up_token)
    upstream.start()
    cg = Clawgate(a.clawgate, a.work, cg_token, upstream.url)
    front = fast_proc = None
    try:
        r = asyncio.run(cg.cli("upstream", "pair", "--url", upstream.url, env={"CLAWGATE_UPSTREAM_TOKEN": up_token}))
        if r.returncode != 0:
            raise Failed(f"clawgate upstream pair: {r.stdout}{r.stderr}")
        cg.start()
        up_pid = node_pid(upstream)
        results = {}
        # A fast upstream for the relay's own cost: a standalone clawgate.
        fast_dir = os.path.join(a.work, "fast")
        os.makedirs(fast_dir, exist_ok=True)
        fast = Clawgate(a.clawgate, fast_dir, rand_token("fast"), None)
        fast_proc = subprocess.Popen(
            [a.clawgate, "--state-dir", fast.state, "gateway", "run", "--port", str(fast.port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, CLAWGATE_GATEWAY_TOKEN=fast.token))
        time.sleep(1)
        front_dir = os.path.join(a.work, "front")
        os.makedirs(front_dir, exist_ok=True)
        front = Clawgate(a.clawgate, front_dir, rand_token("front"), fast.url)
        r = asyncio.run(front.cli("upstream", "pair", "--url", fast.url, env={"CLAWGATE_UPSTREAM_TOKEN": fast.token}))
        if r.returncode != 0:
            raise Failed(f"pairing with the fast upstream: {r.stdout}{r.stderr}")
        front.start()

        def keep(name, value):
            results.setdefault(name, []).append(value)
            print(json.dumps({"measure": name, "value": value}), flush=True)

        for round_no in range(a.rounds):
            # Relayed RPC vs direct. Upstream CPU is sampled around the relayed run too.
            u0 = cpu_secs(up_pid)
            through = bench(a.bench, cg.url, cg_token, cg.proc.pid, "rpc", "-c", "1", "-r", str(a.rpc_r),
                            "--method", a.method, label="clawgate-fronting")
            u1 = cpu_secs(up_pid)
            direct = bench(a.bench, upstream.url, up_token, up_pid, "rpc", "-c", "1", "-r", str(a.rpc_r),
                           "--method", a.method, label="openclaw-direct")
            print(json.dumps(through), flush=True)
            print(json.dumps(direct), flush=True)
            keep("rpc_through_p50_ms", through["p50_ms"])
            keep("rpc_through_p99_ms", through["p99_ms"])
            keep("rpc_direct_p50_ms", direct["p50_ms"])
            keep("rpc_direct_p99_ms", direct["p99_ms"])
            keep("rpc_added_p50_ms", round(through["p50_ms"] - direct["p50_ms"], 3))
            keep("rpc_added_p99_ms", round(through["p99_ms"] - direct["p99_ms"], 3))
            keep("clawgate_cpu_us_per_relayed_rpc", through["server_cpu_us_per_op"])
            keep("upstream_cpu_us_per_rpc_direct", direct["server_cpu_us_per_op"])
            keep("upstream_cpu_us_per_rpc_relayed", round((u1 - u0) * 1e6 / max(1, through["ok"]), 2))
            # Connect time.
            hs_through = bench(a.bench, cg.url, cg_token, cg.proc.pid, "handshake", "-n", str(a.hs_n), "-c", "4",
                               label="clawgate-fronting")
            hs_direct = bench(a.bench, upstream.url, up_token, up_pid, "handshake", "-n", str(a.hs_n), "-c", "4",
                              label="openclaw-direct")
            # The same handshake a relayed client's upstream socket makes: a
            # paired device, its device token and a v3 signature.
            hs_direct_dev = bench(a.bench, upstream.url, up_token, up_pid, "handshake", "-n", str(a.hs_n), "-c", "4",
                                  "--device", "v3", "--device-pool", "16", label="openclaw-direct-device")
            print(json.dumps(hs_direct_dev), flush=True)
            keep("connect_direct_device_p50_ms", hs_direct_dev["p50_ms"])
            keep("connect_direct_device_p99_ms", hs_direct_dev["p99_ms"])
            print(json.dumps(hs_through), flush=True)
            print(json.dumps(hs_direct), flush=True)
            keep("connect_through_p50_ms", hs_through["p50_ms"])
            keep("connect_through_p99_ms", hs_through["p99_ms"])
            keep("connect_direct_p50_ms", hs_direct["p50_ms"])
            keep("connect_direct_p99_ms", hs_direct["p99_ms"])
            keep("clawgate_cpu_us_per_fronted_connect", hs_through["server_cpu_us_per_op"])
            # Memory per fronted client (both sockets live in clawgate), on a
            # fresh clawgate: a process keeps the heap an earlier round grew
            # and would reuse it, showing almost nothing per client.
            cg.stop()
            cg.start()
            time.sleep(1)
            hold = bench(a.bench, cg.url, cg_token, cg.proc.pid, "hold", "-k", str(a.hold_k), "--secs", "5",
                         "--connect-c", "8", label="clawgate-fronting")
            print(json.dumps(hold), flush=True)
            keep("clawgate_rss_bytes_per_fronted_client", hold["rss_per_conn_bytes"])
            # Upstream CPU: idle vs during a wrong-token storm at clawgate.
            time.sleep(2)
            i0, t0 = cpu_secs(up_pid), time.time()
            time.sleep(10)
            idle = (cpu_secs(up_pid) - i0) / (time.time() - t0)
            s0, st0 = cpu_secs(up_pid), time.time()
            # The bench's legitimate client connects once, in its baseline
            # before the storm: each legitimate connect costs the upstream a
            # device-token handshake, which is not what is measured here.
            storm = bench(a.bench, cg.url, cg_token, cg.proc.pid, "attack", "bruteforce", "-m", str(a.storm_m),
                          "--src-ips", "127.0.0.10-250", "--origins", "none", "--workers-per-key", "4",
                          "--baseline-secs", "0.1", "--legit-pause-ms", "600000", "--max-secs", "300",
                          label="clawgate-fronting")
            during = (cpu_secs(up_pid) - s0) / (time.time() - st0)
            print(json.dumps(storm), flush=True)
            keep("upstream_cpu_pct_idle", round(idle * 100, 2))
            keep("upstream_cpu_pct_during_storm", round(during * 100, 2))
            keep("storm_accepted", storm["accepted"])
            # The relay's own cost, with an upstream that keeps up.
            for c in (1, 8):
                fast_direct = bench(a.bench, fast.url, fast.token, fast_proc.pid, "rpc", "-c", str(c), "-r", "100000",
                                    "--method", "health", label="clawgate-standalone")
                fast_through = bench(a.bench, front.url, front.token, front.proc.pid, "rpc", "-c", str(c), "-r",
                                     "100000", "--method", "health", label="clawgate-fronting-clawgate")
                print(json.dumps(fast_direct), flush=True)
                print(json.dumps(fast_through), flush=True)
                keep(f"relay_cpu_us_per_request_c{c}", fast_through["server_cpu_us_per_op"])
                keep(f"relay_added_p50_ms_c{c}", round(fast_through["p50_ms"] - fast_direct["p50_ms"], 3))
                keep(f"relay_added_p99_ms_c{c}", round(fast_through["p99_ms"] - fast_direct["p99_ms"], 3))
                keep(f"fast_upstream_cpu_us_per_request_c{c}", fast_direct["server_cpu_us_per_op"])
            print(f"round {round_no + 1} of {a.rounds} done", file=sys.stderr, flush=True)

        print("\nmedians over %d rounds (clawgate release, OpenClaw 2026.9.6 on the same machine)" % a.rounds)
        for name, values in results.items():
            vals = [v for v in values if v is not None]
            med = statistics.median(vals) if vals else None
            print(f"  {name:45s} {med}   (runs: {vals})")
    finally:
        cg.stop()
        upstream.stop()
        if front:
            front.stop()
        if fast_proc:
            fast_proc.terminate()
            fast_proc.wait(10)


if __name__ == "__main__":
    main()
