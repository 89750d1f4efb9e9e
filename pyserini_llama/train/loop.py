"""The training loop every trainer shares: AdamW with linear warm-up and decay, bf16 autocast, gradient
accumulation, data parallelism under ``torchrun``, periodic resumable checkpoints and an atomic final export.

A checkpoint (``<output>/checkpoint-<step>/``, written under a temporary name and renamed) holds the trainable
weights in float32, the optimizer and scheduler states, every rank's RNG states and the loss history. The data
position needs no state: the batches of step ``s`` are a pure function of ``s`` and the seed (see
:class:`~pyserini_llama.train.data.StepBatches`). ``--resume`` therefore continues the loss trajectory
exactly where an interrupted run left it. When training ends, the model is exported to a temporary folder
next to ``<output>``, which then replaces ``<output>`` (and its periodic checkpoints) in one rename; the export
carries ``trainer_state.json`` with the loss curve.

Example::

    trainer = Trainer(module, args.training, total_steps=100, dist_info=DistInfo(), device="cuda",
                      dtype="bfloat16")
    loss, tokens = trainer.step(batches(0))                     # one optimizer step
    trainer.fit(batches, collate, output=Path("out"), export=lambda folder: ...)
"""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, List, Optional, Tuple

import torch

from ..errors import UserError
from .arguments import TrainingArguments
from .collator import count_tokens
from .distributed import DistInfo, all_gather_objects, average_gradients, barrier
from .lora import trainable_parameters

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
FINISHED_MARKER = "pyserini_llama.json"  # written into every exported model, never into a checkpoint


def warmup_steps_for(requested: int, total_steps: int) -> int:
    """The requested warm-up, capped at 10% of the run so that short runs still spend most steps at full lr."""
    return min(requested, total_steps // 10)


def linear_schedule(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total - step) / max(1, total - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def to_device(batch, device):
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list):
        return [to_device(v, device) for v in batch]
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    return batch


def _rng_state(device: torch.device) -> dict:
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def latest_checkpoint(output: Path) -> Optional[Path]:
    found = [(int(m.group(1)), p) for p in output.glob("checkpoint-*") if (m := CHECKPOINT_RE.match(p.name))
             and (p / "trainer_state.json").exists()]
    return max(found)[1] if found else None


class Trainer:
    """One module (``forward(batch) -> loss``), its optimizer and schedule, and the loop around them."""

    def __init__(self, module: torch.nn.Module, args: TrainingArguments, total_steps: int, dist_info: DistInfo,
                 device: str, dtype: str = "bfloat16"):
        self.module, self.args, self.total_steps, self.dist = module, args, total_steps, dist_info
        self.device = torch.device(device)
        self.autocast = dict(device_type=self.device.type, dtype=torch.bfloat16, enabled=dtype == "bfloat16")
        self.params = [p for _, p in trainable_parameters(module)]
        if not self.params:
            raise UserError("the model has no trainable parameters")
        fused = self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(self.params, lr=args.learning_rate, weight_decay=args.weight_decay,
                                           fused=fused)
        self.warmup = warmup_steps_for(args.warmup_steps, total_steps)
        self.scheduler = linear_schedule(self.optimizer, self.warmup, total_steps)
        self.history: List[Tuple[int, float]] = []
        self.step_count = 0
        self.tokens_seen = 0
        self.train_seconds = 0.0

    # -- one optimizer step ------------------------------------------------------------------------------

    def step(self, micro_batches: List[dict]) -> Tuple[float, int]:
        """Forward/backward over the micro-batches, average gradients over ranks, update; returns the global
        mean loss and the number of real tokens processed by all ranks."""
        self.module.train()
        loss_sum = torch.zeros((), device=self.device)
        tokens = 0
        for batch in micro_batches:
            tokens += count_tokens(batch)
            batch = to_device(batch, self.device)
            with torch.autocast(**self.autocast):
                loss = self.module(batch) / len(micro_batches)
            loss.backward()
            loss_sum += loss.detach().float()
        average_gradients(self.params)
        if self.args.max_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.args.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        stats = torch.stack([loss_sum, torch.tensor(float(tokens), device=self.device)])
        if self.dist.enabled:
            torch.distributed.all_reduce(stats)
            stats[0] /= self.dist.world_size
        loss_value, tokens_all = stats.tolist()
        return loss_value, int(tokens_all)

    # -- the loop ----------------------------------------------------------------------------------------

    def fit(self, batches: Callable[[int], list], collate: Callable[[list], dict], output: Path,
            export: Callable[[Path], None], resume: bool = False) -> dict:
        """Train to ``total_steps`` and export the model to ``output``; returns the trainer state."""
        from tqdm.auto import tqdm

        if resume and (found := latest_checkpoint(output)) is not None:
            self.load_checkpoint(found)
            if self.dist.is_main:
                print(f"resuming from {found} (step {self.step_count} of {self.total_steps})", flush=True)
        bar = tqdm(total=self.total_steps, initial=self.step_count, desc="training", unit="step",
                   disable=not (self.dist.is_main and self.args.progress), dynamic_ncols=True)
        started, session_tokens = time.perf_counter(), 0
        # The next step's batches are collated (tokenized, padded) on a CPU thread while the GPU trains on this
        # step's: at 135M collation is a fifth of a step. Batches are a pure function of the step, so
        # prefetching changes nothing but the wait.
        prefetch = ThreadPoolExecutor(max_workers=1)
        collated = lambda step: [collate(groups) for groups in batches(step)]  # noqa: E731
        upcoming = prefetch.submit(collated, self.step_count) if self.step_count < self.total_steps else None
        try:
            while self.step_count < self.total_steps:
                t0 = time.perf_counter()
                micro_batches = upcoming.result()
                if self.step_count + 1 < self.total_steps:
                    upcoming = prefetch.submit(collated, self.step_count + 1)
                loss, tokens = self.step(micro_batches)
                if loss != loss:
                    raise UserError(f"loss is NaN at step {self.step_count + 1}; lower --learning-rate or use "
                                    f"--dtype float32")
                self.step_count += 1
                self.train_seconds += time.perf_counter() - t0
                self.tokens_seen += tokens
                session_tokens += tokens
                self.history.append((self.step_count, loss))
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.scheduler.get_last_lr()[0]:.2e}",
                                tok_s=f"{session_tokens / max(time.perf_counter() - started, 1e-9):,.0f}")
                if self.args.save_steps and self.step_count % self.args.save_steps == 0 \
                        and self.step_count < self.total_steps:
                    self.save_checkpoint(output)
        finally:  # an error mid-run (a NaN loss): the thread is not left collating
            prefetch.shutdown(cancel_futures=True)
        bar.close()
        state = self.state()
        if self.dist.is_main:
            finalize(output, lambda folder: (export(folder), _write_json(folder / "trainer_state.json", state)))
        barrier()
        return state

    def state(self) -> dict:
        return {"step": self.step_count, "total_steps": self.total_steps, "warmup_steps": self.warmup,
                "world_size": self.dist.world_size, "tokens": self.tokens_seen,
                "train_seconds": round(self.train_seconds, 3),
                "tokens_per_second": round(self.tokens_seen / self.train_seconds, 1) if self.train_seconds else None,
                "loss_history": [[s, loss] for s, loss in self.history]}

    # -- checkpoints -------------------------------------------------------------------------------------

    def save_checkpoint(self, output: Path) -> None:
        from safetensors.torch import save_file

        from ..data.atomic import atomic_dir

        rng = all_gather_objects(_rng_state(self.device))  # every rank's dropout stream
        if self.dist.is_main:
            output.mkdir(parents=True, exist_ok=True)
            with atomic_dir(output / f"checkpoint-{self.step_count}", overwrite=True) as tmp:
                weights = {n: p.detach().float().cpu().clone().contiguous()
                           for n, p in trainable_parameters(self.module)}
                save_file(weights, str(tmp / "trainable.safetensors"))
                torch.save({"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                            "rng": rng}, tmp / "state.pt")
                _write_json(tmp / "trainer_state.json", {**self.state(), "args": _args_dict(self.args)})
            self._prune_checkpoints(output)
        barrier()

    def _prune_checkpoints(self, output: Path) -> None:
        found = sorted((int(m.group(1)), p) for p in output.glob("checkpoint-*")
                       if (m := CHECKPOINT_RE.match(p.name)))
        for _, path in found[:-max(1, self.args.save_total_limit)]:
            shutil.rmtree(path, ignore_errors=True)

    def load_checkpoint(self, folder: Path) -> None:
        from safetensors.torch import load_file

        state = json.loads((folder / "trainer_state.json").read_text())
        if state["total_steps"] != self.total_steps:
            raise UserError(f"{folder}: made for a run of {state['total_steps']} steps, this one has "
                            f"{self.total_steps}; resume with the same data, batch and epoch settings")
        if state["world_size"] != self.dist.world_size:
            raise UserError(f"{folder}: made with {state['world_size']} processes; resume with the same number")
        weights = load_file(str(folder / "trainable.safetensors"))
        named = dict(trainable_parameters(self.module))
        if set(weights) != set(named):
            raise UserError(f"{folder}: its trainable weights do not match this model (other LoRA settings?)")
        with torch.no_grad():
            for name, param in named.items():
                param.copy_(weights[name].to(param.dtype))
        try:
            saved = torch.load(folder / "state.pt", map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - a tampered or truncated file: refuse, never unpickle code
            raise UserError(f"{folder / 'state.pt'}: cannot resume from it ({type(e).__name__}); "
                            f"delete {folder} to restart from the previous checkpoint") from None
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        _set_rng_state(saved["rng"][self.dist.rank], self.device)
        self.step_count = state["step"]
        self.tokens_seen = state["tokens"]
        self.train_seconds = state["train_seconds"]
        self.history = [(int(s), float(loss)) for s, loss in state["loss_history"]]


# What a trainer writes into its output folder (the export and the periodic checkpoints): a folder holding
# anything else is someone's, and is never replaced or deleted.
OUTPUT_FILES = ("checkpoint-*", "adapter_model.safetensors", "adapter_config.json", "model*.safetensors",
                "model.safetensors.index.json", "config.json", "generation_config.json", "tokenizer*",
                "special_tokens_map.json", "added_tokens.json", "vocab.json", "merges.txt", "chat_template.jinja",
                "pyserini_llama.json", "trainer_state.json", "README.md", ".*")


def finalize(output: Path, write: Callable[[Path], object]) -> None:
    """Build the export in a temporary sibling folder, then swap it in place of ``output``.

    ``output`` (which held the periodic checkpoints) is renamed aside first, so at every moment ``output`` is
    either absent, an unfinished run (no ``pyserini_llama.json``) or the finished model. A folder that another
    process put there meanwhile (files this trainer does not write) is refused, not replaced.
    """
    from ..data.atomic import check_replaceable, follow_umask

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent))
    old = None
    try:
        write(tmp)
        follow_umask(tmp)  # a model folder others can read, as any file the user writes
        if output.exists():
            check_replaceable(output, OUTPUT_FILES)
            old = output.with_name(f".{output.name}.old-{os.getpid()}")
            os.replace(output, old)
        os.replace(tmp, output)
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, OSError):  # a full disk while exporting: say which output could not be written
            from ..data.atomic import named_os_error

            raise named_os_error(e, output) from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def prepare_output(output: Path, resume: bool, overwrite: bool) -> None:
    """Refuse to clobber a finished model, silently restart an unfinished run, or delete someone's folder."""
    from ..data.atomic import check_replaceable, check_writable_folder
    from ..paths import remove_tree

    if output.exists() and not output.is_dir():
        raise UserError(f"{output}: is a file; give the path of a folder to write")
    check_writable_folder(output.parent)
    if not output.exists():
        return
    check_replaceable(output, OUTPUT_FILES)
    if overwrite:
        remove_tree(output, output.parent)
        return
    if (output / FINISHED_MARKER).exists():
        raise UserError(f"{output} already holds a trained model; pass --overwrite to replace it")
    if latest_checkpoint(output) is not None and not resume:
        raise UserError(f"{output} holds checkpoints of an unfinished run; pass --resume to continue it or "
                        f"--overwrite to start over")
    if latest_checkpoint(output) is None and any(output.iterdir()):
        raise UserError(f"{output} already exists and holds no run to resume; pass --overwrite to replace it")


def _args_dict(args) -> dict:
    from dataclasses import asdict
    return asdict(args)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2) + "\n")
