"""The exceptions that mean "bad input or a known failure": the CLI prints them as one line
and exits non-zero instead of showing a traceback."""

from __future__ import annotations

from smarttuner.checkpoint import CheckpointError, RunInterrupted
from smarttuner.config import ConfigError
from smarttuner.distributed import DistributedError, PeerFailure
from smarttuner.grpo.checkpoint import TaskError
from smarttuner.grpo.optimize import NonFiniteLossError
from smarttuner.models import ModelLoadError
from smarttuner.outputs import OutputDirError
from smarttuner.prompts import PromptTooLongError
from smarttuner.rewards import RewardError

USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    ModelLoadError,
    OutputDirError,
    PromptTooLongError,
    RewardError,
    TaskError,
    NonFiniteLossError,
    CheckpointError,
    RunInterrupted,
    DistributedError,
    PeerFailure,
    ValueError,
    FileNotFoundError,
    OSError,
)
