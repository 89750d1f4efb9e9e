"""Trainers that produce checkpoints: RepLLaMA (``python -m pyserini_llama.train.repllama``) and RankLLaMA
(``python -m pyserini_llama.train.rankllama``), with LoRA or full fine-tuning, hard negatives mined by
``python -m pyserini_llama.mine_negatives``, resumable checkpoints and ``torchrun`` data parallelism.

Module map: ``arguments`` (options), ``data`` (groups from BEIR folders), ``collator`` (tokenization shared
with inference), ``lora`` (model set-up and export), ``distributed`` (gathering and gradient averaging),
``loop`` (optimizer, schedule, checkpoints), ``runner`` (the steps both CLIs take), ``repllama`` and
``rankllama`` (losses and CLIs).
"""
