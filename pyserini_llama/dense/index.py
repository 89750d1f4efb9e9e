"""Build a Pyserini dense index folder (``index`` + ``docid``) from a corpus: sharded, resumable, multi-GPU.

The corpus is cut into shards of ``shard_size`` documents in file order. Each finished shard is saved
atomically in a work folder next to the index (``.<index name>.shards``), so a killed run restarted with the same
command skips the finished shards; shards are encoded the same way whoever encodes them, so the index is the
same as an uninterrupted run's. Under ``torchrun`` rank ``r`` of ``w`` encodes shards ``r, r + w, ...`` on its
own GPU; rank 0 waits for all, then merges them in order into one faiss flat (inner product) index.

Example::

    enc = RepLlamaEncoder.from_checkpoint("repllama", device="cuda")
    build_index(enc, "corpus.jsonl", "indexes/scifact-repllama", max_length=512)
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from itertools import islice
from pathlib import Path
from typing import Iterator, List, Optional, Tuple, Union

import numpy as np

from ..data.atomic import atomic_dir, atomic_write
from ..data.beir import Document, iter_corpus
from ..errors import UserError
from .faiss_format import FlatIndexWriter, write_docids

PathLike = Union[str, os.PathLike]
INFO_NAME = "index_info.json"
MANIFEST_NAME = "manifest.json"
DEFAULT_SHARD_SIZE = 20_000


def distributed_rank() -> Tuple[int, int]:
    """``(rank, world_size)`` as set by torchrun (``0, 1`` when run directly)."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def work_dir_for(index_dir: PathLike) -> Path:
    index_dir = Path(index_dir)
    return index_dir.parent / f".{index_dir.name}.shards"


def _barrier(world_size: int) -> None:
    if world_size <= 1:
        return
    import datetime

    import torch.distributed as dist

    if not dist.is_initialized():
        # gloo needs no GPU; the long timeout lets a rank wait while the others encode their last shards
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=7))
    dist.barrier()


def _chunks(docs: Iterator[Document], size: int) -> Iterator[List[Document]]:
    while True:
        chunk = list(islice(docs, size))
        if not chunk:
            return
        yield chunk


def _count_lines(path: Path) -> Optional[int]:
    if path.suffix == ".gz":
        return None
    with open(path, "rb") as f:
        return sum(block.count(b"\n") for block in iter(lambda: f.read(1 << 24), b""))


def _manifest(encoder, corpus: Path, max_length: int, shard_size: int) -> dict:
    name = encoder.name_or_path
    if name and Path(name).exists():
        name = str(Path(name).resolve())
    return dict(corpus=str(corpus.resolve()), corpus_bytes=corpus.stat().st_size, encoder=name,
                config=asdict(encoder.config), dimension=encoder.dimension, max_length=max_length,
                shard_size=shard_size, dtype=str(next(encoder.model.parameters()).dtype))


def _prepare_work_dir(work: Path, manifest: dict, overwrite: bool) -> None:
    """Create the shard folder, or check that its shards were made with the same settings."""
    path = work / MANIFEST_NAME
    if path.exists():
        old = json.loads(path.read_text())
        if old == manifest:
            return
        changed = sorted(k for k in set(old) | set(manifest) if old.get(k) != manifest.get(k))
        if not overwrite:
            raise UserError(f"{work}: unfinished shards from a run with other settings ({', '.join(changed)}); "
                            f"pass --overwrite to discard them")
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write(json.dumps(manifest, indent=2) + "\n")


def shard_path(work: Path, shard: int) -> Path:
    return work / f"shard-{shard:05d}.npz"


def build_index(encoder, corpus_path: PathLike, index_dir: PathLike, shard_size: int = DEFAULT_SHARD_SIZE,
                overwrite: bool = False, max_length: Optional[int] = None,
                max_tokens_per_batch: Optional[int] = None, rank: Optional[int] = None,
                world_size: Optional[int] = None, show_progress: bool = True) -> Path:
    """Encode ``corpus_path`` (BEIR or JsonCollection jsonl) with ``encoder`` into ``index_dir``.

    Resumable by shards; under torchrun each rank encodes its share and rank 0 merges. Returns ``index_dir``.
    """
    from tqdm.auto import tqdm

    corpus, index_dir = Path(corpus_path), Path(index_dir)
    if shard_size <= 0:
        raise UserError(f"--shard-size must be positive, got {shard_size}")
    if not corpus.is_file():
        raise UserError(f"{corpus}: no such corpus file")
    if index_dir.exists() and not overwrite:
        raise UserError(f"{index_dir} already exists; pass --overwrite to replace it")
    env_rank, env_world = distributed_rank()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    max_length = max_length or encoder.config.passage_max_length
    work = work_dir_for(index_dir)
    manifest = _manifest(encoder, corpus, max_length, shard_size)
    if rank == 0:
        _prepare_work_dir(work, manifest, overwrite)
    _barrier(world_size)
    if rank != 0:
        _prepare_work_dir(work, manifest, overwrite=False)  # only checks: rank 0 made it

    total = _count_lines(corpus) if world_size == 1 else None  # a rank sees only its share
    n_shards = 0
    with tqdm(total=total, desc=f"rank {rank}/{world_size} docs" if world_size > 1 else "documents",
              unit="doc", disable=not show_progress, dynamic_ncols=True) as bar:
        for shard, docs in enumerate(_chunks(iter_corpus(corpus), shard_size)):
            n_shards = shard + 1
            path = shard_path(work, shard)
            if shard % world_size != rank or path.exists():
                bar.update(len(docs) if shard % world_size == rank else 0)
                continue
            vectors = encoder.encode_passages(docs, max_length=max_length,
                                              max_tokens_per_batch=max_tokens_per_batch,
                                              show_progress=show_progress)
            with atomic_write(path, "wb") as f:
                np.savez(f, vectors=vectors.astype(np.float32),
                         docids=np.array([d.docid for d in docs], dtype=str))
            bar.update(len(docs))
    _barrier(world_size)
    if rank != 0:
        return index_dir
    _merge_shards(work, n_shards, index_dir, manifest, overwrite)
    shutil.rmtree(work)
    return index_dir


def _merge_shards(work: Path, n_shards: int, index_dir: Path, manifest: dict, overwrite: bool) -> None:
    missing = [s for s in range(n_shards) if not shard_path(work, s).exists()]
    if missing:
        raise UserError(f"{work}: shards {missing[:5]} are missing; did a rank fail? rerun the same command")
    docids: List[str] = []
    with atomic_dir(index_dir, overwrite=overwrite) as tmp:
        with FlatIndexWriter(tmp / "index", manifest["dimension"]) as writer:
            for shard in range(n_shards):
                with np.load(shard_path(work, shard)) as data:
                    writer.add(data["vectors"])
                    docids.extend(data["docids"].tolist())
        write_docids(tmp / "docid", docids)
        info = dict(manifest, count=len(docids))
        (tmp / INFO_NAME).write_text(json.dumps(info, indent=2) + "\n")


def read_index_info(index_dir: PathLike) -> Optional[dict]:
    """What built the index (encoder, config, max length), when we built it; ``None`` for other indexes."""
    path = Path(index_dir, INFO_NAME)
    return json.loads(path.read_text()) if path.exists() else None
