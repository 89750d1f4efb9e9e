"""A model folder with another model's architecture and tokenizer but freshly initialised weights.

For runs whose point is not the weights (speed, or one GPU vs two giving the same loss curve), on machines that
do not hold the pretrained weights: only ``config.json`` and the tokenizer files of ``--like`` are read.

    python scripts/random_model.py --like ~/.cache/pyserini-llama/models/smollm2-135m --output /tmp/random-smollm2
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--like", required=True, help="folder with config.json and tokenizer files")
    parser.add_argument("--output", required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    like, out = Path(args.like), Path(args.output)
    if not (like / "config.json").is_file():
        print(f"error: {like}/config.json not found", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    for name in TOKENIZER_FILES:
        if (like / name).is_file():
            shutil.copy(like / name, out / name)
    torch.manual_seed(args.seed)
    config = AutoConfig.from_pretrained(str(like))
    model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(str(out), safe_serialization=True)
    print(f"wrote {out}: {sum(p.numel() for p in model.parameters()):,} random parameters", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
