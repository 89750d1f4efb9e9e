"""Exact search in chunks: resident, streamed from host memory and sharded give the same hits as a sort by
(score desc, row asc), ties included; fp16 rows are scored like faiss scores its fp16 index."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pyserini_llama.dense.exact import (QueryBlock, ResidentChunks, StreamedChunks, chunk_bounds, exact_search,
                                        merge_topk, select_topk, shard_bounds)


def reference(q, x, k):
    scores = q.astype(np.float64) @ x.astype(np.float64).T
    rows = np.arange(x.shape[0])
    order = np.stack([np.lexsort((rows, -row)) for row in scores])[:, :k]
    return np.take_along_axis(scores, order, 1), order


@pytest.fixture(scope="module")
def tied():
    """Small integers: every score is an exact integer, so many rows tie, also across chunk boundaries."""
    rng = np.random.default_rng(0)
    x = rng.integers(-2, 3, size=(1000, 16)).astype(np.float32)
    x[500:520] = x[3]  # a run of duplicates of row 3 crossing the boundary of 64-row chunks at 512
    q = rng.integers(-2, 3, size=(37, 16)).astype(np.float32)
    q[0] = x[3]
    return q, x


@pytest.mark.parametrize("k", [1, 10, 100, 1000, 5000])
def test_every_layout_gives_the_reference_hits(tied, k):
    q, x = tied
    want_s, want_i = reference(q, x, k)
    layouts = {
        "resident": [ResidentChunks(x, "cpu", 64)],
        "streamed": [StreamedChunks(x, "cpu", 64)],
        "sharded": [StreamedChunks(x, "cpu", 64, a, b) for a, b in shard_bounds(len(x), 64, 3)],
        "one chunk": [ResidentChunks(x, "cpu", 4096)],
    }
    for name, sources in layouts.items():
        for step in (5, 64):
            s, i = exact_search(q, sources, k, queries_per_step=step)
            np.testing.assert_array_equal(i, want_i, err_msg=f"{name}, {step} queries per step")
            np.testing.assert_array_equal(s, want_s.astype(np.float32), err_msg=name)
    s, i = exact_search(q, layouts["streamed"], 25)
    assert set(i[0, :21]) == {3, *range(500, 520)}  # the query equals row 3 and its 20 copies: they come first


def test_select_topk_keeps_the_lowest_tied_columns():
    scores = torch.tensor([[1.0, 3.0, 2.0, 3.0, 2.0, 2.0, 0.0, 2.0]])
    values, columns = select_topk(scores, 4)  # 3, 3, then two of the four 2s: columns 2 and 4
    assert sorted(columns[0].tolist()) == [1, 2, 3, 4]
    assert sorted(values[0].tolist()) == [2.0, 2.0, 3.0, 3.0]
    merged = merge_topk((values, columns), (torch.tensor([[2.0, 9.0]]), torch.tensor([[0, 99]])), 4)
    assert merged[1].tolist() == [[99, 1, 3, 0]] and merged[0].tolist() == [[9.0, 3.0, 3.0, 2.0]]


def test_chunk_grid_and_shards():
    assert chunk_bounds(10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert chunk_bounds(10, 4, 4, 10) == [(4, 8), (8, 10)]
    assert shard_bounds(10, 4, 2) == [(0, 8), (8, 10)]  # shards hold whole chunks of the one grid
    assert shard_bounds(3, 4, 3) == [(0, 0), (0, 3), (3, 3)]  # more shards than chunks: some are empty
    assert sum(b - a for a, b in shard_bounds(1000, 64, 3)) == 1000


def test_fp16_rows_are_scored_against_float32_queries():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 32)).astype(np.float16)
    q = rng.standard_normal((4, 32)).astype(np.float32)
    exact = q.astype(np.float64) @ x.astype(np.float64).T  # what faiss computes for an fp16 index (in float32)
    got = QueryBlock(q, "cpu").scores(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, exact, rtol=0, atol=1e-5)
    block = QueryBlock(q, "cpu")
    halves = block.split().float()
    rebuilt = halves[:4] + halves[4:] / 4096.0  # the GPU path's split of each query into fp16 halves
    np.testing.assert_allclose(rebuilt.numpy(), q, rtol=1e-6, atol=1e-9)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_streamed_from_pinned_memory_equals_resident_on_gpu():
    rng = np.random.default_rng(2)
    x = torch.from_numpy(rng.standard_normal((5000, 64)).astype(np.float16)).pin_memory()
    q = rng.standard_normal((300, 64)).astype(np.float32)
    resident = exact_search(q, [ResidentChunks(x, "cuda", 512)], 100, 128)
    for rows in (x, x.numpy()):  # pinned: direct copies; an array: through the staging buffers
        streamed = exact_search(q, [StreamedChunks(rows, "cuda", 512)], 100, 128)
        np.testing.assert_array_equal(streamed[1], resident[1])
        np.testing.assert_array_equal(streamed[0], resident[0])
