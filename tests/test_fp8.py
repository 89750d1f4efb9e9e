"""FP8 inference: the quantisation maths against a hand-written reference, the kernel call against its
float32 emulation, which layers are quantised, and the one-line refusal where FP8 cannot run."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pyserini_llama.errors import UserError
from pyserini_llama.models import fp8
from pyserini_llama.models.fp8 import Fp8Linear, quantize_model, quantize_rows, quantize_weight

from conftest import run_cli


def e4m3_round(v: np.ndarray) -> np.ndarray:
    """Round float64 values to e4m3fn by hand: 3 mantissa bits, exponents -6..8, subnormal step 2**-9,
    round half to even, largest finite 448 (inputs here are already within +-448)."""
    v = np.asarray(v, dtype=np.float64)
    magnitude = np.abs(v)
    exponent = np.floor(np.log2(np.maximum(magnitude, 2.0 ** -6)))  # below 2**-6: the subnormal spacing
    step = 2.0 ** (exponent - 3)
    return np.sign(v) * np.round(magnitude / step) * step  # np.round: half to even


def reference_quantize(x: np.ndarray):
    x = np.asarray(x, dtype=np.float64)
    scale = np.maximum(np.abs(x).max(axis=-1, keepdims=True), fp8.SCALE_FLOOR) / 448.0
    return e4m3_round(np.clip(x / scale, -448, 448)), scale


def test_row_quantisation_matches_the_hand_written_rounding():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 96)) * rng.choice([1e-4, 1.0, 300.0], size=(64, 1))
    x[5] = 0.0  # an all-zero row keeps zero codes
    x[6, :3] = [448.0, -448.0, 1e-9]
    codes, scale = quantize_rows(torch.tensor(x, dtype=torch.float32))
    want_codes, want_scale = reference_quantize(np.asarray(x, dtype=np.float32))
    np.testing.assert_allclose(scale.numpy(), want_scale, rtol=1e-6)
    # the codes equal the hand rounding except where float32 division lands a hair off a rounding tie
    got = codes.float().numpy()
    assert np.mean(got == want_codes) > 0.999
    assert (got[5] == 0).all() and codes.dtype == torch.float8_e4m3fn
    dequantised = got * scale.numpy()
    assert np.abs(dequantised - x).max(axis=1).max() <= (np.abs(x).max(axis=1) / 448 * 16).max()  # half a step


def test_emulated_layer_matches_the_reference_maths():
    torch.manual_seed(0)
    linear = nn.Linear(64, 48, bias=True)
    x = torch.randn(3, 7, 64)
    y = Fp8Linear.from_linear(linear, emulate=True)(x)
    xq, xs = reference_quantize(x.reshape(-1, 64).numpy())
    wq, ws = reference_quantize(linear.weight.detach().numpy())
    want = (xq * xs) @ (wq * ws).T + linear.bias.detach().numpy()
    np.testing.assert_allclose(y.reshape(-1, 48).detach().numpy(), want, rtol=2e-3, atol=2e-4)
    exact = (x @ linear.weight.T + linear.bias).detach()
    relative = ((y - exact).norm() / exact.norm()).item()
    assert 0.005 < relative < 0.06  # e4m3 keeps 3 mantissa bits: a few percent per matmul, not more


def test_kernel_path_equals_its_emulation(monkeypatch):
    """torch._scaled_mm (here its CPU implementation) computes what the emulation computes, rounded to bf16:
    the scales' shapes and the weight's transpose are passed the way the kernel expects."""
    torch.manual_seed(1)
    linear = nn.Linear(64, 32, bias=False)
    x = torch.randn(10, 64)
    emulated = Fp8Linear.from_linear(linear, emulate=True)(x)
    kernel = Fp8Linear.from_linear(linear.to(torch.bfloat16))
    codes, scale = quantize_weight(linear.weight.detach())
    assert torch.equal(kernel.weight_codes.float(), codes.float())
    assert kernel.weight_scale.shape == (1, 32) and kernel.weight_scale.dtype == torch.float32
    try:
        out = kernel(x.to(torch.bfloat16))
    except (RuntimeError, NotImplementedError) as e:  # a torch build without the CPU kernel
        pytest.skip(f"no CPU _scaled_mm here ({str(e).splitlines()[0][:80]})")
    assert out.dtype == torch.bfloat16
    bf16_input = Fp8Linear.from_linear(linear, emulate=True)(x.to(torch.bfloat16).float())
    torch.testing.assert_close(out.float(), bf16_input.to(torch.bfloat16).float(), rtol=0, atol=0)
    assert ((emulated - out.float()).norm() / emulated.norm()) < 0.02


def tiny_model(task="embedding", hidden=64, layers=2):
    from transformers import LlamaConfig, LlamaForSequenceClassification, LlamaModel

    config = LlamaConfig(vocab_size=300, hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, num_labels=1, pad_token_id=0)
    torch.manual_seed(0)
    model = (LlamaModel if task == "embedding" else LlamaForSequenceClassification)(config)
    return model.eval()


def test_quantize_model_converts_the_decoder_matmuls_only():
    model = tiny_model("sequence-classification")
    ids = torch.randint(3, 300, (4, 20))
    with torch.no_grad():
        before = model(input_ids=ids).logits
        report = quantize_model(model, emulate=True)
        after = model(input_ids=ids).logits
    assert report.quantized == 2 * 7 and report.kept == [] and fp8.is_fp8(model)
    kinds = {name.split(".")[-1] for name, m in model.named_modules() if isinstance(m, Fp8Linear)}
    assert kinds == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert type(model.score) is nn.Linear and type(model.model.embed_tokens) is nn.Embedding
    assert torch.allclose(before, after, rtol=0.1, atol=0.05) and not torch.equal(before, after)


def test_fp8_vectors_stay_close_to_bf16_ones():
    """Pooled last states (what an encoder returns) of the emulated FP8 model vs the bf16 model: close."""
    model = tiny_model("embedding")
    ids = torch.randint(3, 300, (8, 24))
    with torch.no_grad():
        bf16 = model.to(torch.bfloat16)(input_ids=ids).last_hidden_state[:, -1].float()
        quantize_model(model.float(), emulate=True)
        fp8 = model(input_ids=ids).last_hidden_state[:, -1]
    cosine = torch.nn.functional.cosine_similarity(bf16, fp8, dim=1)
    assert cosine.min() > 0.99 and cosine.mean() > 0.995


def test_shapes_the_kernel_refuses_stay_in_bf16():
    model = tiny_model("embedding")
    model.layers[0].mlp.down_proj = nn.Linear(128, 72 - 8, bias=False)  # N = 64 still fine
    model.layers[1].mlp.up_proj = nn.Linear(64, 120, bias=False)  # N = 120: not a multiple of 16
    report = quantize_model(model, emulate=True)
    assert report.kept == ["up_proj (64 -> 120)"] and report.quantized == 13
    assert type(model.layers[1].mlp.up_proj) is nn.Linear


def test_fp8_is_refused_in_one_line_without_a_capable_gpu(tmp_path):
    from pyserini_llama.runtime import dtype_name, is_fp8_dtype, torch_dtype

    with pytest.raises(UserError, match="compute capability >= 8.9.*on cpu"):
        dtype_name("fp8", "cpu")
    with pytest.raises(UserError, match="inference dtype"):
        torch_dtype("fp8")
    with pytest.raises(UserError, match="needs a CUDA GPU"):
        quantize_model(tiny_model())
    assert is_fp8_dtype("FP8") and is_fp8_dtype("float8") and not is_fp8_dtype("bfloat16")
    (tmp_path / "q.tsv").write_text("q1\thello\n")
    proc = run_cli("pyserini_llama.encode", "queries", "--topics", str(tmp_path / "q.tsv"), "--encoder",
                   "repllama-smollm2", "--output", str(tmp_path / "out"), "--device", "cpu", "--dtype", "fp8")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: dtype fp8 needs a CUDA GPU with compute capability >= 8.9 (Ada, Hopper or newer); this run is on "
        "cpu: use bfloat16 or float32"]


def test_compiled_twin_shares_weights_and_leaves_the_model_eager():
    from pyserini_llama.runtime import compiled

    model = tiny_model("embedding")
    twin = compiled(model)
    assert compiled(model) is twin
    assert twin.embed_tokens is model.embed_tokens and twin.layers is not model.layers
    assert all(type(layer).__name__ == "OptimizedModule" for layer in twin.layers)
    assert all(type(layer).__name__ == "LlamaDecoderLayer" for layer in model.layers)
    assert twin.layers[0]._orig_mod is model.layers[0]


def test_compiled_twin_computes_what_the_model_computes(monkeypatch):
    """The regional twin runs the same forward (dynamo traces each decoder layer; the eager backend keeps the
    test fast on a CPU), for a quantised model too."""
    import functools

    from pyserini_llama import runtime

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    model = tiny_model("sequence-classification")
    quantize_model(model, emulate=True)
    ids = torch.randint(3, 300, (3, 11))
    mask = torch.ones_like(ids)
    mask[1, 7:] = 0
    with torch.inference_mode():
        eager = model(input_ids=ids, attention_mask=mask).logits
        twin = runtime.compiled(model)
        assert twin is not model
        torch.testing.assert_close(twin(input_ids=ids, attention_mask=mask).logits, eager)


def test_compiled_layers_share_one_graph(monkeypatch):
    """Every decoder layer, every batch shape: a graph or two (with and without a padding mask), not one per
    layer (a KV cache would hand each layer its own index; past 8 graphs dynamo silently runs layers eagerly)."""
    import functools

    from torch._dynamo.utils import counters

    from pyserini_llama import runtime

    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))
    torch._dynamo.reset()
    counters.clear()
    model = tiny_model("sequence-classification", layers=12)
    twin = runtime.compiled(model)
    with torch.inference_mode():
        for batch, length in ((3, 11), (5, 17), (2, 9)):
            mask = torch.ones(batch, length, dtype=torch.long)
            mask[0, -2:] = 0
            twin(input_ids=torch.randint(3, 300, (batch, length)), attention_mask=mask)
    assert counters["stats"]["unique_graphs"] <= 2
    assert model.config.use_cache is not False  # the model itself keeps its settings
