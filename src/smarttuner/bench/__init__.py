"""`smarttuner bench`: measured speed and memory of a GRPO step, against transformers
`generate` and (with the `bench` extra) TRL's GRPOTrainer on the same configuration.

Every measurement runs in its own subprocess (`python -m smarttuner.bench.workers KIND`), so
peak RSS is each system's own and no run warms another's caches. Ratios are taken between
numbers measured in the same invocation, never against remembered ones.
"""

from smarttuner.bench.run import BenchSettings, run_bench

__all__ = ["BenchSettings", "run_bench"]
