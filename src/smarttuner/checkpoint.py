"""Resumable checkpoints: atomic directories of safetensors and JSON, never pickle.

Layout under the run's output directory (one folder per saved iteration, zero-padded so the
names sort):

    checkpoints/checkpoint-000012/
        MANIFEST.json            sha256 and size of every other file; written last = "complete"
        trainer_state.json       iteration, data cursor, OptimState, tracker position, results so
                                 far, config, optimizer param groups and non-tensor state,
                                 scheduler state
        optimizer.safetensors    optimizer tensors ("state.<param index>.<name>")
        model/                   the adapter (or full model) + tokenizer, plain HF format
        process-<r>/state.safetensors   per process: experience buffer tensors, RNG states
                                        (torch CPU, the shuffle generator, CUDA) and the
                                        gradients of an accumulation window still open
        process-<r>/state.json          per process: buffer index, python and numpy RNG states

A checkpoint is written into `checkpoints/.tmp-…`, fsynced, and renamed into place; a crash
mid-write leaves only a temporary folder (removed on the next start) and the previous
checkpoint untouched. The newest `keep` complete checkpoints are kept.

Why no `torch.save`: an optimizer's `state_dict()` is a nest of tensors and plain values, and
`torch.save` pickles it. `torch.load(weights_only=True)` would be safe to read it back, but
splitting it into a safetensors file (the tensors) and JSON (everything else) keeps one rule
for every file SmartTuner reads — nothing is unpickled, whoever wrote the file — and leaves
checkpoints inspectable with any JSON or safetensors reader.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import safetensors.torch
import torch
from safetensors import SafetensorError

from smarttuner.grpo.buffer import Experience

log = logging.getLogger(__name__)

CHECKPOINTS_DIR = "checkpoints"
MANIFEST = "MANIFEST.json"
STATE_FILE = "trainer_state.json"
OPTIMIZER_FILE = "optimizer.safetensors"
MODEL_DIR = "model"
FORMAT_VERSION = 1
_NAME = re.compile(r"^checkpoint-(\d+)$")
_TMP_PREFIX = ".tmp-"


class CheckpointError(RuntimeError):
    """A checkpoint could not be written or read (one line, names the folder)."""


class RunInterrupted(RuntimeError):
    """SIGINT/SIGTERM stopped the run after it saved a checkpoint."""


# --- the folder: naming, completeness, atomic write, pruning -------------------------------


def checkpoint_name(iteration: int) -> str:
    return f"checkpoint-{iteration:06d}"


def checkpoint_iteration(path: Path) -> int:
    match = _NAME.match(path.name)
    if not match:
        raise CheckpointError(f"{path} is not a checkpoint folder (checkpoint-<iteration>)")
    return int(match.group(1))


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints (a MANIFEST.json present) under `root`, oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if _NAME.match(p.name) and (p / MANIFEST).is_file()]
    return sorted(found, key=checkpoint_iteration)


def latest_checkpoint(root: Path) -> Path | None:
    found = list_checkpoints(root)
    return found[-1] if found else None


def verify_checkpoint(path: Path) -> None:
    """Every file the manifest lists is present with its size and sha256."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        files = manifest["files"]
    except (OSError, ValueError, KeyError) as err:
        raise CheckpointError(f"checkpoint {path} has an unreadable manifest: {err}") from None
    for rel, meta in files.items():
        file = path / rel
        if not file.is_file() or file.stat().st_size != meta["bytes"]:
            raise CheckpointError(f"checkpoint {path}: {rel} is missing or has the wrong size")
        if _sha256(file) != meta["sha256"]:
            raise CheckpointError(f"checkpoint {path}: {rel} does not match its checksum")


def newest_valid_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint whose files match their checksums (older ones are tried
    when a newer one is damaged, with a warning)."""
    for path in reversed(list_checkpoints(root)):
        try:
            verify_checkpoint(path)
            return path
        except CheckpointError as err:
            log.warning("skipping damaged checkpoint: %s", err)
    return None


def remove_temporary(root: Path) -> None:
    """Folders left by a save that was killed mid-write."""
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(_TMP_PREFIX):
                shutil.rmtree(p, ignore_errors=True)


def write_checkpoint(root: Path, iteration: int, fill: Callable[[Path], None], keep: int) -> Path:
    """Let `fill` write a checkpoint's files into a temporary folder, add the manifest, fsync,
    rename it to `checkpoint-<iteration>` and keep the newest `keep` checkpoints.

    Any I/O error (a full disk …) removes the temporary folder and becomes one CheckpointError
    line; the previous checkpoints are never touched before the new one is in place."""
    final = root / checkpoint_name(iteration)
    tmp: Path | None = None
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{final.name}-", dir=root))
        fill(tmp)
        _write_manifest(tmp, iteration)
        _fsync_tree(tmp)
        if final.exists():  # the same iteration saved again (e.g. after a resume)
            old = root / f"{_TMP_PREFIX}old-{final.name}"
            shutil.rmtree(old, ignore_errors=True)
            final.rename(old)
        tmp.rename(final)
        _fsync_dir(root)
    except (OSError, SafetensorError) as err:  # safetensors reports I/O errors as its own type
        previous = latest_checkpoint(root)
        kept = f"the previous checkpoint {previous} is intact" if previous else "none was saved"
        reason = getattr(err, "strerror", None) or str(err)
        raise CheckpointError(
            f"could not write checkpoint {iteration} under {root}: {reason}; {kept}"
        ) from err
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    remove_temporary(root)
    for old in list_checkpoints(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_manifest(folder: Path, iteration: int) -> None:
    files = {
        str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha256": _sha256(p)}
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
    manifest = {"format": FORMAT_VERSION, "iteration": iteration, "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=1))


def _fsync_tree(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            with p.open("rb") as fh:
                os.fsync(fh.fileno())
    for d in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_dir(d)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some platforms cannot open folders; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --- files: safetensors for tensors, JSON for the rest ------------------------------------


def save_tensors(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(_cpu(tensors), str(path))


def load_tensors(path: Path) -> dict[str, torch.Tensor]:
    return safetensors.torch.load_file(str(path))


def tensors_to_bytes(tensors: dict[str, torch.Tensor]) -> bytes:
    return safetensors.torch.save(_cpu(tensors))


def write_json_file(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        text = json.dumps(data, indent=1, allow_nan=True)
    except TypeError as err:  # a value JSON cannot hold: a bug, not a user error
        raise CheckpointError(f"cannot write {path.name}: {err}") from err
    path.write_text(text)


def read_json_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"cannot read {path}: {err}") from None


def _cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


# --- model weights -----------------------------------------------------------------------------


def load_model_weights(model: torch.nn.Module, folder: Path) -> None:
    """Load a checkpoint's `model/` (written by `models.save_model`) into the live model: the
    trained adapter of a PEFT model, or every weight of a full model (tied copies excepted)."""
    from peft import PeftModel, set_peft_model_state_dict

    if isinstance(model, PeftModel):
        weights = load_tensors(folder / "adapter_model.safetensors")
        result = set_peft_model_state_dict(model, weights, adapter_name="default")
        if result.unexpected_keys:
            raise CheckpointError(
                f"{folder}: adapter weights {result.unexpected_keys[:3]} do not fit this model"
            )
        return
    weights: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        weights.update(load_tensors(file))
    missing, unexpected = model.load_state_dict(weights, strict=False)
    live = model.state_dict()
    loaded_ptrs = {live[k].data_ptr() for k in weights if k in live}
    untied = [k for k in missing if live[k].data_ptr() not in loaded_ptrs]
    if unexpected or untied:
        raise CheckpointError(
            f"{folder}: weights do not fit this model (missing {untied[:3]}, "
            f"unexpected {unexpected[:3]})"
        )


# --- optimizer and scheduler ---------------------------------------------------------------


def optimizer_state(
    optimizer: torch.optim.Optimizer, sd: dict | None = None
) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, JSON part) of `optimizer.state_dict()` (or of `sd`, the same thing gathered
    from a sharded run)."""
    sd = optimizer.state_dict() if sd is None else sd
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, entry in sd["state"].items():
        plain[str(index)] = {}
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"state.{index}.{key}"] = value
            else:
                plain[str(index)][key] = value
    return tensors, {"state": plain, "param_groups": sd["param_groups"]}


def load_optimizer_state(
    optimizer: torch.optim.Optimizer,
    tensors: dict[str, torch.Tensor],
    plain: dict,
    load: Callable[[dict], None] | None = None,
) -> None:
    """Rebuild the state dict saved by `optimizer_state` and load it (with `load`, e.g. a
    sharded run's loader, instead of `optimizer.load_state_dict`)."""
    state: dict[int, dict[str, Any]] = {int(i): dict(v) for i, v in plain["state"].items()}
    for key, value in tensors.items():
        _, index, name = key.split(".", 2)
        state.setdefault(int(index), {})[name] = value
    live = optimizer.state_dict()["param_groups"]
    if len(live) != len(plain["param_groups"]):
        raise CheckpointError("the checkpoint's optimizer has a different number of param groups")
    groups = [
        {k: tuple(v) if isinstance(now.get(k), tuple) else v for k, v in saved.items()}
        for saved, now in zip(plain["param_groups"], live, strict=True)
    ]  # JSON turned tuples such as AdamW's betas into lists
    try:
        (load or optimizer.load_state_dict)({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as err:
        raise CheckpointError(f"the checkpoint's optimizer state does not fit: {err}") from None


# --- RNG states ------------------------------------------------------------------------------


def rng_state(shuffle: torch.Generator) -> tuple[dict[str, torch.Tensor], dict]:
    """Python, numpy, torch CPU, CUDA (if present) and the run's shuffle generator."""
    tensors = {"rng.torch": torch.get_rng_state(), "rng.shuffle": shuffle.get_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng.cuda.{i}"] = s
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    plain = {
        "python": [version, list(internal), gauss],
        "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
    }
    return tensors, plain


def restore_rng(tensors: dict[str, torch.Tensor], plain: dict, shuffle: torch.Generator) -> None:
    torch.set_rng_state(tensors["rng.torch"])
    shuffle.set_state(tensors["rng.shuffle"])
    cuda = [tensors[k] for k in sorted(t for t in tensors if t.startswith("rng.cuda."))]
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = plain["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = plain["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


# --- experience buffer -------------------------------------------------------------------------


def buffer_state(items: list[Experience]) -> tuple[dict[str, torch.Tensor], list[list]]:
    """Concatenated tensors + one index row per experience:
    [prompt len, completion len, has old log-probs, has ref log-probs, advantage, iteration,
    group, credit_from]. Advantages are Python floats, exact through JSON."""

    def cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)

    old = [e.old_logprobs for e in items if e.old_logprobs is not None]
    ref = [e.ref_logprobs for e in items if e.ref_logprobs is not None]
    tensors = {
        "buffer.prompt_ids": cat([e.prompt_ids for e in items], torch.long),
        "buffer.completion_ids": cat([e.completion_ids for e in items], torch.long),
        "buffer.old_logprobs": cat(old, torch.float32),
        "buffer.ref_logprobs": cat(ref, torch.float32),
    }
    index = [
        [
            len(e.prompt_ids),
            len(e.completion_ids),
            e.old_logprobs is not None,
            e.ref_logprobs is not None,
            e.advantage,
            e.iteration,
            e.group,
            e.credit_from,
        ]
        for e in items
    ]
    return tensors, index


def buffer_from_state(tensors: dict[str, torch.Tensor], index: list[list]) -> list[Experience]:
    items = []
    at = {"p": 0, "c": 0, "old": 0, "ref": 0}

    def take(key: str, name: str, n: int) -> torch.Tensor:
        part = tensors[name][at[key] : at[key] + n]
        at[key] += n
        return part

    for p_len, c_len, has_old, has_ref, advantage, iteration, group, *rest in index:
        credit_from = rest[0] if rest else 0  # checkpoints before grpo.blame have 7 fields
        items.append(
            Experience(
                prompt_ids=take("p", "buffer.prompt_ids", p_len),
                completion_ids=take("c", "buffer.completion_ids", c_len),
                old_logprobs=take("old", "buffer.old_logprobs", c_len) if has_old else None,
                ref_logprobs=take("ref", "buffer.ref_logprobs", c_len) if has_ref else None,
                advantage=float(advantage),
                iteration=int(iteration),
                group=int(group),
                credit_from=int(credit_from),
            )
        )
    return items


# --- the append-only logs ------------------------------------------------------------------


def count_lines(path: Path) -> int:
    if not path.is_file():
        return 0
    with path.open("rb") as fh:
        return sum(1 for _ in fh)


def truncate_lines(path: Path, lines: int) -> None:
    """Keep the first `lines` lines of an append-only log (what was logged up to a checkpoint)."""
    if not path.is_file():
        return
    with path.open("rb") as fh:
        kept = [line for _, line in zip(range(lines), fh, strict=False)]
    tmp = path.with_name(f".{path.name}.truncate")
    tmp.write_bytes(b"".join(kept))
    os.replace(tmp, path)


# --- SIGINT / SIGTERM ------------------------------------------------------------------------


class StopRequest:
    """Set by SIGINT/SIGTERM; the loop checks it at iteration ends. A second signal raises
    KeyboardInterrupt at once (stop now, without the checkpoint)."""

    def __init__(self) -> None:
        self.signal: int | None = None

    @property
    def requested(self) -> bool:
        return self.signal is not None

    def handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum
        log.warning(
            "%s: finishing this iteration, saving a checkpoint, then stopping "
            "(send it again to stop at once, without saving)",
            signal.Signals(signum).name,
        )


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Install SIGINT/SIGTERM handlers for the block and restore the previous ones after.
    Outside the main thread (where Python cannot install handlers) nothing is installed."""
    stop = StopRequest()
    previous: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, stop.handle)
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
