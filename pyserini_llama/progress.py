"""Progress bars that stay out of logs: one bar per stage, shown on a terminal, silent when output is a file.

Example::

    with progress_bar(total=len(docs), desc="encoding documents", unit="doc") as bar:
        ...; bar.update(n)
"""
from __future__ import annotations

import os
from typing import Optional


def progress_bar(total: Optional[int] = None, desc: str = "", unit: str = "it", enabled: bool = True, **kwargs):
    """A tqdm bar; ``enabled=False`` (or ``PYSERINI_LLAMA_PROGRESS=0``) hides it, and without a terminal it is
    hidden too (no escape codes in log files)."""
    from tqdm.auto import tqdm

    if os.environ.get("PYSERINI_LLAMA_PROGRESS", "1") == "0":
        enabled = False
    return tqdm(total=total, desc=desc, unit=unit, disable=None if enabled else True, dynamic_ncols=True,
                mininterval=1.0, **kwargs)
