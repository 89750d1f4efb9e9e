"""LLaRA adaptation data: plain text -> (text, EBAE target, EBAR target) examples -> one-pass batches.

Examples come from any corpus (BEIR ``corpus.jsonl``, a BEIR folder, or Pyserini JsonCollection JSONL): each
document (title + text) is split into sentences by a deterministic regex, sentences are packed into chunks of
at most ``chunk_words`` words, and chunk *i* is paired with chunk *i+1* (its EBAR target; the last chunk of a
document has none, so only its EBAE term counts). JSONL in the reference's own format (``input``,
``output_summarize``, ``output_predict``; FlagEmbedding ``research/LLARA/pretrain``) is read as is.

A batch row is ``prefix + text + EBAE suffix + EBAR suffix`` (left padded, as the reference), and both pretext
tasks run in one forward pass: the EBAR suffix may not attend to the EBAE suffix and reuses its position ids
(see :func:`attention_and_positions`).

Example::

    examples = load_examples(["corpus.jsonl"], chunk_words=64)
    collator = LlaraCollator(tokenizer, PROMPT_FORMATS["released"], max_length=128)
    batch = collator(examples[:8])   # input_ids, attention_4d (B,1,L,L bool), position_ids, targets...
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Sequence

import torch

from ..data.beir import parse_document
from ..data.jsonl import iter_jsonl
from ..models.presets import PromptFormat
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
        if not (path / "corpus.jsonl").exists():
            raise UserError(f"{path}: folder without corpus.jsonl")
        return path / "corpus.jsonl"
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


def attention_and_positions(lengths: torch.Tensor, width: int, padding_side: str = "left"
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-pass mask and position ids for rows ``[input | EBAE suffix | EBAR suffix]``.

    ``lengths``: ``(batch, 3)`` token counts of the three segments. Returns ``allowed`` ``(batch, 1, L, L)``
    bool (query position may attend key position) and ``position_ids`` ``(batch, L)``:
      * causal attention over real tokens, pads never attended;
      * the EBAR suffix does not attend the EBAE suffix, so it sees exactly ``[input | EBAR suffix]``;
      * position ids count ``0..L-1`` over the row (pads included, as HF does by default and as the reference
        does with left padding), except that the EBAR suffix restarts at the EBAE suffix's first position;
      * a pad position attends itself only, so no softmax row is empty (it never feeds a real token).
    """
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    lengths = lengths.to(torch.long)
    total = lengths.sum(1)
    if int(total.max()) > width:
        raise ValueError(f"rows of {int(total.max())} tokens do not fit width {width}")
    start = width - total if padding_side == "left" else torch.zeros_like(total)
    a_start = start + lengths[:, 0]
    b_start = a_start + lengths[:, 1]
    pos = torch.arange(width).unsqueeze(0)
    real = (pos >= start[:, None]) & (pos < (start + total)[:, None])
    in_a = (pos >= a_start[:, None]) & (pos < b_start[:, None])
    in_b = (pos >= b_start[:, None]) & (pos < (start + total)[:, None])
    causal = torch.ones(width, width, dtype=torch.bool).tril()
    allowed = causal[None] & real[:, None, :] & real[:, :, None] & ~(in_b[:, :, None] & in_a[:, None, :])
    allowed |= torch.eye(width, dtype=torch.bool)[None] & ~real[:, :, None]
    position_ids = torch.where(in_b, a_start[:, None] + (pos - b_start[:, None]), pos.expand_as(in_b))
    return allowed.unsqueeze(1), position_ids


class LlaraCollator:
    """Tokenize examples into one-pass EBAE + EBAR batches (the reference's layout and truncation).

    Rows are ``prefix (with special tokens) + text (truncated to max_length minus prefix and both suffixes)
    + EBAE suffix + EBAR suffix``, left padded to a multiple of ``pad_to_multiple_of``. Targets are the
    tokenizer's ids of the target texts (truncated to ``max_length``), special tokens excluded, as
    multi-hot ``(batch, vocab)`` rows; ``lm_labels`` are the input's tokens for the reference's next-token term.
    """

    def __init__(self, tokenizer, fmt: PromptFormat, max_length: int = 128, strip_stop_words: bool = True,
                 padding_side: str = "left", pad_to_multiple_of: int = 8):
        self.tokenizer = tokenizer
        self.fmt = fmt
        self.max_length = max_length
        self.strip_stop_words = strip_stop_words
        self.padding_side = padding_side
        self.pad_to_multiple_of = max(1, pad_to_multiple_of)
        ebae, ebar = fmt.suffixes(tokenizer.eos_token)
        self.prefix_ids = tokenizer(fmt.prefix, add_special_tokens=True)["input_ids"]
        self.ebae_ids = tokenizer(ebae, add_special_tokens=False)["input_ids"]
        self.ebar_ids = tokenizer(ebar, add_special_tokens=False)["input_ids"]
        self.room = max_length - len(self.prefix_ids) - len(self.ebae_ids) - len(self.ebar_ids)
        if self.room < 1:
            raise UserError(f"--max-length {max_length} leaves no room for text after the two LLaRA "
                            f"suffixes ({max_length - self.room} tokens)")
        if fmt.k > min(len(self.ebae_ids), len(self.ebar_ids)):
            raise ValueError(f"prompt format {fmt.name!r}: k={fmt.k} exceeds a suffix's length")
        special = set(tokenizer.all_special_ids) | {tokenizer.pad_token_id}
        self.excluded = sorted(i for i in special if i is not None)
        self.vocab_size = len(tokenizer)

    def targets(self, texts: Sequence[str]) -> torch.Tensor:
        if self.strip_stop_words:
            texts = [remove_stop_words(t) for t in texts]
        ids = self.tokenizer(list(texts), add_special_tokens=True, truncation=True, max_length=self.max_length,
                             return_attention_mask=False)["input_ids"]
        hot = torch.zeros(len(ids), self.vocab_size, dtype=torch.bool)
        for i, row in enumerate(ids):
            hot[i, torch.tensor(row, dtype=torch.long)] = True
        hot[:, self.excluded] = False
        return hot

    def __call__(self, examples: Sequence[PretrainExample]) -> Dict[str, torch.Tensor]:
        body = self.tokenizer([ex.text for ex in examples], add_special_tokens=False, truncation=True,
                              max_length=self.room, return_attention_mask=False)["input_ids"]
        rows = [self.prefix_ids + b + self.ebae_ids + self.ebar_ids for b in body]
        m = self.pad_to_multiple_of
        width = -(-max(map(len, rows)) // m) * m
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
        lm_labels = torch.full((len(rows), width), -100, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # real tokens (for counting)
        for i, (row, b) in enumerate(zip(rows, body)):
            start = width - len(row) if self.padding_side == "left" else 0
            input_ids[i, start:start + len(row)] = torch.tensor(row)
            attention_mask[i, start:start + len(row)] = 1
            text_start = start + len(self.prefix_ids)
            lm_labels[i, text_start:text_start + len(b)] = torch.tensor(b, dtype=torch.long)
            lm_labels[i, start] = -100  # the row's first token has nothing before it to predict it from
        lengths = torch.tensor([[len(self.prefix_ids) + len(b), len(self.ebae_ids), len(self.ebar_ids)]
                                for b in body])
        allowed, position_ids = attention_and_positions(lengths, width, self.padding_side)
        # the last k states of each suffix: where the embeddings are read
        ends = lengths.cumsum(1) + (width - lengths.sum(1, keepdim=True) if self.padding_side == "left" else 0)
        offsets = torch.arange(-self.fmt.k, 0)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "attention_4d": allowed,
                "position_ids": position_ids,
                "summarize_positions": ends[:, 1:2] + offsets, "predict_positions": ends[:, 2:3] + offsets,
                "lm_labels": lm_labels,
                "summarize_targets": self.targets([ex.summarize for ex in examples]),
                "predict_targets": self.targets([ex.predict for ex in examples])}

