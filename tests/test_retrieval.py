"""Retrieval: the similarity head as a matrix product, the gallery (add, save, load, search), the
ranking policy, and DeepFashion2 retrieval through a saved gallery equal to `df2infer eval`."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from df2infer.results import Detections
from df2infer.retrieval import Gallery, GalleryError, RankingPolicy, Similarity, match_probability
from df2infer.retrieval.gallery import exact_topk
from df2infer.retrieval.similarity import sigmoid

D = 32


def _sim(seed=0, d=D):
    rng = np.random.default_rng(seed)
    return Similarity(rng.normal(0, 0.3, (2, d)), rng.normal(0, 1, 2))


def _head_loop(a, b, W, bias):
    """The head as the model runs it: softmax(W @ (a - b)^2 + bias)[1], one pair at a time, float64."""
    out = np.zeros((len(a), len(b)))
    for i in range(len(a)):
        for j in range(len(b)):
            logits = np.asarray(W, np.float64) @ (np.asarray(a[i], np.float64) - b[j]) ** 2 + np.asarray(bias, np.float64)
            e = np.exp(logits - logits.max())
            out[i, j] = e[1] / e.sum()
    return out


def test_match_probability_vs_naive_loop():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 16)), rng.normal(size=(7, 16))
    W, bias = rng.normal(size=(2, 16)), rng.normal(size=2)
    np.testing.assert_allclose(match_probability(a, b, W, bias), _head_loop(a, b, W, bias), rtol=1e-5, atol=1e-6)


def test_augmented_inner_product_is_the_head():
    """[-2 w*a, 1] . [b, w @ b^2] + (w @ a^2 + c) = the head's logit; sigmoid = its probability to 1e-5."""
    sim = _sim(1)
    rng = np.random.default_rng(2)
    a, b = rng.normal(0, 1, (6, D)).astype(np.float32), rng.normal(0, 1, (40, D)).astype(np.float32)
    ref = _head_loop(a, b, sim.weight, sim.bias)
    z = sim.augment_queries(a) @ sim.augment_gallery(b).T + sim.query_vectors(a)[1][:, None]
    np.testing.assert_allclose(sigmoid(z), ref, atol=1e-5)
    np.testing.assert_allclose(sigmoid(sim.logits(a, b)), ref, atol=1e-5)
    assert ref.min() < 0.2 and ref.max() > 0.8  # the check spans the sigmoid's range, not only its flat ends


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_gallery_search_probabilities_equal_the_head(dtype):
    """Batched exact search: every returned probability equals the head on the stored embedding to
    1e-5 (float16 storage: the head on the float16-rounded gallery embedding), and the ranking is the
    head's ranking."""
    sim = _sim(3)
    rng = np.random.default_rng(4)
    g = Gallery(sim, dtype=dtype, policy=RankingPolicy("any", 0.0), capacity=16)
    embs = rng.normal(0, 1, (300, D)).astype(np.float32)
    for i in range(0, 300, 7):  # many small adds: the storage grows by doubling
        e = embs[i : i + 7]
        g.add_items(f"img{i}", e, np.tile([0, 0, 10, 10], (len(e), 1)), np.ones(len(e)), np.full(len(e), 0.9))
    assert len(g) == 300 and g.embeddings.dtype == np.dtype(dtype)
    stored = embs.astype(dtype).astype(np.float64)
    q = rng.normal(0, 1, (33, D)).astype(np.float32)
    ref = _head_loop(q, stored, sim.weight, sim.bias)
    res = g.search(q, k=20)
    for i, row in enumerate(res):
        assert [m.index for m in row] == list(np.argsort(-ref[i], kind="stable")[:20])
        np.testing.assert_allclose([m.probability for m in row], ref[i, [m.index for m in row]], atol=1e-5)
    if dtype == "float16":  # what float16 storage costs against the float32 embeddings (reported, loose bound)
        full = _head_loop(q, embs, sim.weight, sim.bias)
        assert np.abs(full - ref).max() < 1e-2


def test_exact_topk_chunks_equal_one_pass():
    rng = np.random.default_rng(5)
    emb = rng.normal(size=(1000, 8)).astype(np.float32)
    gt = rng.normal(size=1000).astype(np.float32)
    lab = rng.integers(1, 4, 1000)
    q = rng.normal(size=(5, 8)).astype(np.float32)
    one = exact_topk(q, emb, gt, lab, [1, 2, 3, 1, 2], 10, ("all", "same", "other"), chunk=1000)
    many = exact_topk(q, emb, gt, lab, [1, 2, 3, 1, 2], 10, ("all", "same", "other"), chunk=64)
    for g in one:
        np.testing.assert_array_equal(one[g][0], many[g][0])
    z = q @ emb.T + gt
    np.testing.assert_array_equal(one["all"][0], np.argsort(-z, axis=1)[:, :10])
    assert all((lab[one["same"][0][i]] == [1, 2, 3, 1, 2][i]).all() for i in range(5))
    assert all((lab[one["other"][0][i]] != [1, 2, 3, 1, 2][i]).all() for i in range(5))


def test_policy_category_first_only_any_and_floor():
    D4 = 4
    sim = Similarity(np.stack([np.ones(D4), -np.ones(D4)]), np.array([0.0, 2.0]))  # closer = more likely a match
    g_emb = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [3, 3, 3, 3], [2, 2, 2, 2]], np.float32)
    det = Detections(
        boxes=np.zeros((4, 4), np.float32),
        scores=np.array([1, 1, 1, 0.2], np.float32),
        labels=np.array([1, 1, 2, 2], np.int32),
        image_size=(10, 10),
        embeddings=g_emb,
    )
    g = Gallery(sim)  # default policy: same category first, gallery score floor 0.3
    assert g.add(det, image_id=7) == 3  # the 0.2 item stays out
    q = np.array([[3, 3, 3, 3]], np.float32)
    assert [m.index for m in g.search(q, k=5, query_labels=[1])[0]] == [1, 0, 2]
    assert [m.index for m in g.search(q, k=2, query_labels=[1])[0]] == [1, 0]
    assert [m.index for m in g.search(q, k=5, query_labels=[1], policy=RankingPolicy("only"))[0]] == [1, 0]
    anyc = g.search(q, k=5, policy=RankingPolicy("any"))[0]
    assert [m.index for m in anyc] == [2, 1, 0] and anyc[0].image_id == 7
    assert anyc[0].probability > anyc[1].probability > anyc[2].probability
    with pytest.raises(GalleryError, match="query labels"):
        g.search(q, k=5)
    with pytest.raises(ValueError, match="category"):
        RankingPolicy("nearest")


def test_gallery_save_load_roundtrip_and_resume(tmp_path):
    sim = _sim(6)
    rng = np.random.default_rng(7)
    g = Gallery(sim, dtype="float16", info={"root": "x"})
    for i in range(5):
        g.add_items(100 + i, rng.normal(size=(3, D)), rng.uniform(0, 50, (3, 4)), [1, 2, 3], [0.9, 0.5, 0.1], pair_id=i, styles=[1, 0, 2])
    g.add_items(999, np.zeros((0, D)), np.zeros((0, 4)), [], [])  # an image with no items is still indexed
    q = rng.normal(size=(4, D))
    before = g.search(q, k=6, query_labels=[1, 2, 3, 1])
    g.save(tmp_path / "g")
    h = g.load(tmp_path / "g", sim)
    assert len(h) == 10 and h.dtype == "float16" and h.info == {"root": "x"} and h.has_image(999)
    after = h.search(q, k=6, query_labels=[1, 2, 3, 1])
    assert [[(m.index, m.image_id, m.pair_id, m.style) for m in r] for r in before] == [
        [(m.index, m.image_id, m.pair_id, m.style) for m in r] for r in after
    ]
    assert np.allclose([m.probability for r in before for m in r], [m.probability for r in after for m in r])
    # appends after a load, and a save cut short (columns longer than the header says) still loads
    h.add_items(200, rng.normal(size=(2, D)), np.zeros((2, 4)), [1, 1], [0.9, 0.9])
    header = (tmp_path / "g" / "gallery.json").read_text()
    h.save(tmp_path / "g")
    (tmp_path / "g" / "gallery.json").write_text(header)
    assert len(Gallery.load(tmp_path / "g")) == 10
    mm = Gallery.load(tmp_path / "g", mmap=True)
    assert [m.index for m in mm.search(q, k=6, query_labels=[1, 2, 3, 1])[0]] == [m.index for m in after[0]]
    with pytest.raises(GalleryError, match="rebuild the gallery"):
        Gallery.load(tmp_path / "g", _sim(99))
    with pytest.raises(GalleryError, match="no gallery.json"):
        Gallery.load(tmp_path / "nothing")


# ---------------------------------------------------------------- FAISS


def _random_gallery(n=3000, seed=8, dtype="float32", clusters=0):
    """n random items (isotropic, or around `clusters` centres as catalogs are: styles, categories)."""
    sim = _sim(seed)
    rng = np.random.default_rng(seed)
    g = Gallery(sim, dtype=dtype, policy=RankingPolicy("any", 0.0))
    emb = rng.normal(size=(n, D))
    if clusters:
        emb = rng.normal(size=(clusters, D))[rng.integers(0, clusters, n)] + 0.5 * emb
    g.add_items("all", emb, np.zeros((n, 4)), rng.integers(1, 14, n), np.ones(n))
    return g, rng


@pytest.mark.parametrize("policy", ["any", "first", "only"])
def test_faiss_flat_equals_exact_numpy(policy, tmp_path):
    faiss_index = pytest.importorskip("df2infer.retrieval.faiss_index")
    pytest.importorskip("faiss")
    g, rng = _random_gallery()
    q = rng.normal(size=(17, D))
    ql = rng.integers(1, 14, 17)
    pol = RankingPolicy(policy, 0.0)
    ids, z = g.search_ids(q, 20, query_labels=ql, policy=pol)
    idx = faiss_index.FaissIndex.build(g, "flat")
    fi, fz = g.search_ids(q, 20, query_labels=ql, policy=pol, index=idx)
    np.testing.assert_array_equal(fi, ids)
    np.testing.assert_allclose(fz, z, atol=1e-4)
    idx.save(tmp_path / "flat.index")
    li, _ = g.search_ids(q, 20, query_labels=ql, policy=pol, index=faiss_index.FaissIndex.load(tmp_path / "flat.index", g))
    np.testing.assert_array_equal(li, ids)


@pytest.mark.parametrize("kind", ["hnsw", "ivf", "flat16"])
def test_faiss_approximate_recall(kind):
    faiss_index = pytest.importorskip("df2infer.retrieval.faiss_index")
    pytest.importorskip("faiss")
    g, rng = _random_gallery(5000, clusters=50)
    q = g.embeddings[rng.choice(len(g), 50, replace=False)] + rng.normal(0, 0.1, (50, D))  # a near-duplicate each
    exact, _ = g.search_ids(q, 20, policy=RankingPolicy("any", 0.0))
    idx = faiss_index.FaissIndex.build(g, kind)
    approx, _ = g.search_ids(q, 20, policy=RankingPolicy("any", 0.0), index=idx)
    r = faiss_index.recall_at_k(approx, exact)
    assert r >= 0.95, (kind, r)  # the benchmark reports recall at 10^4..10^6 items
    g2 = Gallery(g.similarity)
    with pytest.raises(ValueError, match="rebuild"):
        faiss_index.FaissIndex.load(idx.save(Path(pytest.importorskip("tempfile").mkdtemp()) / "i.index"), g2)


# ---------------------------------------------------------------- Milvus (embedded Milvus Lite)


def test_milvus_gallery_equals_exact_numpy(tmp_path):
    pytest.importorskip("pymilvus")
    pytest.importorskip("milvus_lite")
    from df2infer.retrieval.vector_store import MilvusGallery

    sim = _sim(11)
    rng = np.random.default_rng(12)
    g = Gallery(sim)
    for i in range(40):
        g.add_items(
            1000 + i,
            rng.normal(size=(4, D)),
            rng.uniform(0, 90, (4, 4)),
            rng.integers(1, 5, 4),
            [0.9, 0.8, 0.6, 0.1],
            pair_id=i,
            styles=[1, 2, 0, 1],
        )
    q = rng.normal(size=(9, D))
    ql = rng.integers(1, 5, 9)
    uri = str(tmp_path / "g.db")
    mg = MilvusGallery.from_gallery(g, uri)
    assert len(mg) == len(g) == 120
    for pol in ("first", "any"):
        want = g.search(q, k=20, query_labels=ql, policy=RankingPolicy(pol))
        got = mg.search(q, k=20, query_labels=ql, policy=RankingPolicy(pol))
        assert [[(m.index, m.image_id, m.pair_id, m.style, m.label) for m in r] for r in got] == [
            [(m.index, m.image_id, m.pair_id, m.style, m.label) for m in r] for r in want
        ], pol
        np.testing.assert_allclose([m.probability for r in got for m in r], [m.probability for r in want for m in r], atol=1e-5)
        np.testing.assert_allclose([m.box for r in got for m in r], [m.box for r in want for m in r], atol=1e-4)
    mg.close()
    again = MilvusGallery(sim, uri)  # persisted in the file; the header is checked
    assert len(again) == 120
    again.close()
    with pytest.raises(GalleryError, match="rebuild"):
        MilvusGallery(_sim(99), uri)


# ---------------------------------------------------------------- DeepFashion2 through index + search


@pytest.fixture(scope="module")
def df2_distinct(tmp_path_factory):
    """The tiny DF2 folder with a different grey level per image: the fake model's embeddings scale
    with the image mean, so every gallery item has its own embedding (no ties in the ranking)."""
    import cv2
    import df2_folder

    root = df2_folder.make_folder(tmp_path_factory.mktemp("df2r") / "df2", n_pairs=6)
    for i, p in enumerate(sorted((root / "image").glob("*.jpg"))):
        cv2.imwrite(str(p), np.full((df2_folder.H, df2_folder.W, 3), 30 + 15 * i, np.uint8))
    return root


@pytest.fixture(scope="module")
def fake_model_path(tmp_path_factory):
    import fake_model as fm

    return fm.build(tmp_path_factory.mktemp("model") / "fake.onnx")


def _ranking_as_of_matching_py(q_emb, q_label, g_emb, g_label, W, b, k):
    """The ranking df2infer eval used before retrieval/ (matching.Gallery.query, same category first):
    float32 probabilities, items of the query's category by probability, then the others."""
    p = match_probability(q_emb[None], g_emb, W, b)[0]
    order = np.argsort(-p, kind="stable")
    same = [j for j in order if g_label[j] == q_label]
    return (same + [j for j in order if g_label[j] != q_label])[:k], p


def test_df2_search_equals_eval_and_the_previous_ranking(df2_distinct, fake_model_path, tmp_path, capsys):
    import json

    import fake_model as fm

    import df2infer
    from df2infer.apps.main import main
    from df2infer.data.annotations import load_dataset

    m = str(fake_model_path)
    assert (
        main(
            [
                "eval",
                str(df2_distinct),
                "--model",
                m,
                "--device",
                "cpu",
                "--json",
                str(tmp_path / "rep.json"),
                "--write-results",
                str(tmp_path / "eval"),
                "--no-breakdown",
            ]
        )
        == 0
    )
    assert main(["index", "build", str(df2_distinct), "--out", str(tmp_path / "g"), "--model", m, "--device", "cpu", "--no-progress"]) == 0
    assert (
        main(
            ["search", str(df2_distinct), "--gallery", str(tmp_path / "g"), "--out", str(tmp_path / "s"), "--device", "cpu", "--topk", "20"]
        )
        == 0
    )
    printed = capsys.readouterr().out
    via_eval = json.loads((tmp_path / "eval" / "retrieval.json").read_text())
    via_search = json.loads((tmp_path / "s" / "retrieval.json").read_text())
    assert via_search == via_eval and len(via_eval) > 0
    rep = json.loads((tmp_path / "rep.json").read_text())["retrieval"]
    srep = json.loads((tmp_path / "s" / "retrieval_report.json").read_text())
    assert all(srep[f"top{k}"] == rep[f"top{k}"] for k in (1, 5, 10, 15, 20)) and "top-20" in printed

    # ... and both equal the ranking of yesterday's matching.py on the same detections
    ds = load_dataset(df2_distinct)
    pred = df2infer.load(m, device="cpu")
    dets = {a.image_id: d for a, d in zip(ds.images, pred.stream([str(ds.image_path(a)) for a in ds.images], conf=0.05))}
    shop = [
        (a.image_id, i) for a in ds.images if a.source == "shop" for i in range(len(dets[a.image_id])) if dets[a.image_id].scores[i] >= 0.3
    ]
    g_emb = np.stack([dets[iid].embeddings[i] for iid, i in shop])
    g_lab = np.array([dets[iid].labels[i] for iid, i in shop])
    assert len({tuple(e) for e in g_emb.round(6)}) == len(g_emb)  # distinct embeddings: a strict test
    n_checked = 0
    for e in via_search:
        d = dets[e["query_image_id"]]
        i = int(np.argmin([abs(float(s) - e["query_score"]) + np.abs(d.boxes[j] - e["query_bbox"]).sum() for j, s in enumerate(d.scores)]))
        ref, p = _ranking_as_of_matching_py(d.embeddings[i], d.labels[i], g_emb, g_lab, fm.SIM_W, fm.SIM_B, 20)
        ours = [
            shop.index((gid, int(np.argmin(np.abs(dets[gid].boxes - gb).sum(1)))))
            for gid, gb in zip(e["gallery_image_id"], e["gallery_bbox"])
        ]
        # the same items in the same order, except among items whose probabilities tie: saturated at
        # 1.0 in float32 (the old code left those in argpartition order, the new one orders them by
        # logit) or within float32 rounding of the logit (1e-6)
        assert [g_lab[j] == d.labels[i] for j in ours] == [g_lab[j] == d.labels[i] for j in ref]
        np.testing.assert_allclose(p[ours], p[ref], rtol=0, atol=1e-6)
        # where float32 probabilities saturate, the head's float64 logits still decide: non-increasing
        # within the same-category block and within the others
        w, c = fm.SIM_W[1].astype(np.float64) - fm.SIM_W[0], float(fm.SIM_B[1]) - float(fm.SIM_B[0])
        z = ((d.embeddings[i].astype(np.float64) - g_emb[ours]) ** 2) @ w + c
        same = g_lab[ours] == d.labels[i]
        for block in (z[same], z[~same]):
            assert (np.diff(block) <= 1e-5).all(), block
        n_checked += len(ours)
    assert n_checked == sum(len(e["gallery_image_id"]) for e in via_search) > 100

    # the gallery knows pair ids and styles (style from the ground-truth item a detection overlaps)
    g = df2infer.retrieval.Gallery.load(tmp_path / "g")
    assert set(g.pair_ids.tolist()) == {a.pair_id for a in ds.images if a.source == "shop"}
    assert (g.styles >= 0).any()
    out = json.loads((tmp_path / "s" / "search.json").read_text())
    assert out["images"] and all(len(it["matches"]) == min(20, len(g)) for im in out["images"] for it in im["items"])
    assert any((tmp_path / "s" / "pictures").iterdir())


def test_index_build_resumes_and_files_search(df2_distinct, fake_model_path, tmp_path, capsys):
    import json
    import shutil

    from df2infer.apps.main import main
    from df2infer.retrieval import Gallery

    m = str(fake_model_path)
    shop = tmp_path / "shop"
    shop.mkdir()
    files = sorted((df2_distinct / "image").glob("*.jpg"))
    for p in files[:3]:
        shutil.copy(p, shop / p.name)
    g = tmp_path / "g"
    assert main(["index", "build", str(shop), "--out", str(g), "--model", m, "--device", "cpu", "--no-progress"]) == 0
    first = Gallery.load(g)
    assert sorted(first.indexed_images) == [p.name for p in files[:3]]
    for p in files[3:5]:
        shutil.copy(p, shop / p.name)
    (shop / "broken.jpg").write_bytes(b"not an image")
    assert main(["index", "build", str(shop), "--out", str(g), "--model", m, "--device", "cpu", "--no-progress"]) == 1
    err = capsys.readouterr()
    assert "3 already there" in err.out and "broken.jpg" in err.err
    second = Gallery.load(g)
    assert len(second.indexed_images) == 5 and len(second) == 5 * 3
    np.testing.assert_array_equal(second.embeddings[: len(first)], first.embeddings)  # nothing re-embedded
    search = ["search", str(files[6]), "--gallery", str(g), "--topk", "4", "--device", "cpu", "--policy", "any"]
    assert main([*search, "--out", str(tmp_path / "s")]) == 0
    res = json.loads((tmp_path / "s" / "search.json").read_text())
    items = res["images"][0]["items"]
    assert len(items) == 4 and all(len(it["matches"]) == 4 for it in items)
    assert {mm["image_id"] for it in items for mm in it["matches"]} <= set(second.indexed_images)
    if importlib.util.find_spec("faiss") is not None:  # the same matches through a FAISS index, saved beside the gallery
        assert main([*search, "--out", str(tmp_path / "sf"), "--index", "flat"]) == 0
        assert (g / "faiss_flat.index").is_file()
        via_faiss = json.loads((tmp_path / "sf" / "search.json").read_text())["images"][0]["items"]
        assert [[mm["image_id"] for mm in it["matches"]] for it in via_faiss] == [[mm["image_id"] for mm in it["matches"]] for it in items]
    assert main(["search", str(files[6]), "--gallery", str(tmp_path / "nope"), "--out", str(tmp_path / "s2")]) == 2
    assert "no gallery.json" in capsys.readouterr().err


# ---------------------------------------------------------------- Ray Data (a local Ray instance)


def test_ray_indexing_equals_one_process(df2_distinct, fake_model_path, tmp_path, monkeypatch):
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    import df2infer
    from df2infer.retrieval.catalog import df2_images, index_images
    from df2infer.retrieval.ray_indexing import index_with_ray

    images, _ = df2_images(df2_distinct, "shop")
    images.append(images[0].__class__("broken", str(tmp_path / "missing.jpg")))
    pred = df2infer.load(fake_model_path, device="cpu")
    serial = Gallery(pred.similarity)
    s_stats = index_images(pred, serial, images, progress=False)
    # A worker process (ray + onnxruntime imports) gets 5 min to register instead of Ray's 60 s: on a loaded
    # 2-core CI machine a slow start must not fail the actor pool (the raylet reads RAY_<setting> from its env).
    monkeypatch.setenv("RAY_worker_register_timeout_seconds", "300")
    # address="local": always a private Ray for this test; with no address ray.init attaches to RAY_ADDRESS or a
    # `ray start` cluster on the machine (other jobs' workers, num_cpus ignored)
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        dist = Gallery(pred.similarity)
        r_stats = index_with_ray(fake_model_path, dist, images, num_workers=2, batch_size=2, save_to=tmp_path / "g")
    finally:
        ray.shutdown()
    assert r_stats["indexed"] == s_stats["indexed"] == len(images) - 1 and r_stats["failed"] == 1
    assert "missing.jpg" in r_stats["failures"][0]
    assert dist.indexed_images == serial.indexed_images and len(dist) == len(serial) > 0
    np.testing.assert_array_equal(dist.embeddings, serial.embeddings)
    for col in ("boxes", "labels", "scores", "pair_ids", "styles"):
        np.testing.assert_array_equal(getattr(dist, col), getattr(serial, col))
    assert len(Gallery.load(tmp_path / "g")) == len(serial)
