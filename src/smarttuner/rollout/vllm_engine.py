"""vLLM rollouts on one CUDA GPU: `generation.engine: vllm` (`--rollout-engine vllm`).

Targets vLLM >= 0.11 (the V1 engine) through its documented offline API: `LLM`,
`SamplingParams`, `TokensPrompt`, `LoRARequest`, `LLM.apply_model`, `LLM.reset_prefix_cache`.
Written from vLLM's documentation and sources; it has not been run here (no GPU on the
development machine): docs/gpu.md says what was and was not verified.

How it fits SmartTuner:
- colocated: the `vllm.LLM` lives in the training process, on the training GPU, with its own
  copy of the weights; it takes `gpu_memory_utilization` of the GPU (weights + KV cache, 0.3 by
  default so training keeps the rest). `distributed_executor_backend="external_launcher"`
  keeps vLLM's engine and worker in this process (as TRL's colocate mode does), so the weight
  sync reaches vLLM's model without serialising tensors. One process, one GPU: a
  multi-process launch is refused.
- the LLM is built on the first rollout, from the policy's base checkpoint on disk (vLLM loads
  weights itself), with LoRA enabled when the policy is a PEFT model; a later call with a
  different base (or LoRA where there was none) rebuilds it.
- weight sync (`sync_weights`, after each optimizer update): a LoRA policy is saved as a PEFT
  adapter folder and served through a fresh `LoRARequest` — a new integer id per sync, since
  vLLM caches adapters by id and would keep serving the old weights under a reused one; a
  fully fine-tuned policy pushes its parameters into vLLM's model (`push_full_weights`).
  Prefix caches computed with the old weights are dropped. As a safety net a rollout also
  syncs by itself when the policy object changed or its trainable parameters were updated
  in place since the last sync (their autograd version counters moved; torch's default
  AdamW moves them, fused optimizers do not — so the trainer should still call the hook).
- outputs: vLLM's token ids go through `types.finalize`, the same cut at EOS or at the token
  that completes a stop string as the CPU engines, so masks, `truncated` and texts match.

Departures from the CPU engines: sampling is vLLM's own (temperature then top-p, as in
transformers, but its kernels, its dtype and its RNG seeded per prompt from the run's
generator), so runs are reproducible with the same seeds yet do not match the fast engine
token for token. Greedy decoding asks vLLM for one completion per prompt and repeats it.
"""

from __future__ import annotations

import gc
import importlib
import importlib.util
import logging
import os
import shutil
import socket
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.models import is_peft
from smarttuner.rollout.types import (
    RolloutBatch,
    SamplingParams,
    eos_token_ids,
    finalize,
    left_pad,
)

log = logging.getLogger(__name__)

NEEDS = "--rollout-engine vllm needs vLLM and a CUDA GPU"
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's allowed `max_lora_rank` values
ADAPTER = "default"  # the trained PEFT adapter (a frozen 'reference' copy may sit beside it)
_DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


class EngineUnavailableError(ValueError):
    """The rollout engine cannot run here (one line, says what is missing and how to get it)."""


class RolloutError(RuntimeError):
    """vLLM returned something the conversion to a RolloutBatch cannot represent."""


@dataclass(frozen=True)
class VLLMSettings:
    gpu_memory_utilization: float = 0.3  # share of the GPU vLLM takes (weights + KV cache)
    max_model_len: int | None = None  # None: the model's context length
    enforce_eager: bool = False  # True: no CUDA graphs (less memory and start-up, slower decode)
    seed: int = 0  # vLLM's own seed; each request also gets a seed from the run's generator
    adapter_root: str | None = None  # where LoRA syncs go (None: a temp dir removed on close)

    def __post_init__(self) -> None:
        if not 0.0 < self.gpu_memory_utilization <= 1.0:
            raise ValueError(
                f"vLLM gpu_memory_utilization={self.gpu_memory_utilization} must be in (0, 1]"
            )


@dataclass(frozen=True)
class PolicySpec:
    """What the vLLM engine must be built with to serve a policy."""

    base_path: str  # the checkpoint vLLM loads (hub id or folder)
    dtype: str
    lora_rank: int  # vLLM max_lora_rank bucket; 0 = no LoRA (full model)
    quantized: bool  # base loaded in 4 bit (QLoRA): vLLM quantises in flight too


def _module_present(name: str) -> bool:
    if name in sys.modules:
        return sys.modules[name] is not None
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_vllm_available() -> None:
    """Raise EngineUnavailableError unless vLLM is installed, a CUDA GPU is visible and the run
    is a single process. Cheap: vLLM itself is imported only when the LLM is built."""
    if not _module_present("vllm"):
        raise EngineUnavailableError(f"{NEEDS}: pip install 'smarttuner[vllm]'")
    if not torch.cuda.is_available():
        raise EngineUnavailableError(
            f"{NEEDS}: vLLM is installed but torch sees no CUDA GPU "
            "(torch.cuda.is_available() is False); use --rollout-engine fast on this machine"
        )
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        raise EngineUnavailableError(
            f"--rollout-engine vllm runs in one process on one GPU, but this run has "
            f"WORLD_SIZE={world} processes; launch a single process or use --rollout-engine fast"
        )


def lora_rank_bucket(rank: int) -> int:
    """The smallest vLLM `max_lora_rank` that holds an adapter of rank `rank`."""
    for allowed in LORA_RANKS:
        if rank <= allowed:
            return allowed
    raise ValueError(f"LoRA rank {rank} is above vLLM's largest max_lora_rank {LORA_RANKS[-1]}")


def policy_spec(model: PreTrainedModel) -> PolicySpec:
    peft = is_peft(model)
    base = model.get_base_model() if peft else model
    path = getattr(base, "name_or_path", "") or getattr(base.config, "_name_or_path", "")
    if not path:
        raise ValueError(
            "vLLM loads the policy's base checkpoint from disk or the hub, but this model has no "
            "name_or_path; save it and load it from that folder"
        )
    rank = 0
    if peft:
        lora = model.peft_config[ADAPTER]
        rank = lora_rank_bucket(max([lora.r, *getattr(lora, "rank_pattern", {}).values()]))
    quantized = bool(getattr(base, "is_loaded_in_4bit", False))
    dtype = getattr(base.config, "dtype", None) if quantized else base.dtype
    return PolicySpec(str(path), _DTYPES.get(dtype, "bfloat16"), rank, quantized)


def weights_version(model: PreTrainedModel) -> int:
    """Sum of the trainable parameters' in-place version counters: moves when an optimizer
    step (or a checkpoint load) writes them."""
    return sum(p._version for p in model.parameters() if p.requires_grad)


def _single_process_env() -> None:
    """vLLM's external launcher joins a torch.distributed group from the environment; a plain
    single-process run has none, so describe one (existing values are kept)."""
    if "MASTER_PORT" not in os.environ:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            os.environ["MASTER_PORT"] = str(s.getsockname()[1])
    for var, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
        os.environ.setdefault(var, value)
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")


def build_llm(vllm: Any, spec: PolicySpec, tokenizer_path: str, settings: VLLMSettings) -> Any:
    """A colocated `vllm.LLM` for `spec` (the only place engine arguments are chosen)."""
    _single_process_env()
    kwargs: dict[str, Any] = dict(
        model=spec.base_path,
        tokenizer=tokenizer_path,
        dtype=spec.dtype,
        seed=settings.seed,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        max_model_len=settings.max_model_len,
        enforce_eager=settings.enforce_eager,
        distributed_executor_backend="external_launcher",
        generation_config="vllm",  # sample exactly as asked, not with the checkpoint's defaults
    )
    if spec.lora_rank:
        kwargs.update(enable_lora=True, max_lora_rank=spec.lora_rank, max_loras=1)
    if spec.quantized:
        kwargs["quantization"] = "bitsandbytes"
    log.info("building vLLM engine for %s (%s)", spec.base_path, kwargs)
    return vllm.LLM(**kwargs)


def push_full_weights(llm: Any, model: PreTrainedModel) -> None:
    """Full fine-tuning sync: copy the policy's parameters into vLLM's model in place. vLLM's
    `load_weights` takes Hugging Face names and fuses q/k/v and gate/up itself; with the
    in-process executor `apply_model` runs the function on the model directly."""
    weights = [(name, param.detach()) for name, param in model.named_parameters()]
    llm.apply_model(lambda vllm_model: vllm_model.load_weights(weights))


def request_params(
    vllm: Any,
    params: SamplingParams,
    num_samples: int,
    num_prompts: int,
    eos: set[int],
    generator: torch.Generator | None,
) -> list[Any]:
    """One vLLM SamplingParams per prompt, seeded from `generator` so runs are reproducible."""
    greedy = params.temperature <= 0.0
    if generator is None:
        seeds: list[int | None] = [None] * num_prompts
    else:
        seeds = torch.randint(0, 2**31 - 1, (num_prompts,), generator=generator).tolist()
    return [
        vllm.SamplingParams(
            n=1 if greedy else num_samples,
            temperature=0.0 if greedy else params.temperature,
            top_p=1.0 if greedy else params.top_p,
            max_tokens=params.max_new_tokens,
            min_tokens=params.min_new_tokens,
            stop=list(params.stop_strings) or None,
            stop_token_ids=sorted(eos),
            seed=seed,
        )
        for seed in seeds
    ]


def completion_tokens(completion: Any) -> list[int]:
    """A completion's sampled ids ending with the token that stopped it. vLLM keeps an EOS or
    stop-token id in `token_ids`; should a version drop a stop token, `stop_reason` has it."""
    ids = [int(t) for t in completion.token_ids]
    reason = getattr(completion, "stop_reason", None)
    stopped_by_token = completion.finish_reason == "stop" and type(reason) is int
    if stopped_by_token and (not ids or ids[-1] != reason):
        ids.append(reason)
    return ids


def to_rollout_batch(
    outputs: list[Any],  # vLLM RequestOutputs, one per prompt, in prompt order
    prompts: list[list[int]],
    num_samples: int,
    params: SamplingParams,
    tokenizer: Tokenizer,
    eos: set[int],
) -> RolloutBatch:
    """vLLM's outputs as a prompt-major RolloutBatch, cut by `finalize` like the other engines."""
    if len(outputs) != len(prompts):
        raise RolloutError(f"vLLM returned {len(outputs)} outputs for {len(prompts)} prompts")
    greedy = params.temperature <= 0.0
    rows: list[list[int]] = []
    for i, request in enumerate(outputs):
        completions = sorted(request.outputs, key=lambda c: c.index)
        if greedy and len(completions) == 1:
            completions = completions * num_samples  # one greedy completion, repeated
        if len(completions) != num_samples:
            raise RolloutError(
                f"vLLM returned {len(completions)} completions for prompt {i}, "
                f"expected {num_samples}"
            )
        rows.extend(completion_tokens(c)[: params.max_new_tokens] for c in completions)
    pad = tokenizer.pad_token_id
    raw = torch.full((len(rows), params.max_new_tokens), pad, dtype=torch.long)  # [N, C]
    for i, row in enumerate(rows):
        raw[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    prompt_ids, prompt_mask = left_pad(prompts, pad)  # [B, P]
    batch = finalize(
        prompt_ids.repeat_interleave(num_samples, dim=0),
        prompt_mask.repeat_interleave(num_samples, dim=0),
        raw,
        tokenizer,
        eos,
        params.stop_strings,
    )
    for i, length in enumerate(batch.lengths.tolist()):
        if length > len(rows[i]):  # padding would be counted as sampled tokens
            raise RolloutError(
                f"vLLM completion {i} has {len(rows[i])} tokens and ends with neither EOS, a stop "
                f"string nor max_new_tokens={params.max_new_tokens}; cannot tell where it ends"
            )
    return batch


def _import_vllm() -> tuple[Any, Any]:
    """The vllm module and its LoRARequest class (imported on first use: vLLM is heavy)."""
    return importlib.import_module("vllm"), importlib.import_module("vllm.lora.request").LoRARequest


def _release_vllm_memory() -> None:
    """Best effort after deleting an LLM: tear down vLLM's process group, free cached blocks."""
    try:
        from vllm.distributed.parallel_state import (
            destroy_distributed_environment,
            destroy_model_parallel,
        )

        destroy_model_parallel()
        destroy_distributed_environment()
    except Exception as err:  # a test double or a vLLM without these: nothing more to free
        log.debug("vLLM teardown skipped: %s", err)
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class VLLMEngine:
    """A rollout engine (called like `generate_fast`) backed by a colocated `vllm.LLM` that it
    keeps in sync with the policy. Built by `get_engine('vllm')`; see the module docstring."""

    def __init__(self, settings: VLLMSettings | None = None) -> None:
        check_vllm_available()
        self.settings = settings or VLLMSettings()
        self._llm: Any = None
        self._spec: PolicySpec | None = None
        self._synced: weakref.ref | None = None  # the policy whose weights vLLM serves
        self._version = -1  # its weights_version() at that sync
        self._lora: Any = None  # the current LoRARequest (LoRA policies)
        self._syncs = 0  # LoRA request ids are 1, 2, 3, …: one per sync
        self._tmp: tempfile.TemporaryDirectory | None = None

    def __call__(
        self,
        model: PreTrainedModel,
        tokenizer: Tokenizer,
        prompts: list[list[int]],
        num_samples: int,
        params: SamplingParams,
        generator: torch.Generator | None = None,
    ) -> RolloutBatch:
        """`num_samples` completions for each prompt, prompt-major."""
        self._ensure_llm(model, tokenizer)
        if self._stale(model):
            self.sync_weights(model)
        vllm, _ = _import_vllm()
        eos = eos_token_ids(model, tokenizer)
        outputs = self._llm.generate(
            [vllm.TokensPrompt(prompt_token_ids=list(p)) for p in prompts],
            request_params(vllm, params, num_samples, len(prompts), eos, generator),
            use_tqdm=False,
            lora_request=self._lora,
        )
        return to_rollout_batch(outputs, prompts, num_samples, params, tokenizer, eos)

    def sync_weights(self, model: PreTrainedModel) -> None:
        """Make the next rollout sample from `model`'s current weights (see module docstring)."""
        if self._llm is None or self._spec != policy_spec(model):
            self._synced = None  # the next rollout builds (or rebuilds) the LLM, then syncs
            return
        if self._spec.lora_rank:
            self._lora = self._save_lora(model)
        else:
            push_full_weights(self._llm, model)
        self._llm.reset_prefix_cache()
        self._synced = weakref.ref(model)
        self._version = weights_version(model)

    def close(self) -> None:
        if self._llm is not None:
            self._llm = None
            _release_vllm_memory()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._spec, self._synced, self._lora = None, None, None

    def _stale(self, model: PreTrainedModel) -> bool:
        synced = self._synced() if self._synced is not None else None
        return synced is not model or self._version != weights_version(model)

    def _ensure_llm(self, model: PreTrainedModel, tokenizer: Tokenizer) -> None:
        spec = policy_spec(model)
        if self._llm is not None and spec == self._spec:
            return
        if self._llm is not None:
            log.info("policy changed from %s to %s: rebuilding the vLLM engine", self._spec, spec)
            self.close()
        vllm, _ = _import_vllm()
        self._llm = build_llm(vllm, spec, tokenizer.name_or_path or spec.base_path, self.settings)
        self._spec, self._synced, self._lora = spec, None, None

    def _adapter_root(self) -> Path:
        if self.settings.adapter_root is not None:
            root = Path(self.settings.adapter_root)
            root.mkdir(parents=True, exist_ok=True)
            return root
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="smarttuner-vllm-")
        return Path(self._tmp.name)

    def _save_lora(self, model: PreTrainedModel) -> Any:
        """Save the trained adapter for vLLM and return a fresh LoRARequest for it; folders of
        earlier syncs are deleted (vLLM has loaded them already, or never will)."""
        _, lora_request = _import_vllm()
        self._syncs += 1
        root = self._adapter_root()
        path = root / f"policy-{self._syncs:06d}"
        model.save_pretrained(path, selected_adapters=[ADAPTER], safe_serialization=True)
        for old in root.glob("policy-*"):
            if old != path:
                shutil.rmtree(old, ignore_errors=True)
        return lora_request(f"smarttuner-policy-{self._syncs}", self._syncs, str(path))
