"""LLaRA / Llama2Vec: prompts, token layout and the dense encoder (pure torch/transformers; no pyserini).

A LLaRA text embedding is read at the end of a suffix prompt that asks the LLM to summarise the text
(EBAE, used for passages) or to predict what follows it (EBAR, used for queries). Two prompt formats exist:

``released`` (FlagEmbedding ``research/LLARA``, the ``BAAI/LLARA-*`` checkpoints)::

    <s>"{passage}", summarize the above passage within eight words: <s1><s2><s3><s4><s5><s6><s7><s8>
    <s>"{query}", predict the following passage within eight words: <s9><s10><s11><s12><s13><s14><s15><s16>

The 16 ``<sN>`` tokens are added to the vocabulary; the embedding is the mean of the last 8 hidden states
(the 8 added tokens; left padding keeps them at the end of every row), L2-normalised.

``paper`` (the Llama2Vec paper): ``{text} The original sentence: </s>`` for passages and
``{text} The next sentence: </s>`` for queries, embedding = the state of that final ``</s>`` (the mean of the
last 1), L2-normalised.

Token layout (as the reference builds it, not by tokenizing one joined string): the prefix tokenized *with* the
tokenizer's special tokens (BOS + ``"``), the text *without*, truncated, then the suffix *without* special tokens.
Joining the strings first would change the tokens at both seams with a SentencePiece tokenizer. What the maximum
length caps is the config's ``max_length_scope``: ``text`` (the default of LLaRA configs) cuts the text alone at
the length and puts the prompt tokens on top, as the BAAI/LLARA model card's inference code does; ``row`` cuts the
text so that the whole row fits, as FlagEmbedding's fine-tuning data code does.

Example::

    enc = LlaraEncoder.from_checkpoint("llara", device="cuda")      # BAAI/LLARA-passage
    q = enc.encode_queries(["what is a llama"])
    p = enc.encode_passages([("Llama", "The llama is a domesticated South American camelid.")])
    scores = q @ p.T
"""
from __future__ import annotations

from typing import List, Optional, Sequence

from ..errors import UserError
from ..models.config import CheckpointConfig
from ..models.presets import PASSAGE_TOKENS, PROMPT_FORMATS, QUERY_TOKENS, PromptFormat
from .inputs import PassageLike, cut_long_texts, title_text
from .repllama import RepLlamaEncoder


def prompt_format(name: str) -> PromptFormat:
    try:
        return PROMPT_FORMATS[name]
    except KeyError:
        raise UserError(f"unknown LLaRA prompt format {name!r} (use {', '.join(PROMPT_FORMATS)})") from None


def add_prompt_tokens(tokenizer, model, fmt: PromptFormat) -> int:
    """Add the format's new tokens as special tokens (as the reference does) and grow the embeddings.

    Returns how many tokens were new; tokens already in the vocabulary (an adapted checkpoint) are kept.
    """
    missing = [t for t in fmt.added_tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_tokens(missing, special_tokens=True)  # never split, never normalised
    if model is not None and len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    return len(missing)


def check_prompt_tokens(tokenizer, config: CheckpointConfig) -> None:
    """Refuse a released-format config whose tokenizer lacks the ``<sN>`` tokens (they would split into text)."""
    if config.extra.get("prompt_format") != "released":
        return
    vocab = tokenizer.get_vocab()
    missing = [t for t in PASSAGE_TOKENS + QUERY_TOKENS if t not in vocab]
    if missing:
        raise UserError(f"the tokenizer lacks LLaRA's added tokens {missing[:3]}...; use a LLaRA checkpoint "
                        f"(its tokenizer carries them) or adapt one with python -m pyserini_llama.train.llara")


def segment_token_ids(tokenizer, texts: Sequence[str], prefix: str, suffix: str, max_length: int,
                      extra_suffix: Sequence[int] = (), scope: str = "row") -> List[List[int]]:
    """``prefix`` (with special tokens) + text (without, truncated) + ``suffix`` (without) per text.

    With ``scope="row"`` the text is cut so that the row, ``extra_suffix`` ids included, is at most ``max_length``
    tokens; with ``scope="text"`` the text alone is cut at ``max_length`` tokens and the prompt comes on top.
    """
    prefix_ids = tokenizer(prefix, add_special_tokens=True)["input_ids"]
    suffix_ids = tokenizer(suffix, add_special_tokens=False)["input_ids"] + list(extra_suffix)
    if scope not in ("row", "text"):
        raise ValueError(f"unknown max length scope {scope!r} (use 'row' or 'text')")
    room = max_length if scope == "text" else max_length - len(prefix_ids) - len(suffix_ids)
    if room < 1:
        raise UserError(f"max_length {max_length} leaves no room for text after the LLaRA prompt "
                        f"({len(prefix_ids) + len(suffix_ids)} tokens)")
    if not texts:
        return []
    body = tokenizer(cut_long_texts(tokenizer, texts, room), add_special_tokens=False, truncation=True,
                     max_length=room, return_attention_mask=False)["input_ids"]
    return [prefix_ids + row + suffix_ids for row in body]


def passage_text(doc: PassageLike) -> str:
    title, text = title_text(doc)
    return f"{title or ''} {text}".strip()


def query_token_ids(tokenizer, config: CheckpointConfig, queries: Sequence[str],
                    max_length: Optional[int] = None) -> List[List[int]]:
    """LLaRA query rows (the EBAR prompt) for a ``kind="llara"`` config; trainers call this too."""
    eos = [tokenizer.eos_token_id] if config.append_eos else []
    return segment_token_ids(tokenizer, queries, config.query_prefix, config.query_suffix,
                             max_length or config.query_max_length, eos, config.max_length_scope)


def passage_token_ids(tokenizer, config: CheckpointConfig, docs: Sequence[PassageLike],
                      max_length: Optional[int] = None) -> List[List[int]]:
    """LLaRA passage rows (the EBAE prompt); a document is ``(title, text)``, a ``Document`` or a string."""
    eos = [tokenizer.eos_token_id] if config.append_eos else []
    return segment_token_ids(tokenizer, [passage_text(d) for d in docs], config.passage_prefix,
                             config.passage_suffix, max_length or config.passage_max_length, eos,
                             config.max_length_scope)


class LlaraEncoder(RepLlamaEncoder):
    """A LLaRA checkpoint as a dense bi-encoder: the RepLLaMA machinery with LLaRA's token layout.

    Pooling (mean of the last ``pooling_k`` states), left padding and normalisation come from the checkpoint's
    :class:`CheckpointConfig` (see :meth:`PromptFormat.checkpoint_config`); only the token layout differs
    from RepLLaMA, so only the two row builders are overridden, with :func:`query_token_ids` /
    :func:`passage_token_ids`.

    Example::

        enc = LlaraEncoder.from_checkpoint("/path/to/llara-adapted-checkpoint")
        q = enc.encode_queries(["boundary layer heat transfer"])       # (1, hidden) float32, unit norm
    """

    @classmethod
    def from_checkpoint(cls, name_or_path: str, device: str = "auto", dtype: Optional[str] = None,
                        trust_remote_code: bool = False, config: Optional[CheckpointConfig] = None,
                        **kwargs) -> "LlaraEncoder":
        encoder = super().from_checkpoint(name_or_path, device=device, dtype=dtype,
                                          trust_remote_code=trust_remote_code, config=config, **kwargs)
        if encoder.config.kind != "llara":
            raise UserError(f"{name_or_path}: not a LLaRA checkpoint (kind {encoder.config.kind!r} in its "
                            f"pyserini_llama.json)")
        check_prompt_tokens(encoder.tokenizer, encoder.config)
        encoder.tokenizer.padding_side = encoder.config.padding_side
        return encoder

    def query_token_ids(self, queries: Sequence[str], max_length: Optional[int] = None) -> List[List[int]]:
        return query_token_ids(self.tokenizer, self.config, queries, max_length)

    def passage_token_ids(self, docs: Sequence[PassageLike], max_length: Optional[int] = None) -> List[List[int]]:
        return passage_token_ids(self.tokenizer, self.config, docs, max_length)
