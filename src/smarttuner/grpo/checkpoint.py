"""What a GRPO checkpoint holds, how a run comes back from one, and the guards that save it.

The files and their guarantees (atomic folders, manifest, safetensors + JSON, no pickle) are
`smarttuner.checkpoint`'s; this module decides what of a `GRPORun` goes in them: the trained
weights, optimizer and scheduler, the iteration, data cursor and OptimState (accumulation
position, dapo window tokens, non-finite streak), results so far, the tracker position (line
counts of metrics.jsonl and completions.jsonl, cut back to on resume), and per process the
experience buffer, RNG states and the gradients of an accumulation window still open.

Sampling seeds are derived from (seed, iteration, shard), so they need no saving; the shuffle
generator and the global RNGs do. With all of that restored, a resumed CPU run logs exactly
the numbers the uninterrupted run logs (tests/unit/grpo/test_grpo_checkpoint_resume.py).

Guards (`saved_on_failure`): a reward or task that raises while experience is collected
leaves the state of the previous iteration untouched (the trainer restores the cursor and
RNGs it moved), so that state is saved before the error is reported, with the note appended
to its one line; a non-finite streak saves nothing, so the newest checkpoint is the last good
one, and the message names it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from smarttuner import checkpoint as ckpt
from smarttuner import fsdp
from smarttuner.config import ConfigError, GRPOConfig
from smarttuner.distributed import Dist, PeerFailure
from smarttuner.grpo.optimize import NonFiniteLossError, OptimState
from smarttuner.models import save_model
from smarttuner.rewards import RewardError
from smarttuner.tasks.base import Example, Task
from smarttuner.tracking import COMPLETIONS_FILE, METRICS_FILE

if TYPE_CHECKING:
    from smarttuner.grpo.trainer import GRPORun

log = logging.getLogger(__name__)

# Fields a resumed run may change; any other difference from the checkpoint's config is refused.
RESUMABLE_CHANGES = (
    "num_iterations",
    "resume",
    "overwrite",
    "output_dir",
    "eval.",
    "log_completions_every",
    "checkpoint_every",
    "keep_checkpoints",
    "max_nonfinite_in_a_row",
    "model.device",
)


def config_differences(saved: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list:
    """Dotted keys whose values differ (outside RESUMABLE_CHANGES), as (key, saved, current)."""
    out = []
    for key in sorted(set(saved) | set(current)):
        name = f"{prefix}{key}"
        if any(name == c or (c.endswith(".") and name.startswith(c)) for c in RESUMABLE_CHANGES):
            continue
        a, b = saved.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_differences(a, b, f"{name}.")
        elif a != b:
            out.append((name, a, b))
    return out


def resume_point(cfg: GRPOConfig, root: Path) -> Path | None:
    """The checkpoint to continue from: none (resume false, or auto without one), or the newest
    complete one whose checksums hold; resume true without one is an error."""
    if cfg.resume is False:
        return None
    found = ckpt.newest_valid_checkpoint(root)
    if found is None and cfg.resume is True:
        raise ckpt.CheckpointError(
            f"resume: no complete checkpoint under {root}; run without --resume to start fresh"
        )
    return found


def check_resumable(path: Path, cfg: GRPOConfig, dist: Dist, shards: int) -> None:
    """Refuse, before any work, a resume whose settings would not continue the same run."""
    state = ckpt.read_json_file(path / ckpt.STATE_FILE)
    diff = config_differences(state["config"], cfg.model_dump(mode="json"))
    if diff:
        key, was, now = diff[0]
        raise ConfigError(
            f"cannot resume {path}: {key} was {was!r} there and is {now!r} now; "
            "resume with the same settings (or start a new run)"
        )
    if (state["world_size"], state["sampling_shards"]) != (dist.world_size, shards):
        raise ConfigError(
            f"cannot resume {path}: it was written by {state['world_size']} process(es) with "
            f"{state['sampling_shards']} sampling shard(s); resume with the same"
        )


def save_run(run: GRPORun) -> Path | None:
    """Checkpoint iteration `run.completed`. Collective: every process sends its own state to
    the main process, which writes; a failure there is raised on every process."""
    tensors, plain = _process_state(run)
    blobs = run.dist.gather_bytes(ckpt.tensors_to_bytes(tensors))
    plains = run.dist.gather_json(plain)
    gathered = None  # a sharded run's full weights and optimizer state, on the main process
    if fsdp.is_sharded(run.model):
        gathered = (
            fsdp.full_model_state(run.model),
            fsdp.full_optimizer_state(run.model, run.optimizer),
        )
    path, failed = None, None
    if run.dist.is_main:
        try:
            path = ckpt.write_checkpoint(
                run.checkpoints,
                run.completed,
                lambda tmp: _fill(run, tmp, blobs, plains, gathered),
                run.cfg.keep_checkpoints,
            )
        except ckpt.CheckpointError as err:
            failed = err
    if run.dist.any(failed is not None):
        raise failed or ckpt.CheckpointError("the main process could not write a checkpoint")
    run.saved = run.completed
    return path


def _process_state(run: GRPORun) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    buffer_tensors, index = ckpt.buffer_state(run.buffer.items)
    rng_tensors, rng_plain = ckpt.rng_state(run.generator)
    grads = {
        f"grad.{n}": fsdp.local(p.grad)  # sharded runs: this process's shard
        for n, p in run.model.named_parameters()
        if p.requires_grad and p.grad is not None
    }  # an accumulation window still open at the iteration's end
    return {**buffer_tensors, **rng_tensors, **grads}, {"buffer": index, "rng": rng_plain}


def _fill(
    run: GRPORun,
    tmp: Path,
    blobs: list[bytes],
    plains: list[dict],
    gathered: tuple[dict, dict] | None = None,
) -> None:
    weights, optimizer = gathered or (None, None)
    save_model(run.model, run.tokenizer, tmp / ckpt.MODEL_DIR, state_dict=weights)
    opt_tensors, opt_plain = ckpt.optimizer_state(run.optimizer, optimizer)
    ckpt.save_tensors(tmp / ckpt.OPTIMIZER_FILE, opt_tensors)
    for rank, (blob, plain) in enumerate(zip(blobs, plains, strict=True)):
        folder = tmp / f"process-{rank}"
        folder.mkdir()
        (folder / "state.safetensors").write_bytes(blob)
        ckpt.write_json_file(folder / "state.json", plain)
    ckpt.write_json_file(
        tmp / ckpt.STATE_FILE,
        {
            "format": ckpt.FORMAT_VERSION,
            "iteration": run.completed,
            "eval_pending": run.eval_pending,
            "cursor": run.cursor,
            "optim_state": asdict(run.state),
            "tracker": {
                name: ckpt.count_lines(run.out / name) for name in (METRICS_FILE, COMPLETIONS_FILE)
            },
            "results": run.results,
            "train_seconds": run.train_seconds,
            "world_size": run.dist.world_size,
            "sampling_shards": run.shards,
            "config": run.cfg.model_dump(mode="json"),
            "optimizer": opt_plain,
            "scheduler": run.scheduler.state_dict(),
            "torch_version": torch.__version__,
        },
    )


def restore_run(run: GRPORun, path: Path) -> None:
    """Load a checkpoint into a freshly built run (every process reads its own part). The
    model's weights were loaded while building it (`trainer._build_run`, before sharding)."""
    state = ckpt.read_json_file(path / ckpt.STATE_FILE)
    sharded = fsdp.is_sharded(run.model)
    ckpt.load_optimizer_state(
        run.optimizer,
        ckpt.load_tensors(path / ckpt.OPTIMIZER_FILE),
        state["optimizer"],
        partial(fsdp.load_full_optimizer_state, run.model, run.optimizer) if sharded else None,
    )
    run.scheduler.load_state_dict(state["scheduler"])
    folder = path / f"process-{run.dist.rank}"
    tensors = ckpt.load_tensors(folder / "state.safetensors")
    plain = ckpt.read_json_file(folder / "state.json")
    run.buffer.items = []
    run.buffer.add(ckpt.buffer_from_state(tensors, plain["buffer"]))
    ckpt.restore_rng(tensors, plain["rng"], run.generator)
    for name, p in run.model.named_parameters():
        if p.requires_grad and f"grad.{name}" in tensors:
            p.grad = fsdp.like_param(p, tensors[f"grad.{name}"])
    run.state = OptimState(**state["optim_state"])
    run.cursor = state["cursor"]
    run.completed = run.saved = state["iteration"]
    run.eval_pending = state["eval_pending"]
    run.train_seconds = state["train_seconds"]
    run.results = state["results"]
    if run.dist.is_main:
        for name, lines in state["tracker"].items():
            ckpt.truncate_lines(run.out / name, lines)


def save_after_failure(run: GRPORun) -> str:
    """After an error: save the last completed iteration if the state is still exactly that
    (the error came before training touched it); returns what to tell the user."""
    if run.dirty:
        return last_good(run)
    if run.completed > max(run.saved, 0):
        try:
            path = save_run(run)
        except ckpt.CheckpointError as err:
            return f"saving the state failed too ({err})"
        return f"the state of iteration {run.completed} is saved in {path}; fix it, then --resume"
    if run.completed and run.completed == run.saved:
        return f"the state of iteration {run.completed} is in its checkpoint; fix it, then --resume"
    return "nothing to save yet (no iteration had finished)"


def last_good(run: GRPORun) -> str:
    path = ckpt.latest_checkpoint(run.checkpoints)
    if path is None:
        return "no checkpoint had been saved before it"
    return f"the last good checkpoint is {path} (--resume continues from it)"


class TaskError(RuntimeError):
    """A task's grader raised (names the task and the sample)."""


class GuardedTask:
    """A task whose graders name the task and the sample when they raise."""

    def __init__(self, task: Task) -> None:
        self._task = task

    def __getattr__(self, name: str) -> Any:  # everything but the graders: the task's own
        if name == "_task":  # not set yet (copy, unpickling): no recursion
            raise AttributeError(name)
        return getattr(self._task, name)

    def _guard(self, method: str, completion: str, example: Example) -> Any:
        try:
            return getattr(self._task, method)(completion, example)
        except Exception as err:
            raise TaskError(
                f"task {self._task.name!r} raised {type(err).__name__} in {method}: {err} "
                f"(question {example.question[:80]!r}, completion {completion[:80]!r})"
            ) from err

    def score(self, completion: str, example: Example) -> float:
        return self._guard("score", completion, example)

    def is_correct(self, completion: str, example: Example) -> bool:
        return self._guard("is_correct", completion, example)


def _with_note(err: Exception, note: str) -> Exception:
    """The same error with `note` appended to its one-line message (known error types)."""
    if isinstance(err, RewardError | TaskError | NonFiniteLossError | PeerFailure):
        return type(err)(f"{err}; {note}")
    log.error("%s", note)
    return err


@contextmanager
def saved_on_failure(run: GRPORun) -> Iterator[None]:
    """Around the iteration loop: on an error, save what can be saved and say where."""
    try:
        yield
    except (ckpt.RunInterrupted, ckpt.CheckpointError):
        raise
    except NonFiniteLossError as err:
        raise _with_note(err, last_good(run)) from err
    except Exception as err:
        raise _with_note(err, save_after_failure(run)) from err
