#!/usr/bin/env python3
"""Load test of the secret heap in a real service (issue 21, spec §3.4).

An aiohttp (PyPI) web service on loopback whose handler hands each request
to a pool of worker threads (a synchronous dependency, as FastAPI's sync
dependencies or Django's sync views run); the dependency signs the request
body with a key inside secret.do(). Concurrent clients (aiohttp's client)
send requests and check every signature. Passes if no request fails, none
hangs (every request answered in time), the secret heap's bytes in use
return to their level before the load, and nothing was exhausted.

    python3 scripts/load_service.py                  # 64 workers, 100
                                                     # clients, 10,000 reqs
    python3 scripts/load_service.py --memlock 8M --user rsload
        # the same as a non-root user under RLIMIT_MEMLOCK 8 MiB
        # (prlimit; the user is created if missing)
    python3 scripts/load_service.py --heap 6M ...    # -X secret_heap_size

Needs the installed experiment interpreter; makes a venv of it with aiohttp
(scripts/requirements-load.txt) under cpython-build/venv/load. Prints one
JSON report; exit status 0 if it passed. tests/test_heap_load.py runs a
small version (about 10 s).
"""

import argparse
import json
import os
import pwd
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = os.path.join(ROOT, "cpython-build", "install", "experiment",
                          "bin", "python3")
VENV = os.path.join(ROOT, "cpython-build", "venv", "load")
REQUIREMENTS = os.path.join(ROOT, "scripts", "requirements-load.txt")

SERVER = r'''
import asyncio, concurrent.futures, gc, hashlib, hmac, json, os, sys
import threading
import secret
from aiohttp import web

WORKERS = int(sys.argv[1])
KEY_PATH = sys.argv[2]

def sign(body):
    # The synchronous dependency: the key is read, and used, in secret mode.
    def work():
        with open(KEY_PATH, "rb") as f:
            key = f.read()
        return hmac.new(key, body, hashlib.sha256).hexdigest()
    return secret.do(work)

pool = concurrent.futures.ThreadPoolExecutor(WORKERS)

async def handle(request):
    body = await request.read()
    digest = await asyncio.get_running_loop().run_in_executor(
        pool, sign, body)
    return web.Response(text=digest)

async def heap(request):
    gc.collect()
    info = secret.heap_info()
    info["threads"] = threading.active_count()
    info["vmlck_kib"] = info["vmrss_kib"] = 0
    for line in open("/proc/self/status"):
        if line.startswith("VmLck:"):
            info["vmlck_kib"] = int(line.split()[1])
        elif line.startswith("VmRSS:"):
            info["vmrss_kib"] = int(line.split()[1])
    info["protections"] = secret.protections()
    return web.json_response(info)

async def main():
    app = web.Application()
    app.router.add_post("/sign", handle)
    app.router.add_get("/heap", heap)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    print(port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
'''

CLIENT = r'''
import asyncio, hashlib, hmac, json, os, sys, time
import aiohttp

PORT, CLIENTS, REQUESTS, KEY_PATH, TIMEOUT = sys.argv[1:6]
CLIENTS, REQUESTS, TIMEOUT = int(CLIENTS), int(REQUESTS), float(TIMEOUT)
key = open(KEY_PATH, "rb").read()
url = "http://127.0.0.1:%s" % PORT

async def main():
    errors = []
    done = 0
    latencies = []
    queue = asyncio.Queue()
    for i in range(REQUESTS):
        queue.put_nowait(i)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    async with aiohttp.ClientSession(
            timeout=timeout,
            connector=aiohttp.TCPConnector(limit=CLIENTS)) as s:
        # Warm-up (not counted): lazily made runtime objects (caches,
        # interned names) are made by the first requests, some in secret
        # mode; the baseline is taken after it.
        async def warm():
            async with s.post(url + "/sign", data=b"warm-up") as r:
                await r.read()
        for _ in range(2):
            await asyncio.gather(*(warm() for _ in range(CLIENTS)))
        async with s.get(url + "/heap") as r:
            before = await r.json()

        async def client():
            nonlocal done
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                body = os.urandom(64 + i % 512)
                t0 = time.monotonic()
                try:
                    async with s.post(url + "/sign", data=body) as r:
                        text = await r.text()
                        if r.status != 200:
                            errors.append("status %d: %s" % (r.status,
                                                             text[:200]))
                        elif text != hmac.new(key, body,
                                              hashlib.sha256).hexdigest():
                            errors.append("wrong signature")
                        else:
                            done += 1
                except Exception as e:      # timeout (a hang), reset...
                    errors.append(repr(e))
                latencies.append(time.monotonic() - t0)

        t0 = time.monotonic()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))
        elapsed = time.monotonic() - t0
        async with s.get(url + "/heap") as r:
            after = await r.json()
    latencies.sort()
    print(json.dumps(dict(
        done=done, errors=len(errors), first_errors=errors[:5],
        elapsed=elapsed, rps=REQUESTS / elapsed,
        p50=latencies[len(latencies) // 2],
        p99=latencies[int(len(latencies) * 0.99)],
        max=latencies[-1], before=before, after=after)))

asyncio.run(main())
'''


def ensure_venv():
    py = os.path.join(VENV, "bin", "python3")
    stamp = os.path.join(VENV, "requirements.stamp")
    want = open(REQUIREMENTS).read()
    if os.path.exists(stamp) and open(stamp).read() == want:
        return py
    subprocess.run([EXPERIMENT, "-m", "venv", "--clear", VENV], check=True)
    r = subprocess.run([py, "-m", "pip", "install", "-q",
                        "--only-binary=:all:", "-r", REQUIREMENTS],
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit("pip failed:\n" + r.stdout + r.stderr)
    with open(stamp, "w") as f:
        f.write(want)
    return py


def ensure_user(name):
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home",
                        "--shell", "/usr/sbin/nologin", name], check=True)


def parse_size(text):
    units = {"K": 10, "M": 20, "G": 30}
    if text[-1].upper() in units:
        return int(text[:-1]) << units[text[-1].upper()]
    return int(text)


def run(args):
    py = ensure_venv()
    workdir = os.path.join(ROOT, "cpython-build", "work", "load")
    os.makedirs(workdir, exist_ok=True)
    os.chmod(workdir, 0o755)
    key_path = os.path.join(workdir, "key")
    with open(key_path, "wb") as f:     # the secret, made at run time
        f.write(os.urandom(32))
    os.chmod(key_path, 0o644)
    server_path = os.path.join(workdir, "server.py")
    with open(server_path, "w") as f:
        f.write(SERVER)
    cmd = [py]
    if args.heap:
        cmd += ["-X", "secret_heap_size=" + args.heap]
    if args.require_lock:
        cmd += ["-X", "secret_require_lock"]
    cmd += [server_path, str(args.workers), key_path]
    if args.memlock:
        n = parse_size(args.memlock)
        cmd = ["prlimit", "--memlock=%d:%d" % (n, n), "--"] + cmd
    if args.user:
        ensure_user(args.user)
        cmd = ["runuser", "-u", args.user, "--"] + cmd
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        port = server.stdout.readline().strip()
        if not port:
            raise SystemExit("server failed: " + server.stderr.read())
        t0 = time.monotonic()
        c = subprocess.run([py, "-c", CLIENT, port, str(args.clients),
                            str(args.requests), key_path,
                            str(args.timeout)],
                           capture_output=True, text=True,
                           timeout=args.deadline)
        wall = time.monotonic() - t0
        if c.returncode != 0:
            raise SystemExit("client failed: " + c.stderr)
        report = json.loads(c.stdout)
    finally:
        server.terminate()
        try:
            _, err = server.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate()
    b, a = report["before"], report["after"]
    report.update(
        wall=wall, server_stderr=err[-2000:],
        settings=dict(workers=args.workers, clients=args.clients,
                      requests=args.requests, heap=args.heap,
                      memlock=args.memlock, user=args.user,
                      require_lock=args.require_lock),
        live_bytes_growth=a["live_bytes"] - b["live_bytes"],
        live_blocks_growth=a["live_blocks"] - b["live_blocks"])
    # Lazily made runtime objects (caches, identifiers) may be born in
    # secret mode: a small, bounded growth, never one per request.
    report["passed"] = (report["errors"] == 0
                        and report["done"] == args.requests
                        and a["exhausted"] == 0
                        and report["live_blocks_growth"] < 500
                        and report["live_bytes_growth"] < (256 << 10))
    return report


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workers", type=int, default=64)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--requests", type=int, default=10000)
    ap.add_argument("--heap", help="-X secret_heap_size (default: 1G)")
    ap.add_argument("--require-lock", action="store_true",
                    help="-X secret_require_lock")
    ap.add_argument("--memlock", help="RLIMIT_MEMLOCK of the server "
                    "(prlimit), e.g. 8M")
    ap.add_argument("--user", help="run the server as this user "
                    "(created if missing)")
    ap.add_argument("--timeout", type=float, default=60,
                    help="a request not answered in this many seconds "
                    "is a hang")
    ap.add_argument("--deadline", type=float, default=1800)
    args = ap.parse_args()
    report = run(args)
    print(json.dumps(report, indent=1))
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
