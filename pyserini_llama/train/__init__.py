"""Trainers that produce checkpoints, all on one runner: RepLLaMA (``python -m pyserini_llama.train.repllama``),
RankLLaMA (``python -m pyserini_llama.train.rankllama``) and LLaRA adaptation (``python -m
pyserini_llama.train.llara``), with LoRA or full fine-tuning, hard negatives mined by
``python -m pyserini_llama.mine_negatives``, resumable checkpoints and ``torchrun`` data parallelism.

Module map: ``arguments`` (options as dataclasses -> the CLI parser), ``data`` (query groups from BEIR folders),
``llara_data`` (text chunks for LLaRA), ``collator`` (tokenization and padding shared with inference),
``losses/`` (one objective per file), ``lora`` (base model, LoRA, export), ``distributed`` (gathering and
gradient averaging), ``loop`` (optimizer, schedule, checkpoints), ``runner`` (the steps every trainer takes,
with the task's hooks), and the thin CLIs ``repllama``, ``rankllama``, ``llara``.
"""
