"""Top-20 retrieval latency and throughput against gallery size: exact numpy (Gallery.search) vs
FAISS exact (flat float32, flat float16) vs FAISS approximate (IVF, HNSW; recall@20 against exact)
vs Milvus Lite (FLAT, embedded), single queries and batches of 32.

Synthetic vectors with the bundled model's embedding dim and similarity weights: the gallery holds
`size` embeddings drawn around `size / 100` cluster centres (centres N(0, 1), items centre +
N(0, --spread); catalogs cluster by category and style); each query is a perturbed copy
(+ N(0, 0.1)) of a planted gallery item (its "true match"), so `planted@20` (the planted item in the
top 20) checks that every method finds it. --spread 0 gives isotropic N(0, 1) items (no clusters:
the worst case for approximate indexes).
Ranking policy "any" (pure top-20 by the similarity network; the category policy is tested in
tests/test_retrieval.py).

    .venv/bin/python benchmarks/retrieval_scale.py [--sizes 10000,100000,1000000] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from df2infer.latency import stats_ms
from df2infer.retrieval import Gallery, RankingPolicy, Similarity

POLICY = RankingPolicy("any", 0.0)
K = 20


def loadavg() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def make_data(sim: Similarity, size: int, n_queries: int, spread: float, seed: int = 0, dtype: str = "float32"):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 1, (max(1, size // 100), sim.dim)).astype(np.float32)
    g = Gallery(sim, dtype=dtype, policy=POLICY, capacity=size)
    planted = rng.choice(size, n_queries, replace=False)
    step = 100_000
    queries = np.empty((n_queries, sim.dim), np.float32)
    for s in range(0, size, step):
        n = min(step, size - s)
        if spread > 0:
            emb = centres[rng.integers(0, len(centres), n)] + rng.normal(0, spread, (n, sim.dim)).astype(np.float32)
        else:
            emb = rng.normal(0, 1, (n, sim.dim)).astype(np.float32)
        mine = (planted >= s) & (planted < s + n)
        queries[mine] = emb[planted[mine] - s] + rng.normal(0, 0.1, (int(mine.sum()), sim.dim)).astype(np.float32)
        g.add_items(None, emb, np.zeros((n, 4)), rng.integers(1, 14, n), np.ones(n))
    return g, queries, planted


def time_search(fn, queries: np.ndarray, batch: int, min_queries: int, budget_s: float = 30.0) -> dict:
    """ms per query and queries/s, over min_queries queries (after one warm-up call), or fewer
    (at least 3 calls) when they take longer than budget_s."""
    fn(queries[:batch])
    ids_all = []
    t = []
    n = 0
    i = 0
    while n < min_queries and not (len(t) >= 3 and sum(t) > budget_s):
        q = queries[i : i + batch] if i + batch <= len(queries) else queries[:batch]
        i = (i + batch) % len(queries)
        t0 = time.perf_counter()
        ids = fn(q)
        t.append(time.perf_counter() - t0)
        ids_all.append(ids)
        n += len(q)
    per_call = np.array(t)
    st = stats_ms(t, (50, 90))
    return {
        "batch": batch,
        "calls": len(t),
        "queries": n,
        "ms_per_query": 1000 * per_call.sum() / n,
        "ms_per_call_p50": st["p50"],
        "ms_per_call_p90": st["p90"],
        "queries_per_s": n / per_call.sum(),
    }


def _scan(g: Gallery, scan: str, q: np.ndarray) -> np.ndarray:
    g.scan = scan
    return g.search_ids(q, K, policy=POLICY)[0]


def time_interleaved(fns: dict, queries: np.ndarray, batch: int, rounds: int) -> dict:
    """ms per query of each function, measured in turns on the same query batches (round r: every function
    once, in rotated order), so a busy machine's load falls on all of them alike; one warm-up call each."""
    names = list(fns)
    for f in fns.values():
        f(queries[:batch])
    t: dict = {n: [] for n in names}
    for r in range(rounds):
        i = (r * batch) % max(1, len(queries) - batch + 1)
        q = queries[i : i + batch]
        for n in names[r % len(names) :] + names[: r % len(names)]:
            t0 = time.perf_counter()
            fns[n](q)
            t[n].append((time.perf_counter() - t0) / len(q))
    return {
        n: {
            "batch": batch,
            "calls": rounds,
            "queries": rounds * batch,
            "ms_per_query": 1000 * float(np.mean(v)),
            "ms_per_query_p50": 1000 * float(np.median(v)),
            "queries_per_s": 1.0 / float(np.mean(v)),
        }
        for n, v in t.items()
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--queries", type=int, default=128, help="distinct queries (recall and planted@20 over these)")
    ap.add_argument("--min-queries", type=int, default=64, help="queries timed per method and batch size")
    ap.add_argument("--hnsw-max", type=int, default=100_000, help="largest gallery to build HNSW for (build time)")
    ap.add_argument("--milvus-max", type=int, default=100_000, help="largest gallery to load into Milvus Lite")
    ap.add_argument("--spread", type=float, default=0.5, help="item spread around cluster centres (0: isotropic)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="BLAS and FAISS (OpenMP) threads; 0: the libraries' defaults. One thread measured faster on "
        "this shared 2-core machine (other jobs keep the cores busy; spinning threads wait for them)",
    )
    ap.add_argument(
        "--methods",
        default="numpy,faiss,milvus",
        help="any of numpy, faiss, milvus, scans (default: numpy,faiss,milvus). scans: Gallery.search with the int8 scan "
        "(exact, float64 rerank) and the float32 scan, and the bare product q @ E.T, timed in turns in one run",
    )
    ap.add_argument("--rounds", type=int, default=8, help="scans: rounds of turns per batch size")
    ap.add_argument("--faiss-kinds", default="flat,flat16,ivf,hnsw", help="FAISS kinds to measure")
    ap.add_argument("--ivf-nprobe", default="32", help="IVF lists probed, comma-separated values (one row each)")
    ap.add_argument("--name", default="retrieval_scale", help="result file stem (default: %(default)s)")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args(argv)

    import df2infer
    from df2infer.api import DEFAULT_MODEL

    sim = df2infer.load(DEFAULT_MODEL, device="cpu").similarity
    try:
        import faiss  # type: ignore[import-untyped]

        from df2infer.retrieval.faiss_index import FaissIndex, recall_at_k
    except ImportError:
        faiss = None
    if args.threads > 0:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        if faiss is not None:
            faiss.omp_set_num_threads(args.threads)
    machine = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "faiss": getattr(faiss, "__version__", None),
        "loadavg_1m_start": loadavg(),
        "faiss_omp_threads": faiss.omp_get_max_threads() if faiss else None,
        "threads_arg": args.threads,
    }
    rows = []
    notes = [
        "the load average at start and end is in the header: other jobs on the CPU slow every method; compare rows of one run",
        f"embedding dim {sim.dim} (bundled model), similarity weights of the bundled model; k = {K}; policy 'any'",
        f"items: {'isotropic N(0, 1)' if args.spread <= 0 else f'size/100 cluster centres N(0, 1) + N(0, {args.spread})'}; "
        "queries: planted item + N(0, 0.1)",
    ]

    def record(size, method, fn, exact_ids=None, extra=None):
        ids = np.concatenate([fn(args_q[i : i + 32]) for i in range(0, len(args_q), 32)])
        r = {"size": size, "method": method, **(extra or {})}
        r["planted_at_20"] = float(np.mean([p in row for p, row in zip(planted, ids)]))
        r["recall_at_20"] = 1.0 if exact_ids is None else recall_at_k(ids, exact_ids)
        r["single"] = time_search(fn, args_q, 1, args.min_queries)
        r["batch32"] = time_search(fn, args_q, 32, max(args.min_queries, 128))
        rows.append(r)
        print(
            f"{size:>8} {method:<22} single {r['single']['ms_per_query']:8.2f} ms/q  batch32 {r['batch32']['ms_per_query']:7.2f} ms/q"
            f"  recall@20 {r['recall_at_20']:.3f}  planted@20 {r['planted_at_20']:.3f}"
            + (f"  build {r['build_s']:.1f} s" if "build_s" in r else ""),
            flush=True,
        )
        return ids

    for size in [int(s) for s in args.sizes.split(",")]:
        t0 = time.perf_counter()
        g, args_q, planted = make_data(sim, size, args.queries, args.spread)
        print(f"gallery {size}: made in {time.perf_counter() - t0:.1f} s", flush=True)
        # the floor of any exact scan on this machine, in the same run: the bare matrix product, no top-k
        emb = g.embeddings
        methods = args.methods.split(",")
        if methods != ["scans"]:  # (scans times the bare product itself, in turns)
            rows.append(
                {
                    "size": size,
                    "method": "bare numpy q @ E.T (floor, no top-k)",
                    "planted_at_20": None,
                    "recall_at_20": None,
                    "single": time_search(lambda q, emb=emb: q @ emb.T, args_q, 1, args.min_queries),
                    "batch32": time_search(lambda q, emb=emb: q @ emb.T, args_q, 32, max(args.min_queries, 128)),
                }
            )
            print(
                f"{size:>8} bare q @ E.T            single {rows[-1]['single']['ms_per_query']:8.2f} ms/q  "
                f"batch32 {rows[-1]['batch32']['ms_per_query']:7.2f} ms/q",
                flush=True,
            )
        if "scans" in methods:
            t1 = time.perf_counter()
            g.scan = "int8"
            g.search_ids(args_q[:1], K, policy=POLICY)  # packs the int8 codes (once per gallery; kept across searches)
            build = time.perf_counter() - t1
            fns = {
                "bare numpy q @ E.T (floor, no top-k)": lambda q, emb=emb: q @ emb.T,
                "Gallery.search float32 scan (exact_topk)": lambda q, g=g: _scan(g, "float32", q),
                "Gallery.search int8 scan + float64 rerank (exact)": lambda q, g=g: _scan(g, "int8", q),
            }
            ref = np.concatenate([_scan(g, "float32", args_q[i : i + 32]) for i in range(0, len(args_q), 32)])
            got = np.concatenate([_scan(g, "int8", args_q[i : i + 32]) for i in range(0, len(args_q), 32)])
            single = time_interleaved(fns, args_q, 1, args.rounds * 4)
            batched = time_interleaved(fns, args_q, 32, args.rounds)
            for name in fns:
                ids = got if "int8" in name else ref
                r = {"size": size, "method": name, "single": single[name], "batch32": batched[name], "interleaved": True}
                r["planted_at_20"] = None if "bare" in name else float(np.mean([p in row for p, row in zip(planted, ids)]))
                r["recall_at_20"] = None if "bare" in name else float(np.mean([len(set(a) & set(b)) / K for a, b in zip(ids, ref)]))
                if "int8" in name:
                    r["build_s"] = build
                    r["same_ids_as_float32_scan"] = float(np.mean(got == ref))
                rows.append(r)
                sq, bq = r["single"]["ms_per_query"], r["batch32"]["ms_per_query"]
                print(f"{size:>8} {name:<48} single {sq:8.2f} ms/q  batch32 {bq:7.2f} ms/q", flush=True)
            g.scan = "auto"
        if methods == ["scans"]:
            del g
            gc.collect()
            continue
        exact = (
            record(size, "numpy exact fp32", lambda q, g=g: g.search_ids(q, K, policy=POLICY)[0])
            if "numpy" in methods
            else np.concatenate([g.search_ids(args_q[i : i + 32], K, policy=POLICY)[0] for i in range(0, len(args_q), 32)])
        )
        if "numpy" in methods:
            g16 = Gallery(sim, dtype="float16", policy=POLICY, capacity=size)
            g16.add_items(None, g.embeddings, g.boxes, g.labels, g.scores)
            record(size, "numpy exact fp16", lambda q, g16=g16: g16.search_ids(q, K, policy=POLICY)[0], exact)
            del g16
            gc.collect()
        if faiss is not None and "faiss" in methods:
            wanted = args.faiss_kinds.split(",")
            kinds = [(k, {}) for k in ("flat", "flat16") if k in wanted]
            if "hnsw" in wanted and size <= args.hnsw_max:
                kinds.append(("hnsw", {"ef_search": 128}))
            for kind, kw in kinds + ([("ivf", {})] if "ivf" in wanted else []):
                t1 = time.perf_counter()
                idx = FaissIndex.build(g, kind, **kw)
                build = time.perf_counter() - t1
                for nprobe in [int(v) for v in args.ivf_nprobe.split(",")] if kind == "ivf" else [None]:
                    if nprobe is not None:
                        idx.set_search_params(nprobe=nprobe)
                    record(
                        size,
                        f"faiss {kind}" + (f" nprobe {nprobe}" if nprobe else ""),
                        lambda q, g=g, idx=idx: g.search_ids(q, K, policy=POLICY, index=idx)[0],
                        exact,
                        {"build_s": build, "params": dict(idx.params)},
                    )
                del idx
                gc.collect()
            if "hnsw" in wanted and size > args.hnsw_max:
                notes.append(f"HNSW not built at {size} (--hnsw-max {args.hnsw_max}: graph build time on 2 cores)")
        if "milvus" not in methods:
            pass
        elif size <= args.milvus_max:
            try:
                from df2infer.retrieval.vector_store import MilvusGallery
            except ImportError:
                MilvusGallery = None
            if MilvusGallery is not None:
                with tempfile.TemporaryDirectory() as d:
                    t1 = time.perf_counter()
                    mg = MilvusGallery.from_gallery(g, str(Path(d) / "g.db"))
                    build = time.perf_counter() - t1
                    record(size, "milvus-lite FLAT", lambda q, mg=mg: mg.search_ids(q, K, policy=POLICY)[0], exact, {"build_s": build})
                    mg.close()
        else:
            notes.append(f"Milvus Lite not loaded at {size} (--milvus-max {args.milvus_max}): see its load time at the smaller sizes")
        del g
        gc.collect()
    machine["loadavg_1m_end"] = loadavg()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "machine": machine,
        "k": K,
        "queries": args.queries,
        "notes": notes,
        "rows": rows,
        "command": "python benchmarks/retrieval_scale.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    (out / f"{args.name}.json").write_text(json.dumps(report, indent=1))
    lines = [
        "# Retrieval at scale: top-20, single query and batches of 32",
        "",
        f"Machine: {machine['cpu_count']} CPUs, {machine['platform']}; numpy {machine['numpy']}, faiss {machine['faiss']}; "
        f"load average {machine['loadavg_1m_start']} at start, {machine['loadavg_1m_end']} at end.",
        "",
    ]
    lines += [f"- {n}" for n in notes] + [
        "",
        "| gallery | method | single ms/query | single q/s | batch-32 ms/query | batch-32 q/s "
        "| recall@20 vs exact | planted@20 | build s |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def f3(v):
        return "-" if v is None else f"{v:.3f}"

    for r in rows:
        lines.append(
            f"| {r['size']:,} | {r['method']} | {r['single']['ms_per_query']:.2f} | {r['single']['queries_per_s']:.0f} | "
            f"{r['batch32']['ms_per_query']:.2f} | {r['batch32']['queries_per_s']:.0f} | {f3(r['recall_at_20'])} | "
            f"{f3(r['planted_at_20'])} | {r['build_s']:.1f} |"
            if "build_s" in r
            else f"| {r['size']:,} | {r['method']} | {r['single']['ms_per_query']:.2f} | {r['single']['queries_per_s']:.0f} | "
            f"{r['batch32']['ms_per_query']:.2f} | {r['batch32']['queries_per_s']:.0f} | {f3(r['recall_at_20'])} | "
            f"{f3(r['planted_at_20'])} | - |"
        )
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
