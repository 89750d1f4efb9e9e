"""FP8 inference: a LLaMA-family model's matmuls in float8 (e4m3) on GPUs that have FP8 tensor cores.

Recipe (the one torchao and vLLM call "dynamic per-token activation, per-channel weight" FP8):

* every decoder-layer ``nn.Linear`` (q/k/v/o and gate/up/down projections) is quantised **once, at load**:
  each output channel (weight row) gets its own float32 scale ``max|row| / 448`` and the row is rounded to
  e4m3 (448 is e4m3's largest finite value);
* at run time each activation **row (token)** is quantised the same way, with its own scale, so a token's
  result never depends on the other tokens of the batch;
* the product is ``torch._scaled_mm(x_q, w_q.T, scale_x (M,1), scale_w (1,N), out_dtype=bfloat16)``: FP8
  tensor-core products, both scales applied in the epilogue, bf16 out; accumulated with Hopper's fast
  accumulation (the usual choice for FP8 inference: a few percent faster; ``fast_accum=False`` promotes
  the accumulator to float32 periodically, closer to the emulation);
* everything else (embeddings, RMSNorm, rotary embeddings, attention and its softmax, SiLU, pooling, the
  reranker's score head, an LM head) stays in bfloat16. Under ``torch.compile`` (``runtime.compiled``) each
  activation quantisation fuses into the kernel that produces its input (the norm, the SiLU-gate product).

``emulate=True`` computes exactly the same quantise-dequantise maths without FP8 tensor cores: the same
:func:`quantize_rows` / :func:`quantize_weight` (hence the same e4m3 codes and scales), the exact products of
e4m3 codes summed in float32, then ``* scale_x * scale_w`` (the tensor cores differ only in how they round
the running sum). It runs anywhere (CPU included); the
tests check the quantised model against it and it against a hand-written reference.

Example::

    model = load_checkpoint("repllama-smollm2", device="cuda", dtype="bfloat16").model
    report = quantize_model(model)          # in place; report.quantized == 210 Linear layers for SmolLM2
    # or simply: RepLlamaEncoder.from_checkpoint("repllama-smollm2", dtype="fp8", compile=True)
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
from torch import nn

from ..errors import UserError

E4M3 = torch.float8_e4m3fn
E4M3_MAX = 448.0
SCALE_FLOOR = 1e-12  # an all-zero row gets a tiny scale instead of a division by zero; its codes stay 0
MIN_CAPABILITY = (8, 9)  # FP8 tensor cores: Ada (8.9), Hopper (9.0) and later
# what the quantised outputs depend on: part of the model identity that keys cached encodings
RECIPE = "e4m3fn rowwise activations x per-output-channel weights, bf16 out, v1"


def check_fp8_device(device: str) -> None:
    """A one-line UserError unless ``device`` is a CUDA GPU with FP8 tensor cores (compute capability >= 8.9)."""
    if not str(device).startswith("cuda"):
        raise UserError(f"dtype fp8 needs a CUDA GPU with compute capability >= 8.9 (Ada, Hopper or newer); "
                        f"this run is on {device}: use bfloat16 or float32")
    if not torch.cuda.is_available():
        raise UserError("dtype fp8 needs a CUDA GPU with compute capability >= 8.9; no GPU is available")
    index = torch.device(device).index
    capability = torch.cuda.get_device_capability(torch.cuda.current_device() if index is None else index)
    if tuple(capability) < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(index)
        raise UserError(f"dtype fp8 needs compute capability >= 8.9 (Ada, Hopper or newer); {name} has "
                        f"{capability[0]}.{capability[1]}: use bfloat16")


def quantize_rows(x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Symmetric e4m3 quantisation of each row of ``x`` (..., K): ``(codes, scale)`` with ``scale`` float32
    (..., 1) = ``max|row| / 448`` and ``codes = e4m3(row / scale)`` (round to nearest even), so that
    ``codes * scale`` approximates ``x``."""
    x32 = x.float()
    scale = x32.abs().amax(dim=-1, keepdim=True).clamp(min=SCALE_FLOOR) / E4M3_MAX
    codes = (x32 / scale).clamp(-E4M3_MAX, E4M3_MAX).to(E4M3)
    return codes, scale


def quantize_weight(weight: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel quantisation of a Linear weight (N, K): e4m3 codes (N, K) and float32 scales (N,)."""
    codes, scale = quantize_rows(weight)
    return codes, scale.reshape(-1)


def fp8_matmul_supported(in_features: int, out_features: int) -> bool:
    """``torch._scaled_mm`` needs K and N divisible by 16 (all LLaMA projections are)."""
    return in_features % 16 == 0 and out_features % 16 == 0


class Fp8Linear(nn.Module):
    """A Linear layer with e4m3 weights (per output channel) and e4m3 activations (per row) at run time.

    Example::

        layer = Fp8Linear.from_linear(nn.Linear(4096, 11008, bias=False, device="cuda", dtype=torch.bfloat16))
        y = layer(x)                                  # x (..., 4096) bf16 -> y (..., 11008) bf16
    """

    def __init__(self, weight_codes: torch.Tensor, weight_scale: torch.Tensor, bias: Optional[torch.Tensor],
                 emulate: bool = False, fast_accum: bool = True):
        super().__init__()
        self.out_features, self.in_features = weight_codes.shape
        self.register_buffer("weight_codes", weight_codes)
        self.register_buffer("weight_scale", weight_scale.reshape(1, -1).float().contiguous())  # (1, N)
        self.register_buffer("bias", bias)
        self.emulate = emulate
        # fast accumulation skips Hopper's periodic promotion of the FP8 accumulator to float32: faster, a
        # little less exact over long sums
        self.fast_accum = fast_accum

    @classmethod
    def from_linear(cls, linear: nn.Linear, emulate: bool = False, fast_accum: bool = True) -> "Fp8Linear":
        codes, scale = quantize_weight(linear.weight.detach())
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(codes, scale, bias, emulate, fast_accum)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, emulate={self.emulate}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        codes, scale = quantize_rows(x.reshape(-1, self.in_features))
        if self.emulate:
            y = emulated_scaled_mm(codes, self.weight_codes, scale, self.weight_scale).to(x.dtype)
        else:
            y = torch._scaled_mm(codes, self.weight_codes.t(), scale, self.weight_scale,
                                 out_dtype=torch.bfloat16, use_fast_accum=self.fast_accum)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y.reshape(*shape[:-1], self.out_features)


def emulated_scaled_mm(x_codes: torch.Tensor, w_codes: torch.Tensor, x_scale: torch.Tensor,
                       w_scale: torch.Tensor) -> torch.Tensor:
    """What the rowwise ``_scaled_mm`` computes, in float32: products of e4m3 codes (exact in float32) summed
    in float32, then the epilogue ``acc * x_scale (M,1) * w_scale (1,N)``."""
    acc = x_codes.float() @ w_codes.float().t()
    return acc * x_scale * w_scale


@dataclass
class QuantizationReport:
    quantized: int = 0
    kept: List[str] = field(default_factory=list)  # Linear layers left in bf16 (shapes _scaled_mm refuses)


def decoder_linears(model: nn.Module) -> List[Tuple[nn.Module, str, nn.Linear]]:
    """``(parent, attribute, linear)`` of every ``nn.Linear`` inside the decoder layers.

    Only the transformer blocks: the embeddings, the score head and an LM head stay in bf16 (small, and the
    last numbers before a score or a vector)."""
    found = []
    for name, module in model.named_modules():
        if not name or not _in_decoder_layers(name):
            continue
        for attribute, child in module.named_children():
            if type(child) is nn.Linear:
                found.append((module, attribute, child))
    return found


def _in_decoder_layers(name: str) -> bool:
    parts = name.split(".")
    return any(p == "layers" and i + 1 < len(parts) and parts[i + 1].isdigit() for i, p in enumerate(parts))


def quantize_model(model: nn.Module, emulate: bool = False, fast_accum: bool = True) -> QuantizationReport:
    """Replace the decoder layers' Linear layers of ``model`` by :class:`Fp8Linear`, in place.

    Without ``emulate`` the model must be a bfloat16 one (rowwise ``_scaled_mm`` writes bf16) on a GPU with FP8
    tensor cores (:func:`check_fp8_device`). Layers whose shapes ``_scaled_mm`` cannot take (K or N not
    divisible by 16) stay as they are and are listed in the report.
    """
    report = QuantizationReport()
    if not emulate:
        check_fp8_device(str(next(model.parameters()).device))
        wrong = {str(p.dtype) for p in model.parameters() if p.is_floating_point() and p.dtype != torch.bfloat16}
        if wrong:
            raise ValueError(f"FP8 quantisation needs a bfloat16 model, this one has {', '.join(sorted(wrong))} "
                             f"weights")
    with torch.no_grad():
        for parent, attribute, linear in decoder_linears(model):
            if not fp8_matmul_supported(linear.in_features, linear.out_features):
                report.kept.append(f"{attribute} ({linear.in_features} -> {linear.out_features})")
                continue
            setattr(parent, attribute, Fp8Linear.from_linear(linear, emulate, fast_accum))
            report.quantized += 1
    if report.quantized == 0:
        raise UserError("dtype fp8: the model has no decoder-layer Linear layers to quantise")
    model._pyserini_llama_fp8 = report  # marks the model as quantised (is_fp8) and says how
    return report


def is_fp8(model: nn.Module) -> bool:
    """Whether :func:`quantize_model` converted ``model``."""
    return getattr(model, "_pyserini_llama_fp8", None) is not None
