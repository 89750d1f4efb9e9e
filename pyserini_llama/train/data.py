"""Training groups from a BEIR folder: judged queries of one split, their positives and their hard negatives.

Each query yields, per epoch, a group of ``group_size`` passages: one positive (drawn among the judged ones)
followed by ``group_size - 1`` negatives sampled without replacement from its mined negatives. A query with
fewer mined negatives than needed keeps all of them and fills the rest with random corpus documents (never one
of its positives): duplicating its few negatives would add no information to the softmax, random documents
add easy negatives. Sampling is a pure function of (seed, epoch, query id), so a resumed or multi-GPU run sees
exactly the groups a single uninterrupted run sees.

Example::

    data = load_training_data("beir-scifact", negatives="negatives.jsonl", group_size=16, seed=42)
    query, passages = data.group(0, epoch=0)      # passages[0] is the positive
    batches = StepBatches(data, batch_size=8, accumulation=1, world_size=1, rank=0)
    batches(0)                                    # [[(query, passages), ... 8 groups]]: step 0, one micro-batch
"""
from __future__ import annotations

import hashlib
import random
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from ..data.beir import Document, load_qrels
from ..data.collections import resolve_collection
from ..data.jsonl import iter_jsonl
from ..errors import DataError, UserError

Group = Tuple[str, List[Document]]  # query text, [positive, negatives...]


@dataclass(frozen=True)
class TrainingQuery:
    qid: str
    text: str
    positives: Tuple[str, ...]
    negatives: Tuple[str, ...]
    # Pseudo-queries train on a document's text without its title (the title is the query).
    positive_passage: Optional[Document] = None


class TrainingData:
    """Training queries over a corpus; :meth:`group` draws one training group deterministically."""

    def __init__(self, queries: Sequence[TrainingQuery], corpus: Dict[str, Document], group_size: int,
                 seed: int = 42, other_positives: int = 0):
        if not queries:
            raise UserError("no training queries (no judged query has a positive in the corpus)")
        if len(corpus) < group_size:
            raise UserError(f"the corpus has {len(corpus)} documents, fewer than --group-size {group_size}")
        self.queries = list(queries)
        self.corpus = corpus
        self.docids = list(corpus)
        self.group_size = group_size
        self.seed = seed
        if not 0 <= other_positives < group_size:
            raise UserError(f"--other-positives must be between 0 and group size - 1 ({group_size - 1}), "
                            f"got {other_positives}")
        self.other_positives = other_positives
        # Documents judged relevant to some query, in first-seen order (sampling stays deterministic).
        self.positive_pool = list(dict.fromkeys(d for q in self.queries if q.positive_passage is None
                                                for d in q.positives))

    def __len__(self) -> int:
        return len(self.queries)

    def epoch_order(self, epoch: int) -> List[int]:
        order = list(range(len(self.queries)))
        random.Random(f"{self.seed}:order:{epoch}").shuffle(order)
        return order

    def group(self, index: int, epoch: int) -> Group:
        query = self.queries[index]
        rng = random.Random(f"{self.seed}:group:{epoch}:{query.qid}")
        positive = query.positive_passage or self.corpus[rng.choice(query.positives)]
        wanted = self.group_size - 1
        others = self._other_positives(rng, query) if self.other_positives else []
        wanted -= len(others)
        mined = [d for d in query.negatives if d not in others]
        if len(mined) >= wanted:
            negatives = rng.sample(mined, wanted)
        else:
            negatives = mined + self._random_docs(rng, wanted - len(mined),
                                                  set(query.positives) | set(query.negatives) | set(others))
        return query.text, [positive] + [self.corpus[d] for d in negatives + others]

    def _other_positives(self, rng: random.Random, query: TrainingQuery) -> List[str]:
        """Documents relevant to *other* queries, as negatives: a pointwise scorer that learned "this document
        is a positive" regardless of the query pays for it (as in-batch negatives do for a bi-encoder)."""
        own = set(query.positives)
        picked: List[str] = []
        for _ in range(20 * self.other_positives):  # bounded: a tiny pool may hold only this query's positives
            if len(picked) == self.other_positives or not self.positive_pool:
                break
            docid = self.positive_pool[rng.randrange(len(self.positive_pool))]
            if docid not in own and docid not in picked:
                picked.append(docid)
        return picked

    def _random_docs(self, rng: random.Random, n: int, exclude: set) -> List[str]:
        picked: List[str] = []
        while len(picked) < n:
            docid = self.docids[rng.randrange(len(self.docids))]
            if docid not in exclude:
                picked.append(docid)
                exclude = exclude | {docid}
        return picked


class StepBatches:
    """The micro-batches one rank trains on at each optimizer step.

    A step consumes ``batch_size * world_size * accumulation`` queries of the epoch's shuffled order; micro-batch
    ``a`` is the a-th contiguous slice of ``batch_size * world_size`` queries, of which rank ``r`` takes the r-th
    ``batch_size``. One GPU with batch 2B and two GPUs with batch B therefore see the same in-batch negatives
    (gathered across ranks) and the same global batch. Incomplete last batches of an epoch are dropped.
    """

    def __init__(self, data: TrainingData, batch_size: int, accumulation: int = 1, world_size: int = 1,
                 rank: int = 0):
        self.data, self.batch_size, self.accumulation = data, batch_size, accumulation
        self.world_size, self.rank = world_size, rank
        self.global_batch = batch_size * accumulation * world_size
        self.steps_per_epoch = len(data) // self.global_batch
        if self.steps_per_epoch == 0:
            raise UserError(f"{len(data)} training queries are fewer than one global batch "
                            f"({batch_size} per device x {world_size} devices x {accumulation} accumulation "
                            f"= {self.global_batch}); lower --batch-size")
        self._orders: Dict[int, List[int]] = {}

    def __call__(self, step: int) -> List[List[Group]]:
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch not in self._orders:
            self._orders = {epoch: self.data.epoch_order(epoch)}  # one epoch cached at a time
        chunk = self._orders[epoch][within * self.global_batch:(within + 1) * self.global_batch]
        micro = self.batch_size * self.world_size
        batches = []
        for a in range(self.accumulation):
            mine = chunk[a * micro:(a + 1) * micro][self.rank * self.batch_size:(self.rank + 1) * self.batch_size]
            batches.append([self.data.group(i, epoch) for i in mine])
        return batches


def load_negatives(path: str, corpus: Dict[str, Document]) -> Dict[str, List[str]]:
    """``{qid: [docid, ...]}`` from mine_negatives JSONL (``{"query_id", "positives", "negatives"}``)."""
    negatives: Dict[str, List[str]] = {}
    for lineno, obj in iter_jsonl(path):
        qid, docs = obj.get("query_id"), obj.get("negatives")
        if not isinstance(qid, (str, int)) or not isinstance(docs, list):
            raise DataError(path, "expected {\"query_id\": str, \"negatives\": [docid, ...]}", lineno)
        unknown = [d for d in docs if str(d) not in corpus]
        if unknown:
            raise DataError(path, f"negative {unknown[0]!r} of query {qid!r} is not in the corpus "
                                  f"(negatives mined from another collection?)", lineno)
        negatives[str(qid)] = [str(d) for d in docs]
    if not negatives:
        raise DataError(path, "no negatives (an empty file)")
    return negatives


def pseudo_queries_from_titles(corpus: Dict[str, Document]) -> List[TrainingQuery]:
    """One weakly supervised pair per document that has both a title and a text."""
    return [TrainingQuery(f"title:{doc.docid}", doc.title.strip(), (doc.docid,), (),
                          Document(doc.docid, "", doc.text))
            for doc in corpus.values() if doc.title.strip() and doc.text.strip()]


def subsample_queries(qids: Sequence[str], n: int) -> List[str]:
    """The ``n`` ids with the smallest SHA-1 (all when ``n`` is 0), in their given order.

    A pure function of each id: the same queries on every machine, whatever the file order, so negatives mined
    on one machine for a subsample are those a trainer elsewhere draws (``--max-queries``).
    """
    if not n or n >= len(qids):
        return list(qids)
    keep = set(sorted(qids, key=lambda q: hashlib.sha1(q.encode("utf-8")).hexdigest())[:n])
    return [q for q in qids if q in keep]


def load_training_data(collection: str, split: str = "train", negatives: Optional[str] = None,
                       group_size: int = 16, seed: int = 42, data_dir: Optional[str] = None,
                       pseudo_queries: Optional[str] = None, log=sys.stderr,
                       other_positives: int = 0, max_queries: int = 0) -> TrainingData:
    """Read a BEIR folder's ``split`` queries and qrels (positives: rel > 0) plus optional mined negatives
    (``negatives``: one JSONL path, or several separated by commas whose lists are pooled per query);
    ``max_queries`` keeps that many judged queries (:func:`subsample_queries`)."""
    if "test" in split.lower():
        raise UserError(f"refusing to train on split {split!r}; test judgments are for evaluation only")
    folder = resolve_collection(collection, data_dir)
    corpus = folder.corpus()
    queries = folder.queries(split)
    queries = {qid: queries[qid] for qid in subsample_queries(list(queries), max_queries)}
    qrels = load_qrels(folder.qrels_path(split))
    mined: Dict[str, List[str]] = {}
    for path in (p.strip() for p in (negatives or "").split(",") if p.strip()):
        for qid, docids in load_negatives(path, corpus).items():  # several files: pool, first seen first
            known = set(mined.setdefault(qid, []))
            mined[qid] += [d for d in docids if d not in known]
    examples, skipped = [], 0
    for qid, text in queries.items():
        positives = tuple(d for d, rel in qrels.get(qid, {}).items() if rel > 0 and d in corpus)
        if not positives:
            skipped += 1
            continue
        relevant = {d for d, rel in qrels[qid].items() if rel > 0}  # a mined list may predate these qrels
        examples.append(TrainingQuery(qid, text, positives,
                                      tuple(d for d in mined.get(qid, []) if d not in relevant)))
    without = sum(1 for q in examples if len(q.negatives) < group_size - 1)
    if pseudo_queries == "title":
        examples += pseudo_queries_from_titles(corpus)
    elif pseudo_queries:
        raise UserError(f"unknown --pseudo-queries {pseudo_queries!r} (supported: title)")
    if log is not None:
        print(f"training data: {len(examples)} queries from {folder.root} split {split!r}"
              f"{f' (subsample of {max_queries})' if max_queries else ''}"
              f"{' + title pseudo-queries' if pseudo_queries else ''}; {skipped} skipped (no positive in the "
              f"corpus); {without} with fewer than {group_size - 1} mined negatives (topped up with random "
              f"documents)", file=log)
    return TrainingData(examples, corpus, group_size, seed, other_positives)
