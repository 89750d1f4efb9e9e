"""Where a regression runs and reads: its work folder, the data folders, the device and thread count."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

from .definitions import Regression


@dataclass
class Options:
    data_dir: Optional[str] = None
    work_root: Optional[Path] = None
    limit: Optional[int] = None
    threads: int = 2
    device: Optional[str] = None
    download: bool = True

    def work_dir(self, regression: Regression) -> Path:
        from ..paths import cache_dir, safe_name

        root = Path(self.work_root) if self.work_root else cache_dir() / "regressions"
        name = safe_name(regression.group or regression.name, "regression group")
        return root / (f"{name}.limit-{self.limit}" if self.limit else name)

    def data_dirs(self) -> List[Path]:
        from ..data.collections import default_data_dirs

        return [Path(self.data_dir)] if self.data_dir else default_data_dirs()
