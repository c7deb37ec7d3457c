"""4-bit (QLoRA) loading without a GPU or bitsandbytes: the clear refusals, and the exact
`from_pretrained` arguments, captured by a stand-in loader on a CUDA host as far as
torch can tell. Whether bitsandbytes then quantises correctly needs a GPU (docs/gpu.md)."""

from __future__ import annotations

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

import smarttuner.models as models
from smarttuner.config import BUNDLED_MODEL, LoraSettings, ModelConfig
from smarttuner.models import (
    ModelLoadError,
    add_lora,
    bnb_4bit_config,
    cache_dir,
    four_bit_kwargs,
    load_model,
    save_model,
)


@pytest.fixture()
def fake_cuda_loader(monkeypatch):
    """A CUDA host with bitsandbytes, whose loader records its kwargs and loads on the CPU."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(models, "bitsandbytes_available", lambda: True)
    calls: list[dict] = []
    real = AutoModelForCausalLM.from_pretrained

    def loader(path, **kwargs):
        calls.append({"path": path, **kwargs})
        return real(path)  # float32 on the CPU: the quantisation itself needs the GPU

    monkeypatch.setattr(models.AutoModelForCausalLM, "from_pretrained", loader)
    prepared: list[object] = []
    import peft

    real_prepare = peft.prepare_model_for_kbit_training

    def prepare(model, **kwargs):
        prepared.append(kwargs)
        return real_prepare(model, **kwargs)

    monkeypatch.setattr(peft, "prepare_model_for_kbit_training", prepare)
    return calls, prepared


def test_qlora_loads_nf4_double_quant_and_prepares_the_base(fake_cuda_loader, tiny_model_dir):
    calls, prepared = fake_cuda_loader
    cfg = ModelConfig(name=tiny_model_dir, device="cuda", dtype="bfloat16", load_in_4bit=True)
    model, _ = load_model(cfg, LoraSettings(r=4, alpha=8))
    (call,) = calls
    q = call["quantization_config"]
    assert q.load_in_4bit is True and q.load_in_8bit is False
    assert q.bnb_4bit_quant_type == "nf4"
    assert q.bnb_4bit_compute_dtype == torch.bfloat16
    assert q.bnb_4bit_use_double_quant is True
    assert call["device_map"] == {"": 0}
    assert call["dtype"] == torch.bfloat16
    assert prepared == [{"use_gradient_checkpointing": False}]
    assert isinstance(model, PeftModel)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_qlora_continues_an_adapter_folder(fake_cuda_loader, monkeypatch, tiny_model_dir, tmp_path):
    calls, prepared = fake_cuda_loader
    for where in ("peft.peft_model", "peft.utils.save_and_load"):  # adapter tensors to the CPU
        monkeypatch.setattr(f"{where}.infer_device", lambda: "cpu")
    base, tok = load_model(ModelConfig(name=tiny_model_dir, device="cpu"), trainable=False)
    adapter = save_model(add_lora(base, LoraSettings(r=4, alpha=8)), tok, tmp_path / "adapter")
    calls.clear()
    cfg = ModelConfig(name=str(adapter), device="cuda", load_in_4bit=True)
    model, _ = load_model(cfg, LoraSettings(enabled=False))  # an adapter folder is LoRA anyway
    assert [c["path"] for c in calls] == [tiny_model_dir]
    assert "quantization_config" in calls[0] and len(prepared) == 1
    assert any(p.requires_grad for n, p in model.named_parameters() if "lora_" in n)


def test_inference_in_4bit_skips_the_training_preparation(fake_cuda_loader, tiny_model_dir):
    calls, prepared = fake_cuda_loader
    cfg = ModelConfig(name=tiny_model_dir, device="cuda", load_in_4bit=True)
    load_model(cfg, lora=None, trainable=False)
    assert "quantization_config" in calls[0] and prepared == []


def test_compute_dtype_follows_the_run_in_half_precision() -> None:
    assert bnb_4bit_config(torch.float16).bnb_4bit_compute_dtype == torch.float16
    assert bnb_4bit_config(torch.float32).bnb_4bit_compute_dtype == torch.bfloat16


def test_full_finetuning_in_4bit_is_refused(tiny_model_dir) -> None:
    cfg = ModelConfig(name=tiny_model_dir, device="cpu", load_in_4bit=True)
    with pytest.raises(ModelLoadError, match="needs LoRA"):
        load_model(cfg, LoraSettings(enabled=False))


def test_no_cuda_is_refused(tiny_model_dir) -> None:
    cfg = ModelConfig(name=tiny_model_dir, device="cpu", load_in_4bit=True)
    with pytest.raises(ModelLoadError, match="needs a CUDA GPU"):
        load_model(cfg, LoraSettings())


def test_missing_bitsandbytes_is_refused(monkeypatch, tiny_model_dir) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    monkeypatch.setattr(models, "bitsandbytes_available", lambda: False)
    cfg = ModelConfig(name=tiny_model_dir, device="cuda", load_in_4bit=True)
    with pytest.raises(ModelLoadError, match=r"pip install 'smarttuner\[qlora\]'"):
        load_model(cfg, LoraSettings())


def test_the_bundled_gguf_model_is_refused_before_any_conversion(
    fake_cuda_loader, monkeypatch, tmp_path
) -> None:
    monkeypatch.setenv("SMARTTUNER_CACHE", str(tmp_path))
    monkeypatch.setattr(models, "convert_bundled_model", pytest.fail)
    cfg = ModelConfig(name=BUNDLED_MODEL, device="cuda", load_in_4bit=True)
    with pytest.raises(ModelLoadError, match="already 4-bit"):
        load_model(cfg, LoraSettings())
    # an adapter trained on the bundled model names the cached folder as its base
    with pytest.raises(ModelLoadError, match="already 4-bit"):
        four_bit_kwargs(str(cache_dir() / "models" / BUNDLED_MODEL), torch.bfloat16, None)
