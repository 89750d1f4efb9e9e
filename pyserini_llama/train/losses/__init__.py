"""The training objectives, one per file: each is a ``torch.nn.Module`` whose ``forward(batch)`` returns the loss
the shared :class:`~pyserini_llama.train.loop.Trainer` minimises.

* :mod:`.contrastive`: RepLLaMA's InfoNCE over hard and in-batch negatives;
* :mod:`.listwise`: RankLLaMA's softmax cross-entropy over each group's scores;
* :mod:`.bag_of_words`: LLaRA's EBAE + EBAR bag-of-words objective (plus the next-token term).
"""
