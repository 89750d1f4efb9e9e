"""LLaRA adaptation data: plain text -> (text, EBAE target, EBAR target) examples.

Examples come from any corpus (BEIR ``corpus.jsonl``, a BEIR folder, or Pyserini JsonCollection JSONL): each
document (title + text) is split into sentences by a deterministic regex, sentences are packed into chunks of
at most ``chunk_words`` words, and chunk *i* is paired with chunk *i+1* (its EBAR target; the last chunk of a
document has none, so only its EBAE term counts). JSONL in the reference's own format (``input``,
``output_summarize``, ``output_predict``; FlagEmbedding ``research/LLARA/pretrain``) is read as is.

:class:`~pyserini_llama.train.collator.LlaraCollator` turns examples into one-pass batches.

Example::

    examples = load_examples(["corpus.jsonl"], chunk_words=64)
    data = ExampleData(examples, seed=42)     # what StepBatches samples from, like TrainingData
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, List, Sequence

from ..data.beir import parse_document
from ..data.jsonl import iter_jsonl
from ..errors import DataError, UserError

# A sentence ends at . ! or ? (closing quotes/brackets included) followed by whitespace. Deliberately simple and
# deterministic; an abbreviation ("Fig. 3") splits a sentence in two, which only shortens a chunk.
SENTENCE_END = re.compile(r"(?:(?<=[.!?])|(?<=[.!?][\"')\]]))\s+")

# NLTK's English stop words without the apostrophe forms: the reference strips non-word characters before
# filtering, so "don't" arrives as "don" and "t", both below. (nltk is not a dependency.)
STOP_WORDS = frozenset("""
i me my myself we our ours ourselves you your yours yourself yourselves he him his himself she her hers
herself it its itself they them their theirs themselves what which who whom this that these those am is are
was were be been being have has had having do does did doing a an the and but if or because as until while
of at by for with about against between into through during before after above below to from up down in out
on off over under again further then once here there when where why how all any both each few more most
other some such no nor not only own same so than too very s t can will just don should now d ll m o re ve y
ain aren couldn didn doesn hadn hasn haven isn ma mightn mustn needn shan shouldn wasn weren won wouldn
""".split())
NON_WORD = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class PretrainExample:
    text: str  # the input
    summarize: str  # EBAE target: the input's own text
    predict: str  # EBAR target: the text that follows ("" when none)


def split_sentences(text: str) -> List[str]:
    """Split on sentence-final punctuation followed by whitespace; never returns empty strings."""
    return [s.strip() for s in SENTENCE_END.split(text.strip()) if s.strip()]


def chunk_sentences(sentences: Sequence[str], chunk_words: int) -> List[str]:
    """Pack consecutive sentences into chunks of at most ``chunk_words`` words (a longer sentence stands alone)."""
    chunks: List[str] = []
    current: List[str] = []
    words = 0
    for sentence in sentences:
        n = len(sentence.split())
        if current and words + n > chunk_words:
            chunks.append(" ".join(current))
            current, words = [], 0
        current.append(sentence)
        words += n
    if current:
        chunks.append(" ".join(current))
    return chunks


def document_examples(text: str, chunk_words: int) -> List[PretrainExample]:
    chunks = chunk_sentences(split_sentences(text), chunk_words)
    return [PretrainExample(chunk, chunk, chunks[i + 1] if i + 1 < len(chunks) else "")
            for i, chunk in enumerate(chunks)]


def _corpus_file(path: Path) -> Path:
    if path.is_dir():
        from ..data.beir import BeirFolder

        return BeirFolder(path).corpus_path  # corpus.jsonl or corpus.jsonl.gz
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    return path


def iter_examples(path: Path, chunk_words: int) -> Iterator[PretrainExample]:
    """Examples from one corpus file or BEIR folder (document order, then chunk order)."""
    path = _corpus_file(Path(path))
    seen: dict = {}
    lines = 0
    for lineno, obj in iter_jsonl(path):
        lines += 1
        if "input" in obj:  # the reference's pretraining format
            fields = [obj.get(k) for k in ("input", "output_summarize", "output_predict")]
            if not all(isinstance(v, str) for v in fields):
                raise DataError(path, "fields input, output_summarize and output_predict must be strings",
                                lineno)
            yield PretrainExample(*fields)
            continue
        doc = parse_document(obj, path, lineno)  # a corpus line is checked as every reader checks it
        if doc.docid in seen:
            raise DataError(path, f"duplicate document id {doc.docid!r} (first seen on line {seen[doc.docid]})",
                            lineno)
        seen[doc.docid] = lineno
        if doc.contents:  # an empty document (Cranfield has a few) has nothing to learn from: skipped
            yield from document_examples(doc.contents, chunk_words)
    if not lines:
        raise DataError(path, "corpus is empty")


def load_examples(paths: Iterable[Path], chunk_words: int = 64) -> List[PretrainExample]:
    if chunk_words < 1:
        raise UserError(f"--chunk-words must be at least 1, got {chunk_words}")
    paths = list(paths)
    examples = [ex for path in paths for ex in iter_examples(Path(path), chunk_words)]
    if not examples:
        raise UserError(f"{', '.join(map(str, paths))}: no training text found (every document is empty)")
    return examples


def remove_stop_words(text: str) -> str:
    """The reference's ``remove_stop_words`` target cleaning: non-word runs -> space, stop words dropped."""
    return " ".join(w for w in NON_WORD.sub(" ", text).split() if w.lower() not in STOP_WORDS)


class ExampleData:
    """Adaptation examples in the shape :class:`~pyserini_llama.train.data.StepBatches` samples from.

    The order of an epoch is a pure function of (seed, epoch), so ``--resume`` continues with the same batches.
    """

    def __init__(self, examples: Sequence[PretrainExample], seed: int = 42):
        if not examples:
            raise UserError("no training text found in the given corpora")
        self.examples, self.seed = list(examples), seed

    def __len__(self) -> int:
        return len(self.examples)

    def epoch_order(self, epoch: int) -> List[int]:
        order = list(range(len(self.examples)))
        random.Random(f"{self.seed}:llara:{epoch}").shuffle(order)
        return order

    def group(self, index: int, epoch: int) -> PretrainExample:
        return self.examples[index]
