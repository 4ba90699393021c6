#!/usr/bin/env python3
"""Benchmark: `opsctl plan` of a procedure of 200 `kubernetes_scale` steps against the local
kube-apiserver (scripts/kube.sh), at `--parallelism 1` and `10`.

Starts a server (scripts/kube.sh start, in a temporary directory unless --dir names a running
one), creates N Deployments (0 replicas, so no pods) in namespace `bench`, writes a procedure of
N steps scaling each to 1 (a change), and times `opsctl plan`. API requests are counted from the
server's audit log (the lines the run added; opsctl's user agent), split into discovery and
target reads. The sum of single-read latencies is measured by timing N sequential GETs of the
Deployments (what opsctl reads for a `kubernetes_scale` of a Deployment) over one keep-alive connection (client side, like opsctl's reads), and from
the audit log's server-side timestamps of opsctl's own reads. Goal (issue 6): the plan at
parallelism 10 within 1.5x of (sum of single-read latencies) / 10.

    cargo build --release
    scripts/bench_kube.py [--opsctl PATH] [--n 200] [--repeat 5] [--dir DIR]
"""
import argparse
import base64
import datetime
import http.client
import json
import os
import re
import shutil
import ssl
import asyncio
import statistics
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBE_SH = os.path.join(ROOT, "scripts", "kube.sh")


class Api:
    """A keep-alive HTTPS connection to the server, as the admin."""

    def __init__(self, kubeconfig):
        text = open(kubeconfig).read()
        self.url = re.search(r"server: https://([^\s]+)", text).group(1)
        self.token = re.search(r"token: (\S+)", text).group(1)
        ca = base64.b64decode(re.search(r"certificate-authority-data: (\S+)", text).group(1))
        self.ctx = ssl.create_default_context(cadata=ca.decode())
        host, port = self.url.rsplit(":", 1)
        self.conn = http.client.HTTPSConnection(host, int(port), context=self.ctx)

    def call(self, method, path, body=None):
        headers = {"Authorization": f"Bearer {self.token}", "User-Agent": "bench_kube.py"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=headers)
        r = self.conn.getresponse()
        payload = r.read()
        return r.status, payload


class LatencyProxy:
    """A TCP proxy on 127.0.0.1 that delivers every chunk the client sends `delay` seconds
    after it arrived (order kept, chunks not serialised behind each other's delay): a network
    round trip of `delay` added to each request, whatever the number of requests in flight."""

    def __init__(self, target_port, delay):
        self.target_port, self.delay = target_port, delay
        self.loop = asyncio.new_event_loop()
        started = threading.Event()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(
                asyncio.start_server(self.handle, "127.0.0.1", 0))
            self.port = self.server.sockets[0].getsockname()[1]
            started.set()
            self.loop.run_forever()

        threading.Thread(target=run, daemon=True).start()
        started.wait()

    async def handle(self, creader, cwriter):
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self.target_port)
        queue = asyncio.Queue()

        async def upstream_in():
            while data := await creader.read(65536):
                await queue.put((self.loop.time() + self.delay, data))
            await queue.put((None, None))

        async def upstream_out():
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                await asyncio.sleep(max(0.0, due - self.loop.time()))
                swriter.write(data)
                await swriter.drain()
            swriter.close()

        async def downstream():
            while data := await sreader.read(65536):
                cwriter.write(data)
                await cwriter.drain()
            cwriter.close()

        await asyncio.gather(upstream_in(), upstream_out(), downstream(), return_exceptions=True)


def seed(api, n):
    status, _ = api.call("GET", "/api/v1/namespaces/bench")
    if status == 404:
        api.call("POST", "/api/v1/namespaces", {"metadata": {"name": "bench"}})
    for i in range(n):
        d = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": f"d{i}"},
            "spec": {
                "replicas": 0,
                "selector": {"matchLabels": {"app": f"d{i}"}},
                "template": {
                    "metadata": {"labels": {"app": f"d{i}"}},
                    "spec": {"containers": [{"name": "c", "image": "example.invalid/app:1"}]},
                },
            },
        }
        status, body = api.call("POST", "/apis/apps/v1/namespaces/bench/deployments", d)
        if status not in (201, 409):
            sys.exit(f"create deployment d{i}: {status} {body[:200]!r}")


def procedure(work, kubeconfig, n):
    lines = [f'provider "kubernetes" {{\n  config_path = "{kubeconfig}"\n}}\n']
    for i in range(n):
        lines.append(
            f'step "kubernetes_scale" "d{i}" {{\n  kind      = "Deployment"\n'
            f'  namespace = "bench"\n  name      = "d{i}"\n  replicas  = 1\n}}\n'
        )
    with open(os.path.join(work, "main.hcl"), "w") as f:
        f.write("".join(lines))


def single_reads(api, n):
    """Seconds of each of n sequential GETs of the Deployments (what opsctl's read of a
    `kubernetes_scale` target is; one connection)."""
    api.call("GET", "/apis/apps/v1/namespaces/bench/deployments/d0")  # connect
    out = []
    for i in range(n):
        t = time.perf_counter()
        status, _ = api.call("GET", f"/apis/apps/v1/namespaces/bench/deployments/d{i}")
        out.append(time.perf_counter() - t)
        if status != 200:
            sys.exit(f"GET deployment d{i}: {status}")
    return out


def ts(s):
    return datetime.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def audit_since(path, offset):
    with open(path) as f:
        f.seek(offset)
        events = [json.loads(line) for line in f if line.strip()]
    return [e for e in events if e.get("stage") == "ResponseComplete"]


def plan_once(opsctl, work, parallelism, audit):
    offset = os.path.getsize(audit)
    t = time.perf_counter()
    r = subprocess.run(
        [opsctl, "plan", "--detailed-exitcode", "--parallelism", str(parallelism)],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("OPSCTL_")},
    )
    wall = time.perf_counter() - t
    if r.returncode != 2:
        sys.exit(f"opsctl plan exited {r.returncode}: {r.stderr.decode()[-2000:]}")
    time.sleep(0.2)
    events = [e for e in audit_since(audit, offset) if e.get("userAgent", "").find("bench_kube") < 0]
    # A target read: a GET of one Deployment (or of its scale subresource).
    reads = [e for e in events if e.get("verb") == "get"
             and e.get("objectRef", {}).get("resource") == "deployments"
             and e.get("objectRef", {}).get("subresource", "scale") == "scale"]
    discovery = [e for e in events if e["requestURI"].rstrip("/") in ("/api", "/apis") or
                 re.fullmatch(r"/apis/[^/]+(/[^/]+)?", e["requestURI"].split("?")[0]) or
                 re.fullmatch(r"/api/v1", e["requestURI"].split("?")[0])]
    server_s = sum(ts(e["stageTimestamp"]) - ts(e["requestReceivedTimestamp"]) for e in reads)
    distinct = len({e["objectRef"]["name"] for e in reads})
    return wall, len(events), len(discovery), len(reads), distinct, server_s


def measure(opsctl, work, kubeconfig, audit, n, repeat):
    """Prints the single-read sum and the plan at parallelism 1 and 10; returns whether the
    goal was met."""
    api = Api(kubeconfig)
    procedure(work, kubeconfig, n)
    singles = [sum(single_reads(api, n)) for _ in range(repeat)]
    single_sum = statistics.median(singles)
    print(f"  sum of {n} single reads (sequential GETs of the Deployments, client side): "
          f"median {single_sum:.3f} s (min {min(singles):.3f}; {single_sum / n * 1000:.2f} ms each)")
    results = {}
    for par in (1, 10):
        runs = [plan_once(opsctl, work, par, audit) for _ in range(repeat)]
        wall = statistics.median(r[0] for r in runs)
        _, total, disc, reads, distinct, server_s = runs[-1]
        results[par] = wall
        print(f"  plan --parallelism {par:>2}: wall median {wall:.3f} s "
              f"(min {min(r[0] for r in runs):.3f}, max {max(r[0] for r in runs):.3f}); "
              f"requests {total} = {disc} discovery + {reads} target reads "
              f"({distinct} distinct targets) + {total - disc - reads} other; "
              f"server time of the reads {server_s:.3f} s")
    goal = 1.5 * single_sum / 10
    met = results[10] <= goal
    print(f"  goal: parallelism 10 within 1.5 x sum/10 = {goal:.3f} s: {results[10]:.3f} s, "
          f"{'met' if met else 'MISSED'} ({results[10] / (single_sum / 10):.2f} x sum/10); "
          f"speed-up 1 -> 10: {results[1] / results[10]:.2f} x")
    return met


def main():
    ap = argparse.ArgumentParser()
    target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/opsctl/target"))
    ap.add_argument("--opsctl", default=os.path.join(target, "release", "opsctl"))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--latency-ms", type=float, default=20.0,
                    help="round trip added by a proxy in the second measurement (0: none)")
    ap.add_argument("--dir", help="a server directory already started with scripts/kube.sh start")
    args = ap.parse_args()
    if not os.path.exists(args.opsctl):
        sys.exit(f"{args.opsctl} not found: build with `cargo build --release` first")

    own = args.dir is None
    sdir = args.dir or tempfile.mkdtemp(prefix="opsctl-bench-kube-")
    work = tempfile.mkdtemp(prefix="opsctl-bench-kube-work-")
    try:
        if own:
            # A start can fail on a loaded machine (a port taken between probing and
            # binding): once more with fresh ports.
            if subprocess.run(["bash", KUBE_SH, "start", sdir], stdout=subprocess.DEVNULL).returncode:
                subprocess.run(["bash", KUBE_SH, "stop", sdir], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
                os.remove(os.path.join(sdir, "ports.env"))
                subprocess.run(["bash", KUBE_SH, "start", sdir], check=True,
                               stdout=subprocess.DEVNULL)
        kubeconfig = os.path.join(sdir, "kubeconfig")
        audit = os.path.join(sdir, "audit.log")
        seed(Api(kubeconfig), args.n)
        print(f"opsctl: {args.opsctl}; {args.n} kubernetes_scale steps (one Deployment each); "
              f"{os.cpu_count()} CPUs shared by client and server")
        print("local server, no added latency:")
        measure(args.opsctl, work, kubeconfig, audit, args.n, args.repeat)
        if args.latency_ms > 0:
            api = Api(kubeconfig)
            port = int(api.url.rsplit(":", 1)[1])
            proxy = LatencyProxy(port, args.latency_ms / 1000)
            far = os.path.join(work, "kubeconfig-far")
            with open(kubeconfig) as f, open(far, "w") as g:
                g.write(f.read().replace(f"127.0.0.1:{port}", f"127.0.0.1:{proxy.port}"))
            print(f"through a proxy adding {args.latency_ms:g} ms per request (a remote server):")
            measure(args.opsctl, work, far, audit, args.n, args.repeat)
    finally:
        if own:
            subprocess.run(["bash", KUBE_SH, "stop", sdir], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            shutil.rmtree(sdir, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
