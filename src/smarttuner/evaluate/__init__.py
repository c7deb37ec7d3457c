"""Evaluation: task accuracy and format compliance on held-out prompts."""

from smarttuner.evaluate.task_eval import EvalResult, evaluate_task

__all__ = ["EvalResult", "evaluate_task"]
