"""pyserini-llama: RepLLaMA, RankLLaMA and LLaRA for Pyserini.

Importing this package is cheap on purpose (it is imported at interpreter start by the Pyserini hook):
heavy modules (torch, transformers, pyserini) are imported only by the submodules that need them.
"""
__version__ = "0.1.0"
