#!/usr/bin/env python3
"""hnswlib on the data set of `nadir bench query --dump DIR`, for comparison with Nadir's own HNSW.

Reads DIR/base.npy, queries.npy, lonlat.npy, bboxes.npy, gt.npy and meta.json (written by the
Rust benchmark: same vectors, same queries, same bbox filters, its brute-force ground truth), builds
an hnswlib index (inner product, M=16, ef_construction=200, 2 build threads) and prints markdown
tables shaped like the Rust ones: build time and memory, then per ef (no filter) and per bbox
filter: p50/p99 latency of single queries, QPS on one thread, recall@10.

Latencies are of single `knn_query` calls from Python (their ~10-20 us overhead included); the
"batch QPS" column is one call over all queries on one thread, without that overhead. Filtered
queries pass a Python callable to hnswlib, called for every visited node: slower than a native
filter, so they run on a subset of the queries.

    pip install hnswlib numpy
    nadir bench query --n 100000 --dump /tmp/nadir-ann
    python3 scripts/bench_ann_hnswlib.py /tmp/nadir-ann [--save /tmp/h.bin | --load /tmp/h.bin]

hnswlib allocates with malloc, which gets no transparent huge pages where the kernel's THP mode is
`madvise` (Nadir's embeddings ask for them). `GLIBC_TUNABLES=glibc.malloc.hugetlb=1` makes glibc
ask too, for a like-for-like comparison; the "huge pages" row shows what the process got.
"""

import argparse
import json
import os
import time

import hnswlib
import numpy as np


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def huge_page_bytes():
    try:
        with open("/proc/self/smaps_rollup") as f:
            for line in f:
                if line.startswith("AnonHugePages:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def ef_for(k, share):
    """The ef nadir's engine uses for a graph walk (the same at every filter `share`)."""
    return max(2 * k, 64)


def recall(found, truth):
    truth = [t for t in truth if t >= 0]
    if not truth:
        return 1.0
    return len(set(truth) & set(int(f) for f in found)) / len(truth)


def timed_queries(index, queries, k, flt=None):
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        try:
            labels, _ = index.knn_query(q[None, :], k=k, num_threads=1, filter=flt(len(found)) if flt else None)
            labels = labels[0]
        except RuntimeError:  # fewer than k found
            labels = []
        lat.append(time.perf_counter() - t)
        found.append(labels)
    lat = np.array(lat)
    return lat, found


def row(lat):
    return np.percentile(lat, 50) * 1e3, np.percentile(lat, 99) * 1e3, len(lat) / lat.sum()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dump", help="folder written by `nadir bench query --dump`")
    ap.add_argument("--m", type=int, default=16)
    ap.add_argument("--ef-construction", type=int, default=200)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="build threads")
    ap.add_argument("--filtered-queries", type=int, default=200, help="queries per filter")
    ap.add_argument("--save", help="save the index here (its size is reported)")
    ap.add_argument("--load", help="load an index saved with --save instead of building one")
    a = ap.parse_args()

    meta = json.load(open(os.path.join(a.dump, "meta.json")))
    k, efs, shares = meta["k"], meta["efs"], meta["selectivities"]
    base = np.load(os.path.join(a.dump, "base.npy"), mmap_mode="r")
    queries = np.load(os.path.join(a.dump, "queries.npy"))
    lonlat = np.load(os.path.join(a.dump, "lonlat.npy"))
    bboxes = np.load(os.path.join(a.dump, "bboxes.npy"))
    gt = np.load(os.path.join(a.dump, "gt.npy"))
    n, dim = base.shape

    rss0 = rss_bytes()
    index = hnswlib.Index(space="ip", dim=dim)
    t = time.perf_counter()
    if a.load:
        index.load_index(a.load, max_elements=n)
    else:
        index.init_index(max_elements=n, M=a.m, ef_construction=a.ef_construction, random_seed=100)
        index.set_num_threads(a.threads)
        chunk = 100_000
        for start in range(0, n, chunk):
            index.add_items(np.ascontiguousarray(base[start : start + chunk]), np.arange(start, min(start + chunk, n)))
    build = time.perf_counter() - t
    rss = rss_bytes() - rss0
    index.set_num_threads(1)

    with open("/proc/loadavg") as f:
        load = f.read().strip()
    print(f"\n## hnswlib {hnswlib.__version__ if hasattr(hnswlib, '__version__') else ''}: n={n}, dim={dim}, "
          f"queries={len(queries)}, k={k}, M={a.m}, ef_construction={a.ef_construction}, "
          f"{a.threads} build threads, load {load}\n")
    print("| build and memory | value |\n|---|---:|")
    print(f"| {'load of a saved index' if a.load else 'HNSW build'} | {build:.1f} s |")
    print(f"| RSS of the index (vectors + graph), per patch | {rss / n:.0f} B |")
    print(f"| in transparent huge pages (whole process) | {huge_page_bytes() >> 20} MiB |")
    if a.save:
        index.save_index(a.save)
        print(f"| saved index on disk, per patch | {os.path.getsize(a.save) / n:.0f} B |")

    print(f"\nThe raw graph (hnswlib `knn_query`, k={k}, no filter, single thread):\n")
    print("| ef | p50 ms | p99 ms | QPS | batch QPS | recall@10 |\n|---:|---:|---:|---:|---:|---:|")
    for ef in efs:
        index.set_ef(ef)
        lat, found = timed_queries(index, queries, k)
        t = time.perf_counter()
        index.knn_query(queries, k=k, num_threads=1)
        batch_qps = len(queries) / (time.perf_counter() - t)
        rec = np.mean([recall(f, gt[j, 0]) for j, f in enumerate(found)])
        p50, p99, qps = row(lat)
        print(f"| {ef} | {p50:.3f} | {p99:.3f} | {qps:.0f} | {batch_qps:.0f} | {rec:.4f} |", flush=True)

    m = min(a.filtered_queries, len(queries))
    print(f"\nFiltered (hnswlib `filter=` callable, ef as nadir's engine picks, {m} queries):\n")
    print("| filter | kept | ef | p50 ms | p99 ms | QPS | recall@10 |\n|---|---:|---:|---:|---:|---:|---:|")
    for c, share in enumerate(shares):
        masks = []
        for j in range(m):
            w, s, e, nn = bboxes[j, c]
            x, y = lonlat[:, 0], lonlat[:, 1]
            masks.append((x > w) & (x < e) & (y > s) & (y < nn))
        kept = np.mean([mk.mean() for mk in masks])
        ef = ef_for(k, share)
        index.set_ef(ef)

        def flt(j):
            mk = masks[j]
            return lambda i: bool(mk[i])

        lat, found = timed_queries(index, queries[:m], k, flt)
        rec = np.mean([recall(f, gt[j, c + 1]) for j, f in enumerate(found)])
        p50, p99, qps = row(lat)
        print(f"| bbox {share * 100:g}% | {kept * 100:.3f}% | {ef} | {p50:.2f} | {p99:.2f} | {qps:.0f} | {rec:.4f} |",
              flush=True)


if __name__ == "__main__":
    main()
