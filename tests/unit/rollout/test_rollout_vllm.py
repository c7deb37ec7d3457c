"""The vLLM engine without vLLM or a GPU: the clear errors, and — against a fake `vllm` module
in sys.modules — the conversion of vLLM-shaped outputs to a RolloutBatch (prompt-major, cut
exactly like `finalize`), the sampling requests, the engine arguments and the weight syncs.
What only a real GPU run can show is listed in docs/gpu.md."""

from __future__ import annotations

import os
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from peft import PeftModel

from smarttuner.config import GRPOConfig, LoraSettings, ModelConfig
from smarttuner.errors import USER_ERRORS
from smarttuner.models import load_model
from smarttuner.rollout import close_engines, get_engine, sync_weights
from smarttuner.rollout.fast import generate_fast
from smarttuner.rollout.types import SamplingParams, eos_token_ids, finalize, left_pad, stop_length
from smarttuner.rollout.vllm_engine import (
    EngineUnavailableError,
    RolloutError,
    VLLMEngine,
    VLLMSettings,
    lora_rank_bucket,
)

STOP = ("</answer>",)
DIST_VARS = ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


# --- a fake vllm: just the documented surface the engine uses --------------------------------


@dataclass
class FakeCompletion:  # vllm.outputs.CompletionOutput
    index: int
    token_ids: list[int]
    finish_reason: str  # "stop" | "length"
    stop_reason: int | str | None = None


@dataclass
class FakeRequestOutput:  # vllm.outputs.RequestOutput
    prompt_token_ids: list[int]
    outputs: list[FakeCompletion]


class FakeSamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        self.__dict__.update(kwargs)


@dataclass(frozen=True)
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


class FakeServedModel:
    """vLLM's model inside the worker: `load_weights` takes (HF name, tensor) pairs."""

    def __init__(self) -> None:
        self.weights: dict[str, torch.Tensor] = {}

    def load_weights(self, weights) -> set[str]:
        for name, tensor in weights:
            self.weights[name] = tensor.detach().clone()
        return set(self.weights)


@dataclass
class FakeLLM:
    """Records what it was built and called with; `script(prompt, params, lora)` answers each
    prompt with (token_ids, finish_reason, stop_reason) triples, one per sample."""

    kwargs: dict[str, Any]
    generate_calls: list[dict[str, Any]] = field(default_factory=list)
    served: FakeServedModel = field(default_factory=FakeServedModel)
    resets: int = 0

    instances: ClassVar[list[FakeLLM]] = []  # every FakeLLM built (reset per test)
    script: ClassVar[Any] = None

    def generate(self, prompts, sampling_params, *, use_tqdm=True, lora_request=None):
        self.generate_calls.append(
            {"prompts": prompts, "params": sampling_params, "lora": lora_request}
        )
        out = []
        for prompt, params in zip(prompts, sampling_params, strict=True):
            rows = type(self).script(prompt["prompt_token_ids"], params, lora_request)
            completions = [FakeCompletion(i, *row) for i, row in enumerate(rows)]
            out.append(FakeRequestOutput(prompt["prompt_token_ids"], completions[::-1]))
        return out  # completions deliberately reversed: the engine must order them by index

    def apply_model(self, func):
        return [func(self.served)]

    def reset_prefix_cache(self) -> bool:
        self.resets += 1
        return True


def _make_llm(**kwargs: Any) -> FakeLLM:
    llm = FakeLLM(kwargs)
    FakeLLM.instances.append(llm)
    return llm


@pytest.fixture()
def fake_vllm(monkeypatch):
    """A CUDA machine with vLLM installed, as far as the engine can tell."""
    vllm = types.ModuleType("vllm")
    vllm.LLM = _make_llm
    vllm.SamplingParams = FakeSamplingParams
    vllm.TokensPrompt = lambda **kw: dict(kw)
    lora_pkg = types.ModuleType("vllm.lora")
    lora_request = types.ModuleType("vllm.lora.request")
    lora_request.LoRARequest = FakeLoRARequest
    for name, module in (
        ("vllm", vllm),
        ("vllm.lora", lora_pkg),
        ("vllm.lora.request", lora_request),
    ):
        monkeypatch.setitem(sys.modules, name, module)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for var in DIST_VARS:  # the engine describes a one-process group; restore the env after
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setattr(FakeLLM, "instances", [])
    monkeypatch.setattr(FakeLLM, "script", None)
    yield FakeLLM
    close_engines()


@pytest.fixture()
def model_dir_model(tiny_model_dir):
    """The tiny model loaded from its folder (vLLM builds from the base checkpoint on disk)."""
    return load_model(ModelConfig(name=tiny_model_dir, device="cpu"), trainable=False)


@pytest.fixture()
def lora_model(tiny_model_dir):
    return load_model(ModelConfig(name=tiny_model_dir, device="cpu"), LoraSettings(r=8, alpha=16))


def _fast_like_vllm(model, tokenizer):
    """A script that answers like vLLM serving `model`: the fast engine's tokens, each row
    ending at the token that stopped it (EOS or the one completing a stop string)."""

    def script(prompt, p, lora):
        params = SamplingParams(p.max_tokens, p.temperature, p.top_p, tuple(p.stop or ()))
        batch = generate_fast(model, tokenizer, [prompt], p.n, params)
        rows = []
        for i in range(p.n):
            ids = batch.completion_ids[i, : int(batch.lengths[i])].tolist()
            rows.append((ids, "length" if batch.truncated[i] else "stop", None))
        return rows

    return script


def _sharpen(model) -> None:
    """Larger random weights, so greedy decoding does not just repeat one token."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.3)


# --- clear errors, before any work -----------------------------------------------------------


def test_without_vllm_the_error_says_how_to_install(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # not importable, whatever is installed
    with pytest.raises(EngineUnavailableError) as err:
        get_engine("vllm")
    assert str(err.value) == (
        "--rollout-engine vllm needs vLLM and a CUDA GPU: pip install 'smarttuner[vllm]'"
    )
    assert isinstance(err.value, USER_ERRORS)  # the CLI prints it as one line
    with pytest.raises(EngineUnavailableError):  # nothing half-built was cached
        get_engine("vllm")


def test_without_a_gpu_the_error_says_so(fake_vllm, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(EngineUnavailableError, match="no CUDA GPU"):
        get_engine("vllm")


def test_several_processes_are_refused(fake_vllm, monkeypatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(EngineUnavailableError, match="one process on one GPU"):
        get_engine("vllm")


def test_registry_keeps_fast_and_hf_and_builds_vllm_once(fake_vllm) -> None:
    assert get_engine("auto") is generate_fast
    assert get_engine("fast") is generate_fast
    with pytest.raises(ValueError, match="unknown rollout engine 'x'.*vllm"):
        get_engine("x")
    with pytest.raises(ValueError, match="takes no options"):
        get_engine("fast", gpu_memory_utilization=0.5)
    engine = get_engine("vllm", gpu_memory_utilization=0.5)
    assert isinstance(engine, VLLMEngine)
    assert get_engine("vllm") is engine  # the trainer asks every iteration: same instance
    assert engine.settings.gpu_memory_utilization == 0.5
    with pytest.raises(ValueError, match="already built"):
        get_engine("vllm", gpu_memory_utilization=0.9)
    assert fake_vllm.instances == []  # the LLM itself waits for the first rollout (and a model)


def test_config_accepts_vllm_and_settings_are_checked() -> None:
    assert GRPOConfig(generation={"engine": "vllm"}).generation.engine == "vllm"
    with pytest.raises(ValueError, match="gpu_memory_utilization"):
        VLLMSettings(gpu_memory_utilization=1.5)
    assert [lora_rank_bucket(r) for r in (1, 2, 8, 9, 32, 300)] == [1, 8, 8, 16, 32, 320]
    with pytest.raises(ValueError, match="above vLLM's largest"):
        lora_rank_bucket(1024)


# --- outputs -> RolloutBatch -----------------------------------------------------------------


def test_greedy_rollout_equals_the_fast_engine(fake_vllm, model_dir_model, tiny_tokenizer) -> None:
    model, _ = model_dir_model
    _sharpen(model)
    fake_vllm.script = staticmethod(_fast_like_vllm(model, tiny_tokenizer))
    prompts = [tiny_tokenizer.encode(q) for q in ("What is 3 + 4?", "If", "<think> All humans")]
    params = SamplingParams(max_new_tokens=12, temperature=0.0, stop_strings=STOP)
    got = get_engine("vllm")(model, tiny_tokenizer, prompts, 3, params)
    want = generate_fast(model, tiny_tokenizer, prompts, 3, params)
    for name in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask", "truncated"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert got.texts == want.texts
    (call,) = fake_vllm.instances[0].generate_calls
    assert [p.n for p in call["params"]] == [1, 1, 1]  # greedy: one completion, repeated


def test_sampled_rows_are_prompt_major(fake_vllm, model_dir_model, tiny_tokenizer) -> None:
    model, _ = model_dir_model
    marks = {7: "a", 9: "b"}  # prompt length -> a tag for its completions

    def script(prompt, p, lora):
        eos = tiny_tokenizer.eos_token_id
        return [
            (tiny_tokenizer.encode(f" {marks[len(prompt)]}{j}") + [eos], "stop", None)
            for j in range(p.n)
        ]

    fake_vllm.script = staticmethod(script)
    prompts = [[5] * 7, [6] * 9]
    params = SamplingParams(max_new_tokens=8, temperature=0.7, top_p=0.9)
    batch = get_engine("vllm")(model, tiny_tokenizer, prompts, 3, params)
    assert [t.strip() for t in batch.texts] == ["a0", "a1", "a2", "b0", "b1", "b2"]
    assert batch.prompt_mask.sum(dim=1).tolist() == [7, 7, 7, 9, 9, 9]


def test_stops_are_cut_exactly_like_finalize(fake_vllm, model_dir_model, tiny_tokenizer) -> None:
    """Each row as vLLM returns it (ending at what stopped it) gives the same batch as
    `finalize` on the untruncated tokens — what the CPU engines compute."""
    model, _ = model_dir_model
    tok = tiny_tokenizer
    eos = eos_token_ids(model, tok)
    width = 24
    text = tok.encode("<think> 3 + 4 = 7 </think><answer> 7 </answer> then more words 21")
    cut = stop_length(text, tok, STOP)
    assert cut is not None and cut < len(text)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    long = (tok.encode(" 12 - 5 = 7 and 7 * 3 = 21 so the answer is 21") * 3)[:width]
    full = [  # what a CPU engine's raw row would hold
        text,
        tok.encode("<think> No") + [im_end] + tok.encode(" junk after eos"),
        long,
        tok.encode(" True False") + [im_end],
    ]
    vllm_rows = [
        (text[:cut], "stop", "</answer>"),
        (tok.encode("<think> No") + [im_end], "stop", None),
        (long, "length", None),
        (tok.encode(" True False"), "stop", im_end),  # a version that left the stop id out
    ]
    fake_vllm.script = staticmethod(lambda prompt, p, lora: vllm_rows)
    prompt = tok.encode("What is 3 + 4?")
    params = SamplingParams(max_new_tokens=width, temperature=1.0, stop_strings=STOP)
    got = get_engine("vllm")(model, tok, [prompt], 4, params)

    raw = torch.full((4, width), tok.pad_token_id, dtype=torch.long)
    for i, row in enumerate(full):
        raw[i, : min(len(row), width)] = torch.tensor(row[:width])
    ids, mask = left_pad([prompt] * 4, tok.pad_token_id)
    want = finalize(ids, mask, raw, tok, eos, STOP)
    assert torch.equal(got.completion_ids, want.completion_ids)
    assert torch.equal(got.completion_mask, want.completion_mask)
    assert got.truncated.tolist() == [False, False, True, False]
    assert got.texts == want.texts
    assert got.texts[0].endswith("</answer>")


def test_a_row_that_ends_for_no_known_reason_is_an_error(
    fake_vllm, model_dir_model, tiny_tokenizer
) -> None:
    model, _ = model_dir_model
    fake_vllm.script = staticmethod(
        lambda prompt, p, lora: [(tiny_tokenizer.encode(" 7"), "length", None)]
    )
    params = SamplingParams(max_new_tokens=10, temperature=1.0)
    with pytest.raises(RolloutError, match="ends with neither EOS"):
        get_engine("vllm")(model, tiny_tokenizer, [[5, 6]], 1, params)


def test_sampling_requests_and_engine_arguments(fake_vllm, lora_model, tiny_tokenizer) -> None:
    model, _ = lora_model
    fake_vllm.script = staticmethod(
        lambda prompt, p, lora: [([tiny_tokenizer.eos_token_id], "stop", None)] * p.n
    )
    params = SamplingParams(
        max_new_tokens=5, temperature=0.7, top_p=0.9, stop_strings=STOP, min_new_tokens=2
    )
    engine = get_engine("vllm", gpu_memory_utilization=0.4)
    engine(model, tiny_tokenizer, [[5, 6], [7]], 4, params, torch.Generator().manual_seed(3))
    engine(model, tiny_tokenizer, [[5, 6], [7]], 4, params, torch.Generator().manual_seed(3))
    (llm,) = fake_vllm.instances
    first, second = (call["params"] for call in llm.generate_calls)
    p = first[0]
    assert (p.n, p.temperature, p.top_p, p.max_tokens, p.stop) == (4, 0.7, 0.9, 5, ["</answer>"])
    assert p.min_tokens == 2
    assert p.stop_token_ids == sorted(eos_token_ids(model, tiny_tokenizer))
    assert [q.seed for q in first] == [q.seed for q in second]  # same generator, same seeds
    assert first[0].seed != first[1].seed
    kw = llm.kwargs
    assert kw["model"] == model.get_base_model().name_or_path
    assert kw["gpu_memory_utilization"] == 0.4
    assert kw["enable_lora"] is True and kw["max_lora_rank"] == 8 and kw["max_loras"] == 1
    assert kw["distributed_executor_backend"] == "external_launcher"
    assert kw["dtype"] == "float32"
    assert "quantization" not in kw
    assert os.environ["WORLD_SIZE"] == "1" and os.environ["MASTER_PORT"].isdigit()


# --- weight sync -----------------------------------------------------------------------------


def _train_step(model) -> None:
    """One AdamW update of the trainable weights, as the trainer's optimizer does it."""
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=0.1)
    sum((p * p).sum() for p in params).backward()
    opt.step()
    opt.zero_grad()


def test_lora_sync_makes_a_new_request_and_a_valid_adapter(
    fake_vllm, lora_model, tiny_tokenizer, tmp_path, monkeypatch
) -> None:
    model, _ = lora_model
    fake_vllm.script = staticmethod(
        lambda prompt, p, lora: [([tiny_tokenizer.eos_token_id], "stop", None)] * p.n
    )
    engine = get_engine("vllm", adapter_root=str(tmp_path))
    params = SamplingParams(max_new_tokens=4, temperature=1.0)
    rollout = lambda: engine(model, tiny_tokenizer, [[5, 6]], 2, params)  # noqa: E731
    rollout()  # builds the LLM and serves the current adapter as request 1
    (llm,) = fake_vllm.instances
    assert llm.generate_calls[-1]["lora"].lora_int_id == 1

    _train_step(model)
    sync_weights(model)  # the trainer's hook after an optimizer step
    request = engine._lora
    assert request.lora_int_id == 2 and request.lora_name != "smarttuner-policy-1"
    folder = Path(request.lora_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # older syncs removed
    assert (folder / "adapter_config.json").is_file()
    with monkeypatch.context() as cpu_only:  # reload as plain peft would, on this CPU host
        cpu_only.setattr(torch.cuda, "is_available", lambda: False)
        base_dir = model.get_base_model().name_or_path
        base, _ = load_model(ModelConfig(name=base_dir, device="cpu"), trainable=False)
        reloaded = PeftModel.from_pretrained(base, folder)
    policy = {n: p for n, p in model.named_parameters() if "lora_" in n}
    for name, param in reloaded.named_parameters():
        if "lora_" in name:
            assert torch.equal(param, policy[name]), name

    rollout()  # already in sync: no new adapter
    assert llm.generate_calls[-1]["lora"].lora_int_id == 2
    _train_step(model)  # the hook forgotten: the rollout notices the update and syncs itself
    rollout()
    assert llm.generate_calls[-1]["lora"].lora_int_id == 3
    assert llm.resets == 3  # prefix cache dropped at every sync
    assert len(fake_vllm.instances) == 1


def test_full_finetune_sync_pushes_every_parameter(
    fake_vllm, tiny_model_dir, tiny_tokenizer
) -> None:
    model, _ = load_model(
        ModelConfig(name=tiny_model_dir, device="cpu"), LoraSettings(enabled=False)
    )
    fake_vllm.script = staticmethod(
        lambda prompt, p, lora: [([tiny_tokenizer.eos_token_id], "stop", None)] * p.n
    )
    engine = get_engine("vllm")
    engine(model, tiny_tokenizer, [[5]], 1, SamplingParams(max_new_tokens=2, temperature=1.0))
    (llm,) = fake_vllm.instances
    assert "enable_lora" not in llm.kwargs
    assert llm.generate_calls[-1]["lora"] is None
    _train_step(model)
    sync_weights(model)
    served = llm.served.weights
    assert set(served) == {n for n, _ in model.named_parameters()}
    for name, param in model.named_parameters():
        assert torch.equal(served[name], param.detach()), name
    assert llm.resets == 2


def test_a_policy_with_lora_rebuilds_an_engine_built_without(
    fake_vllm, model_dir_model, lora_model, tiny_tokenizer
) -> None:
    """The pipeline probes the plain starting model, then trains an adapter."""
    fake_vllm.script = staticmethod(
        lambda prompt, p, lora: [([tiny_tokenizer.eos_token_id], "stop", None)] * p.n
    )
    engine = get_engine("vllm")
    params = SamplingParams(max_new_tokens=2, temperature=1.0)
    engine(model_dir_model[0], tiny_tokenizer, [[5]], 1, params)
    engine(lora_model[0], tiny_tokenizer, [[5]], 1, params)
    first, second = fake_vllm.instances
    assert "enable_lora" not in first.kwargs and second.kwargs["enable_lora"] is True
    assert second.generate_calls[-1]["lora"].lora_int_id == 1
