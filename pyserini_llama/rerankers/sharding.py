"""Rerank one run on several GPUs: ``torchrun --nproc_per_node N -m pyserini_llama.rerank ...``.

Queries are dealt round-robin to the ranks (``query i`` to rank ``i % N``: every rank gets a similar mix of
long and short queries); each rank loads the model on its own GPU, reranks its queries and writes its part,
atomically, into a hidden work folder next to the output (``.<output name>.parts``). Once every rank is done,
rank 0 joins the parts, query by query in the run's order, into the output (written atomically: it is
byte-identical to a one-process run) and removes the work folder. A run that dies leaves no output, only the
hidden folder, which the next run clears.

Example::

    rank, world = distributed_rank()
    mine = shard_run(run, rank, world)
    reranked = reranker.rerank(topics, mine, docs, hits=100) if mine else {}
    write_sharded_run(reranked, list(run), "runs/out.trec", tag="rankllama")   # rank 0 writes the file
"""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

from ..data.atomic import atomic_write
from ..data.trec import Run, write_run
from ..errors import UserError
from ..paths import remove_tree
from ..runtime import barrier, distributed_rank

PathLike = Union[str, os.PathLike]
PART = re.compile(r"(part-\d{5}-of-\d{5}\.trec|\.part-\d{5}-of-\d{5}\.trec\.[A-Za-z0-9_]+\.tmp)")


def shard_run(run: Run, rank: int, world_size: int) -> Run:
    """This rank's queries of ``run``: the ``i``-th query goes to rank ``i % world_size``."""
    return {qid: hits for i, (qid, hits) in enumerate(run.items()) if i % world_size == rank}


def parts_dir(output: PathLike) -> Path:
    output = Path(output)
    return output.parent / f".{output.name}.parts"


def part_path(work: Path, rank: int, world_size: int) -> Path:
    return work / f"part-{rank:05d}-of-{world_size:05d}.trec"


def clear_parts(work: Path) -> None:
    """Remove a parts folder left by an earlier run; a folder holding anything else is refused."""
    if work.is_symlink() or (work.exists() and not work.is_dir()):
        raise UserError(f"{work}: expected the parts folder of an unfinished rerank run; it is a link or a file, "
                        f"remove it yourself")
    if not work.exists():
        return
    strangers = [p.name for p in work.iterdir() if not PART.fullmatch(p.name) or p.is_dir()]
    if strangers:
        raise UserError(f"{work}: holds files this program did not write ({', '.join(strangers[:3])}); "
                        f"refusing to delete it, move them away first")
    remove_tree(work, work.parent)


def write_sharded_run(reranked: Run, qids: Sequence[str], output: PathLike, tag: str, overwrite: bool = False,
                      rank: Optional[int] = None, world_size: Optional[int] = None) -> bool:
    """Write this rank's part and, on rank 0 once all parts are in, the whole run to ``output``.

    ``qids`` is the order of the full run. Call it on every rank (it synchronises them); returns whether this
    rank wrote ``output``. With one process the run is simply written.
    """
    env_rank, env_world = distributed_rank()
    rank = env_rank if rank is None else rank
    world_size = env_world if world_size is None else world_size
    if world_size == 1:
        write_run({q: reranked[q] for q in qids if q in reranked}, output, tag=tag, overwrite=overwrite)
        return True
    work = parts_dir(output)
    write_run(reranked, part_path(work, rank, world_size), tag=tag)
    barrier(world_size)
    if rank != 0:
        return False
    lines: Dict[str, List[str]] = {}
    for r in range(world_size):
        path = part_path(work, r, world_size)
        if not path.is_file():
            raise UserError(f"{path}: missing; did rank {r} fail? rerun the same command")
        with open(path, encoding="utf-8") as f:
            for line in f:
                lines.setdefault(line.split(" ", 1)[0], []).append(line)
    with atomic_write(output, overwrite=overwrite) as f:
        for qid in qids:
            f.writelines(lines.get(qid, ()))
    clear_parts(work)
    return True


def prepare_parts(output: PathLike, world_size: Optional[int] = None) -> None:
    """Before reranking: rank 0 clears what an interrupted run left, then every rank may write its part."""
    rank, env_world = distributed_rank()
    world_size = env_world if world_size is None else world_size
    if world_size == 1:
        return
    if rank == 0:
        clear_parts(parts_dir(output))
        parts_dir(output).mkdir(parents=True)
    barrier(world_size)
