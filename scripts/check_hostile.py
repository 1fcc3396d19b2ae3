"""Hostile input, load and slow clients against a running `nadir serve` (127.0.0.1 only).

1. The corpus (tests/hostile/cases.json, plus large bodies made here: a 100,000-vertex polygon,
   a 12000 x 12000 PNG bomb, a 15 MB text query, 15 MB label fields): every answer is a 2xx or a
   4xx/503 with a JSON `error` message; never a 5xx, never a dropped connection.
2. Load: N mixed requests (search by text and by example, similar, patch, thumbnail, info) at
   concurrency C: every answer 200; requests/s, p50 and p99 latency are printed.
3. A slow-client flood: S connections that send half a request's headers and stop; /health must
   still answer within 3 s, and the flood's connections must be closed by the server.
4. The server's peak RSS (VmHWM) stays below --max-rss-mb.

Usage: python check_hostile.py --port P --pid PID [--requests N] [--concurrency C]
       [--slow S] [--max-rss-mb M]. Standard library only."""

import argparse
import base64
import http.client
import json
import socket
import statistics
import struct
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def request(port, method, path, body=None, headers=None, timeout=60):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Host": "127.0.0.1"}
    if body is not None and not isinstance(body, (bytes, bytearray)):
        body = json.dumps(body).encode()
        h["Content-Type"] = "application/json"
    h.update(headers or {})
    conn.request(method, path, body=body, headers=h)
    r = conn.getresponse()
    data = r.read()
    conn.close()
    return r.status, r.getheader("Content-Type") or "", data


def png_bomb(side):
    """A side x side all-zero greyscale PNG: a few hundred kB that decode to side^2 bytes."""
    raw = zlib.compress(b"".join(b"\x00" + bytes(side) for _ in range(side)), 9)

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def big_cases(patch_id):
    n = 100_000
    ring = [[(i / n) * 0.9, 0.1 * ((i * 7919) % 97) / 97] for i in range(n)] + [[0.0, 0.0]]
    ring[0] = [0.0, 0.0]
    poly = {"type": "Polygon", "coordinates": [ring]}
    bomb = base64.b64encode(png_bomb(12000)).decode()
    text = "river " * 2_500_000
    return [
        ("polygon of 100,000 vertices", "POST", "/api/search", {"text": "river", "geofilter": {"geojson": poly}}),
        ("same on /api/labels/import", "POST", "/api/labels/import", {"class": "x", "geojson": poly}),
        ("PNG bomb 12000x12000", "POST", "/api/search", {"positives": [{"image_base64": bomb}]}),
        ("15 MB text query", "POST", "/api/search", {"text": text}),
        ("15 MB label query field", "POST", "/api/labels",
         {"patch_id": patch_id, "class": "x", "positive": True, "query": {"t": text}}),
    ]


def check_corpus(port, patch_id):
    cases = json.loads((ROOT / "tests/hostile/cases.json").read_text())
    out = []
    for c in cases:
        body = c.get("body")
        if "raw" in c:
            body = c["raw"].encode("utf-8", "surrogateescape")
        path = c["path"].replace("{patch}", patch_id)
        out.append((c["name"], c["method"], path, body, c.get("headers")))
    out += [(name, m, p, b, None) for name, m, p, b in big_cases(patch_id)]
    bad = []
    for name, method, path, body, headers in out:
        try:
            status, ctype, data = request(port, method, path, body, headers)
        except Exception as e:  # a dropped connection is a failure too
            bad.append(f"{name}: no answer ({e})")
            continue
        if status >= 500 and status != 503:
            bad.append(f"{name}: {status} {data[:200]!r}")
        elif status >= 400:
            try:
                msg = json.loads(data).get("error")
            except ValueError:
                msg = None
            if not msg or "json" not in ctype:
                bad.append(f"{name}: {status} without a JSON error message: {data[:200]!r}")
    assert not bad, "hostile corpus:\n" + "\n".join(bad)
    print(f"hostile corpus: {len(out)} cases, no 5xx (503 only for time or decode limits), every 4xx with a JSON message")


def check_load(port, patch_id, n, concurrency):
    mix = [
        ("POST", "/api/search", {"text": "a river with a bridge", "k": 10}),
        ("POST", "/api/search", {"positives": [{"patch": patch_id}], "k": 10}),
        ("GET", f"/api/similar?patch={patch_id}&k=10", None),
        ("GET", f"/api/patches/{patch_id}", None),
        ("GET", f"/api/patches/{patch_id}/thumbnail.jpg", None),
        ("GET", "/api/info", None),
    ]
    lat, errors = [], []

    def one(i):
        method, path, body = mix[i % len(mix)]
        t = time.perf_counter()
        try:
            status, _, _ = request(port, method, path, body)
        except Exception as e:
            errors.append(str(e))
            return
        lat.append(time.perf_counter() - t)
        if status != 200:
            errors.append(f"{method} {path}: {status}")

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(n)))
    secs = time.perf_counter() - start
    assert not errors, f"{len(errors)} failed requests under load: {errors[:5]}"
    lat.sort()
    p50, p99 = statistics.median(lat), lat[int(0.99 * (len(lat) - 1))]
    print(f"load: {n} requests at concurrency {concurrency}: {n / secs:.0f} req/s, "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms, 0 errors")


def check_slow_flood(port, n):
    try:  # room for n sockets in this process
        import resource
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, n + 256)), hard))
    except (ImportError, ValueError, OSError):
        pass
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=5)
            s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            socks.append(s)
        except OSError:
            break  # refused or reset at the cap: the server protects itself
    t = time.perf_counter()
    status, _, _ = request(port, "GET", "/health", timeout=10)
    took = time.perf_counter() - t
    assert status == 200 and took < 3, f"/health during a flood of {len(socks)} slow clients: {status} in {took:.1f} s"
    # The flood's connections are cut by the header timeout (or evicted to make room).
    deadline = time.time() + 30
    open_ = list(socks)
    while open_ and time.time() < deadline:
        still = []
        for s in open_:
            s.settimeout(0.05)
            try:
                if s.recv(1) == b"":
                    s.close()
                    continue
                s.close()  # an error response, then the close
            except socket.timeout:
                still.append(s)
            except OSError:
                s.close()
        open_ = still
    for s in open_:
        s.close()
    assert not open_, f"{len(open_)} of {len(socks)} slow connections still open after 30 s"
    print(f"slow clients: {len(socks)} half-sent requests; /health answered in {took * 1000:.0f} ms; every one closed by the server")


def peak_rss_mb(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--pid", type=int, required=True)
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--slow", type=int, default=2000)
    ap.add_argument("--max-rss-mb", type=float, default=2048)
    a = ap.parse_args()
    status, _, data = request(a.port, "GET", "/api/patches?limit=1")
    assert status == 200, data
    patch_id = json.loads(data)["patches"][0]["patch_id"]
    check_corpus(a.port, patch_id)
    check_load(a.port, patch_id, a.requests, a.concurrency)
    check_slow_flood(a.port, a.slow)
    status, _, _ = request(a.port, "GET", "/health")
    assert status == 200
    rss = peak_rss_mb(a.pid)
    assert rss < a.max_rss_mb, f"peak RSS {rss:.0f} MB, bound {a.max_rss_mb:.0f} MB"
    print(f"peak RSS {rss:.0f} MB (bound {a.max_rss_mb:.0f} MB)")


if __name__ == "__main__":
    sys.exit(main())
