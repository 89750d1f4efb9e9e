"""Build a Pyserini dense index folder (``index`` + ``docid``) from a corpus: sharded, resumable, multi-GPU.

The corpus is validated whole before any encoding (a malformed last line is reported in a second, not after
hours), then cut into shards of ``shard_size`` documents in file order. Each finished shard is saved atomically
in a work folder next to the index (``.<index name>.shards``), whose manifest records what the vectors depend
on: the corpus bytes (SHA-256), the model (weights and config), the length and the shard size. A killed run
restarted with the same command skips the finished shards; any change of those inputs discards them. Under
``torchrun`` rank ``r`` of ``w`` encodes shards ``r, r + w, ...`` on its own GPU; rank 0 waits for all, then
merges them in order into one faiss flat (inner product) index.

Example::

    enc = RepLlamaEncoder.from_checkpoint("repllama", device="cuda")
    build_index(enc, "corpus.jsonl", "indexes/scifact-repllama", max_length=512)
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import warnings
from itertools import islice
from pathlib import Path
from typing import Iterator, List, Optional

import numpy as np

from ..data.atomic import atomic_dir, atomic_write, check_output_dir
from ..data.beir import Document, check_id, iter_corpus, validate_corpus
from ..data.jsonl import read_json_object
from ..errors import DataError, UserError
from ..fingerprint import file_sha256
from ..paths import exclusive, remove_tree
from ..progress import progress_bar
from ..runtime import distributed_rank
from .faiss_format import FlatIndexWriter, write_docids

PathLike = os.PathLike
INFO_NAME = "index_info.json"
MANIFEST_NAME = "manifest.json"
DEFAULT_SHARD_SIZE = 20_000
INDEX_FILES = ("index", "docid", INFO_NAME)  # everything an index folder built here holds
LOCK_NAME = "lock"
SHARD_FILE = re.compile(r"(shard-\d{5}\.npz|\.shard-\d{5}\.npz\.[A-Za-z0-9_]+\.tmp|manifest\.json|"
                        r"\.manifest\.json\.[A-Za-z0-9_]+\.tmp|lock)")


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


def build_manifest(encoder, corpus: Path, max_length: int, shard_size: int) -> dict:
    """What the shards depend on; a resumed run must match it exactly."""
    return dict(corpus=str(corpus.resolve()), corpus_sha256=file_sha256(corpus), encoder=encoder.name_or_path,
                encoder_identity=encoder.identity, config=encoder.config.to_dict(), dimension=encoder.dimension,
                max_length=max_length, shard_size=shard_size,
                # an onnxruntime encoder names its graph's precision; a torch one its weights' dtype
                dtype=getattr(encoder, "precision", None) or str(next(encoder.model.parameters()).dtype))


def discard_work_dir(work: Path) -> None:
    """Delete a shard folder that holds only what this module writes there; anything else is refused."""
    check_work_dir(work)
    remove_tree(work, work.parent)


def prepare_work_dir(work: Path, manifest: dict, overwrite: bool) -> None:
    """Create the shard folder, or keep it when its manifest matches. Finished shards made from other inputs,
    or with no record of their inputs, are refused (they may be hours of work: ``overwrite`` discards them); a
    folder without shards is simply started again. The folder's lock file is kept (its holder is this run)."""
    path = work / MANIFEST_NAME
    old = None
    if work.is_dir() and path.is_file():
        try:
            old = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError):
            old = {}
    if old == manifest and not overwrite:
        return
    shards = sorted(work.glob("shard-*.npz")) if work.is_dir() else []
    if shards and not overwrite:
        changed = sorted(k for k in set(old or {}) | set(manifest) if (old or {}).get(k) != manifest.get(k))
        why = f"other inputs or settings ({', '.join(changed)})" if old is not None else "no record of its inputs"
        raise UserError(f"{work}: {len(shards)} finished shard(s) of an unfinished run with {why}; pass "
                        f"--overwrite to discard them")
    check_work_dir(work)
    for entry in work.iterdir() if work.is_dir() else []:
        if entry.name != LOCK_NAME:
            entry.unlink()
    work.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as f:
        f.write(json.dumps(manifest, indent=2) + "\n")


def check_work_dir(work: Path) -> None:
    """The shard folder may hold only what this module writes there; anything else is someone's."""
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        raise UserError(f"{work}: expected the shard folder of an unfinished run; it is a link or a file, "
                        f"remove it yourself")
    if not work.exists():
        return
    strangers = [p.name for p in work.iterdir() if not SHARD_FILE.fullmatch(p.name) or p.is_dir()]
    if strangers:
        raise UserError(f"{work}: holds files this program did not write ({', '.join(strangers[:3])}); "
                        f"refusing to delete it, move them away first")


def shard_path(work: Path, shard: int) -> Path:
    return work / f"shard-{shard:05d}.npz"


def build_index(encoder, corpus_path: PathLike, index_dir: PathLike, shard_size: int = DEFAULT_SHARD_SIZE,
                overwrite: bool = False, max_length: Optional[int] = None,
                max_tokens_per_batch: Optional[int] = None, rank: Optional[int] = None,
                world_size: Optional[int] = None, progress: bool = True, documents: Optional[int] = None) -> Path:
    """Encode ``corpus_path`` (BEIR or JsonCollection jsonl) with ``encoder`` into ``index_dir``.

    Resumable by shards; under torchrun each rank encodes its share and rank 0 merges. ``documents`` is the
    corpus's size when the caller has already validated it (:func:`validate_corpus`). Returns ``index_dir``.
    """
    corpus, index_dir = Path(corpus_path), Path(index_dir)
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    if not corpus.is_file():
        raise UserError(f"{corpus}: no such corpus file")
    env_rank, env_world = distributed_rank()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if rank == 0:
        check_output_dir(index_dir, overwrite, INDEX_FILES)
    total = documents if documents is not None else validate_corpus(corpus)
    max_length = max_length or encoder.config.passage_max_length
    work = work_dir_for(index_dir)
    manifest = build_manifest(encoder, corpus, max_length, shard_size)
    with contextlib.ExitStack() as held:
        if rank == 0:
            check_work_dir(work)
            made = not work.exists()
            work.mkdir(parents=True, exist_ok=True)
            held.callback(_drop_if_unused, work, made)  # a failure before the first shard leaves nothing
            held.enter_context(exclusive(work / LOCK_NAME, f"index {index_dir}"))
            prepare_work_dir(work, manifest, overwrite)
        _barrier(world_size)
        if rank != 0 and json.loads((work / MANIFEST_NAME).read_text()) != manifest:
            raise UserError(f"{work}: rank {rank} sees other inputs than rank 0 (corpus, model or settings)")
        n_shards = -(-total // shard_size)
        _encode_shards(encoder, corpus, work, total, shard_size, max_length, max_tokens_per_batch, rank,
                       world_size, progress)
        _barrier(world_size)
        if rank != 0:
            return index_dir
        _merge_shards(work, n_shards, index_dir, manifest, overwrite)
        discard_work_dir(work)
    return index_dir


def _drop_if_unused(work: Path, made: bool) -> None:
    """Remove a shard folder this run made when it holds no finished shard (nothing to resume from)."""
    if made and work.is_dir() and not any(work.glob("shard-*.npz")):
        discard_work_dir(work)


def _encode_shards(encoder, corpus: Path, work: Path, total: int, shard_size: int, max_length: int,
                   max_tokens_per_batch: Optional[int], rank: int, world_size: int, progress: bool) -> None:
    """Encode this rank's unfinished shards, each saved atomically as soon as it is done."""
    n_shards = -(-total // shard_size)
    mine = [s for s in range(n_shards) if s % world_size == rank]
    todo = {s for s in mine if not shard_path(work, s).exists()}
    desc = f"encoding documents (rank {rank}/{world_size})" if world_size > 1 else "encoding documents"
    with progress_bar(sum(min(shard_size, total - s * shard_size) for s in mine), desc, "doc",
                      enabled=progress) as bar, warnings.catch_warnings():
        bar.update(sum(min(shard_size, total - s * shard_size) for s in mine if s not in todo))
        warnings.filterwarnings("ignore", message=r".*document\(s\) have no text")  # said by the validation
        for shard, docs in enumerate(_chunks(iter_corpus(corpus), shard_size)):
            if shard not in todo:
                continue
            vectors = encoder.encode_passages(docs, max_length=max_length, max_tokens_per_batch=max_tokens_per_batch,
                                              progress=bar.update)
            bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
            if len(bad):
                raise DataError(corpus, f"document {docs[bad[0]].docid!r} encodes to a non-finite vector "
                                        f"({len(bad)} in its shard); use float32 or bfloat16")
            with atomic_write(shard_path(work, shard), "wb") as f:
                np.savez(f, vectors=vectors.astype(np.float32), docids=np.array([d.docid for d in docs], dtype=str))


def _merge_shards(work: Path, n_shards: int, index_dir: Path, manifest: dict, overwrite: bool) -> None:
    missing = [s for s in range(n_shards) if not shard_path(work, s).exists()]
    if missing:
        raise UserError(f"{work}: shards {missing[:5]} are missing; did a rank fail? rerun the same command")
    docids: List[str] = []
    with atomic_dir(index_dir, overwrite=overwrite, owns=INDEX_FILES) as tmp:
        with FlatIndexWriter(tmp / "index", manifest["dimension"]) as writer:
            for shard in range(n_shards):
                with np.load(shard_path(work, shard)) as data:
                    writer.add(data["vectors"])
                    docids.extend(data["docids"].tolist())
        write_docids(tmp / "docid", docids)
        info = dict(manifest, count=len(docids))
        with atomic_write(tmp / INFO_NAME) as f:
            f.write(json.dumps(info, indent=2) + "\n")


def read_index_info(index_dir: PathLike) -> Optional[dict]:
    """What built the index (encoder, config, max length), when we built it; ``None`` for other indexes."""
    path = Path(index_dir, INFO_NAME)
    if not path.is_file():
        return None
    try:
        info = read_json_object(path, "index info")
    except DataError as e:
        raise DataError(path, f"garbled index info ({str(e).split(': ', 1)[-1]}); rebuild the index or delete "
                              f"this file") from None
    for key, kind in INFO_TYPES.items():
        if key in info and not (isinstance(info[key], kind) and not isinstance(info[key], bool)):
            raise DataError(path, f"garbled index info: {key!r} must be {kind.__name__}, got {info[key]!r}; rebuild "
                                  f"the index or delete this file")
    return info


INFO_TYPES = {"encoder": str, "dimension": int, "count": int, "config": dict, "max_length": int}
FINITE_CHECK_ROWS = 1 << 16


def check_index(index_dir: PathLike) -> Optional[dict]:
    """Check a dense index folder before any model is loaded: its info, its docids (UTF-8, no whitespace, one
    per vector) and, for flat indexes, that every vector is finite (a NaN vector would be ranked first by a
    matmul search and write NaN scores). Returns the index info (``None`` for indexes made elsewhere)."""
    from .faiss_format import FOURCC, read_flat_index

    index_dir = Path(index_dir)
    if not index_dir.is_dir():
        raise UserError(f"{index_dir}: no such index folder")
    info = read_index_info(index_dir)
    docids = _checked_docids(index_dir / "docid")
    index_file = index_dir / "index"
    if not index_file.is_file():
        raise UserError(f"{index_file}: no such index file (a Pyserini dense index folder holds 'index' and "
                        f"'docid')")
    with open(index_file, "rb") as f:
        if f.read(4) not in FOURCC.values():
            return info  # HNSW, PQ, ...: faiss reads and checks those
    flat = read_flat_index(index_file)
    if len(flat) != len(docids):
        raise UserError(f"{index_dir}: index has {len(flat)} vectors but docid has {len(docids)} lines; the folder "
                        f"is inconsistent")
    for start in range(0, len(flat), FINITE_CHECK_ROWS):
        finite = np.isfinite(np.asarray(flat.vectors[start:start + FINITE_CHECK_ROWS])).all(axis=1)
        if not finite.all():
            row = start + int(np.flatnonzero(~finite)[0])
            raise DataError(index_file, f"the vector of document {docids[row]!r} (row {row + 1}) is not finite (NaN "
                                        f"or inf): a search would rank it arbitrarily; rebuild the index")
    return info


def _checked_docids(path: Path) -> List[str]:
    if not path.is_file():
        raise UserError(f"{path}: no docid file (a Pyserini dense index folder holds 'index' and 'docid')")
    docids = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            try:
                docid = raw.decode("utf-8").rstrip("\n").rstrip("\r")
            except UnicodeDecodeError as e:
                raise DataError(path, f"not valid UTF-8 ({e.reason} at byte {e.start} of the line)", lineno) from None
            docids.append(check_id(docid, path, lineno, "document id"))
    return docids


def write_encoded_queries(encoder, topics: dict, output: PathLike, max_length: Optional[int] = None,
                          overwrite: bool = False) -> int:
    """Pyserini's pre-encoded query format: ``embedding.pkl``, a DataFrame of ``text`` and ``embedding``."""
    import pandas as pd

    texts = list(topics.values())
    vectors = encoder.encode_queries(texts, max_length=max_length)
    frame = pd.DataFrame({"id": list(topics), "text": texts, "embedding": list(vectors)})
    with atomic_write(Path(output) / "embedding.pkl", "wb", overwrite=overwrite) as f:
        frame.to_pickle(f)
    return len(texts)
