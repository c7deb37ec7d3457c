"""The merged sampling copy is the trained policy: same logits, and it follows updates."""

from __future__ import annotations

import torch

from smarttuner.config import LoraSettings
from smarttuner.models import add_lora
from smarttuner.rollout.policy_copy import PolicyCopy, plain_name


def _logits(model, ids: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


def _perturb_lora(model, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.add_(torch.randn(p.shape, generator=gen) * 0.05)


def test_plain_name_strips_peft_wrapping() -> None:
    assert plain_name("base_model.model.model.layers.0.mlp.up_proj.base_layer.weight") == (
        "model.layers.0.mlp.up_proj.weight"
    )
    assert plain_name("base_model.model.lm_head.modules_to_save.default.weight") == "lm_head.weight"


def test_float32_copy_matches_the_lora_model_and_follows_updates(tiny_model) -> None:
    model = add_lora(tiny_model, LoraSettings(r=4, alpha=8, dropout=0.0)).eval()
    _perturb_lora(model, 0)  # B starts at zero: make the adapter matter
    ids = torch.randint(3, 100, (3, 12))
    policy = PolicyCopy(model, torch.float32)
    assert not any(p.requires_grad for p in policy.model.parameters())
    assert torch.allclose(_logits(policy.model, ids), _logits(model, ids), atol=1e-5)
    _perturb_lora(model, 1)  # an "optimizer step"
    assert not torch.allclose(_logits(policy.model, ids), _logits(model, ids), atol=1e-3)
    policy.refresh(model)
    assert torch.allclose(_logits(policy.model, ids), _logits(model, ids), atol=1e-5)


def test_bfloat16_copy_is_close_and_full_finetuning_is_copied(tiny_model) -> None:
    ids = torch.randint(3, 100, (2, 10))
    policy = PolicyCopy(tiny_model, torch.bfloat16)
    assert next(policy.model.parameters()).dtype == torch.bfloat16
    with torch.no_grad():
        for p in tiny_model.parameters():
            p.mul_(1.01)
    policy.refresh(tiny_model)
    diff = (_logits(policy.model, ids) - _logits(tiny_model, ids)).abs().max().item()
    assert diff < 0.05, diff


def test_reference_copies_are_the_base_or_the_frozen_reference_adapter(tiny_model) -> None:
    from smarttuner.models import REFERENCE_ADAPTER, reference_mode

    model = add_lora(tiny_model, LoraSettings(r=4, alpha=8, dropout=0.0)).eval()
    _perturb_lora(model, 0)
    ids = torch.randint(3, 100, (2, 9))
    base = PolicyCopy(model, torch.float32, adapter=None)
    with model.disable_adapter():
        assert torch.allclose(_logits(base.model, ids), _logits(model, ids), atol=1e-5)
    assert not torch.allclose(_logits(base.model, ids), _logits(model, ids), atol=1e-3)

    from peft import LoraConfig

    model.add_adapter(REFERENCE_ADAPTER, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj"]))
    _perturb_lora(model, 2)  # both adapters now differ from zero
    ref = PolicyCopy(model, torch.float32, adapter=REFERENCE_ADAPTER)
    with reference_mode(model):
        expected = _logits(model, ids)
    assert torch.allclose(_logits(ref.model, ids), expected, atol=1e-5)
