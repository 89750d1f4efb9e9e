"""Per-model settings, written once: the RepLLaMA, RankLLaMA v1 and LLaRA input recipes, and the published
checkpoints that use them.

Trainers write these configs into the checkpoints they produce, the encoders and rerankers read them back, and
the published checkpoints (which carry no ``pyserini_llama.json``) get theirs from :data:`BUILTIN`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional

from .config import CheckpointConfig

# Our own small checkpoints ship inside the package, under pyserini_llama/checkpoints/<name>/.
PACKAGED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"


def repllama_config(**changes) -> CheckpointConfig:
    """RepLLaMA (tevatron): ``query: {q}`` / ``passage: {title} {text}`` + EOS, EOS pooling, L2-normalised;
    q 32 + p 196 tokens as trained on MS MARCO passage."""
    return CheckpointConfig(**{"kind": "repllama", **changes})


def rankllama_v1_config(**changes) -> CheckpointConfig:
    """RankLLaMA v1: the pair ``("query: {q}", "document: {title} {text}")``, no EOS (it overflowed in fp16),
    score = logit; q 32 + p 164 tokens. bf16 by default: the published float16 setting overflows LLaMA's
    activations in pure fp16 (the reference trained with fp16 *autocast*), and bf16 costs the same on a GPU."""
    settings = dict(kind="rankllama", query_prefix="query: ", passage_prefix="document: ", query_max_length=32,
                    passage_max_length=164, append_eos=False, normalize=False, dtype="bfloat16")
    return CheckpointConfig(**{**settings, **changes})


# --- LLaRA -------------------------------------------------------------------------------------------------

PASSAGE_TOKENS = tuple(f"<s{i}>" for i in range(1, 9))
QUERY_TOKENS = tuple(f"<s{i}>" for i in range(9, 17))


@dataclass(frozen=True)
class PromptFormat:
    """One LLaRA prompt format: the passage (EBAE) and query (EBAR) suffixes and how many end states to pool.

    ``{eos}`` in a suffix stands for the tokenizer's EOS token (``</s>`` for LLaMA-2).
    """

    name: str
    prefix: str
    passage_suffix: str  # EBAE: the text predicts its own tokens
    query_suffix: str  # EBAR: the text predicts the tokens of the next passage
    k: int  # how many states at the end of a suffix make the embedding
    added_tokens: tuple = ()

    def suffixes(self, eos_token: Optional[str] = "</s>") -> tuple:
        eos = eos_token or ""
        return self.passage_suffix.format(eos=eos), self.query_suffix.format(eos=eos)

    def checkpoint_config(self, eos_token: Optional[str] = "</s>", **changes) -> CheckpointConfig:
        """The config (kind ``llara``) that encodes with this format; ``eos_token`` resolves ``{eos}``.

        The max lengths count the text only, the prompt tokens come on top (``max_length_scope="text"``): that
        is how the BAAI/LLARA model card encodes queries and passages for retrieval."""
        passage_suffix, query_suffix = self.suffixes(eos_token)
        settings = dict(kind="llara", query_prefix=self.prefix, passage_prefix=self.prefix,
                        query_suffix=query_suffix, passage_suffix=passage_suffix, query_max_length=64,
                        passage_max_length=512, pooling="mean_last_k", pooling_k=self.k, normalize=True,
                        append_eos=False, dtype="bfloat16", padding_side="left", max_length_scope="text",
                        extra={"prompt_format": self.name})
        return CheckpointConfig(**{**settings, **changes})


PROMPT_FORMATS: Dict[str, PromptFormat] = {
    # FlagEmbedding research/LLARA and the BAAI/LLARA-* checkpoints: quoted text, an instruction and 8 added
    # tokens whose last-layer states are averaged (left padding keeps them at the end of every row).
    "released": PromptFormat(
        name="released", prefix='"',
        passage_suffix='", summarize the above passage within eight words: ' + "".join(PASSAGE_TOKENS),
        query_suffix='", predict the following passage within eight words: ' + "".join(QUERY_TOKENS),
        k=8, added_tokens=PASSAGE_TOKENS + QUERY_TOKENS),
    # The Llama2Vec paper: the state of the final </s> after a short suffix.
    "paper": PromptFormat(
        name="paper", prefix="", passage_suffix=" The original sentence: {eos}",
        query_suffix=" The next sentence: {eos}", k=1),
}


# --- published checkpoints ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Builtin:
    """A published checkpoint under a short name, with the recipe (lengths, layout) its numbers were made with."""

    path: str  # hub id
    config: CheckpointConfig
    recipe: str = ""  # where the settings come from


LLAMA2_7B, LLAMA2_13B = "meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf"
REPLLAMA_PASSAGE = "castorini/repllama-v1-7b-lora-passage"

# The published RepLLaMA and RankLLaMA adapters were trained by tevatron v1 (transformers 4.33), and every
# published number (MS MARCO, TREC DL, BEIR) was computed by its encode.py / reranker_inference.py. RepLLaMA rows
# there have no BOS, the text cut at max length - 3 and an EOS appended; both models keep an empty title's space
# ("passage:  text", "document:  text"). The model card's example adds a BOS, tevatron v2 adds a BOS and strips
# the joined title and text; both are offered (input_layout), but the default is the layout the adapters saw in
# training and that produced the numbers users compare against. (RankLLaMA's pair layout is the same in v1 and
# on its card: only the title join depends on the layout.)
PUBLISHED_LAYOUT = "tevatron-v1"

# Loaded unchanged when present (HF cache, or downloaded when online). Several names may share one checkpoint:
# they differ in the recipe (a hub id alone gets the first name's recipe). Pyserini's CLIs pick our encoder
# class for any --encoder name containing "repllama" or "llara", so these names work there too.
BUILTIN: Dict[str, Builtin] = {
    "repllama": Builtin(
        REPLLAMA_PASSAGE, repllama_config(base_model=LLAMA2_7B, query_max_length=32, passage_max_length=196,
                                          dtype="float16", input_layout=PUBLISHED_LAYOUT),
        "MS MARCO passage / TREC DL: tevatron v1, --q_max_len 32 --p_max_len 196 (as trained)"),
    "repllama-beir": Builtin(
        REPLLAMA_PASSAGE, repllama_config(base_model=LLAMA2_7B, query_max_length=512, passage_max_length=512,
                                          dtype="float16", input_layout=PUBLISHED_LAYOUT),
        "BEIR: tevatron v1 examples/repllama, --q_max_len 512 --p_max_len 512"),
    "repllama-doc": Builtin(
        "castorini/repllama-v1-7b-lora-doc",
        repllama_config(base_model=LLAMA2_7B, query_max_length=32, passage_max_length=2048, dtype="float16",
                        input_layout=PUBLISHED_LAYOUT),
        "MS MARCO document: whole documents up to 2048 tokens (paper), queries 32"),
    "rankllama": Builtin(
        "castorini/rankllama-v1-7b-lora-passage",
        rankllama_v1_config(base_model=LLAMA2_7B, input_layout=PUBLISHED_LAYOUT),
        "MS MARCO passage / TREC DL: tevatron v1 examples/rankllama, --q_max_len 32 --p_max_len 164 (the BEIR "
        "runs' lengths are not published; the same are used)"),
    "rankllama-doc": Builtin(
        "castorini/rankllama-v1-7b-lora-doc",
        rankllama_v1_config(base_model=LLAMA2_7B, passage_max_length=4064, input_layout=PUBLISHED_LAYOUT),
        "MS MARCO document: documents up to 4096 tokens"),
    "rankllama-13b": Builtin(
        "castorini/rankllama-v1-13b-lora-passage",
        rankllama_v1_config(base_model=LLAMA2_13B, input_layout=PUBLISHED_LAYOUT), "as rankllama, 13B"),
    "llara": Builtin(
        "BAAI/LLARA-passage", PROMPT_FORMATS["released"].checkpoint_config(),
        "MS MARCO passage: the BAAI/LLARA model card's encoding (text capped, prompt on top); query text 64 "
        "tokens (FlagEmbedding's fine-tuning length), passage text 512 (the card's)"),
    "llara-beir": Builtin(
        "BAAI/LLARA-beir", PROMPT_FORMATS["released"].checkpoint_config(query_max_length=512,
                                                                        passage_max_length=512),
        "BEIR: the BAAI/LLARA model card's encoding with its default max_length 512"),
}


def find_builtin(name_or_hub_id: str) -> Optional[str]:
    """The built-in name for a name or a published hub id (the first name listing that id), else None."""
    key = name_or_hub_id.lower()
    if key in BUILTIN:
        return key
    return next((name for name, entry in BUILTIN.items() if entry.path.lower() == key), None)
