"""Looking at models and runs: probe, generate, eval, pool, plot, report, tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from smarttuner.cli.common import (
    ModelOpt,
    TaskOpt,
    _fail,
    _run,
    app,
    console,
)


@app.command()
def probe(
    model: ModelOpt = "smollm2-135m-instruct",
    task: TaskOpt = "syllogism",
    num_prompts: Annotated[int, typer.Option(help="Prompts to sample.")] = 8,
    k: Annotated[int, typer.Option(help="Samples per prompt.")] = 4,
    max_new_tokens: Annotated[int, typer.Option()] = 200,
    temperature: Annotated[float, typer.Option()] = 0.7,
    dataset_seed: Annotated[int, typer.Option()] = 42,
    device: Annotated[str, typer.Option()] = "auto",
) -> None:
    """Format rate, pass@k and learnable-prompt share: does this model need SFT warm-up?"""
    from smarttuner.inference import probe_warmup

    result, reason = _run(
        probe_warmup,
        model,
        task,
        num_prompts=num_prompts,
        k=k,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        dataset_seed=dataset_seed,
        device=device,
    )
    console.print(result)
    console.print(reason, highlight=False)


@app.command()
def generate(
    question: Annotated[str, typer.Argument(help="The question to answer.")],
    model: Annotated[str, typer.Option(help="Trained dir (adapter or full) or model spec.")] = (
        "smollm2-135m-instruct"
    ),
    max_new_tokens: Annotated[int, typer.Option(help="Longest answer.")] = 300,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option()] = 1.0,
    num_samples: Annotated[int, typer.Option(help="Completions to sample.")] = 1,
    system_prompt: Annotated[
        str | None, typer.Option(help="Override the <think>/<answer> system prompt.")
    ] = None,
    device: Annotated[str, typer.Option()] = "auto",
) -> None:
    """Answer a question with a model (reasoning format prompt by default)."""
    from smarttuner.inference import generate_answers

    texts = _run(
        generate_answers,
        model,
        [question],
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        top_p=top_p,
        num_samples=num_samples,
        system_prompt=system_prompt,
        device=device,
    )
    for text in texts[0]:
        typer.echo(text)


@app.command("eval")
def eval_(
    model: ModelOpt = "smollm2-135m-instruct",
    task: TaskOpt = "syllogism",
    eval_seed: Annotated[int, typer.Option(help="Held-out seed.")] = 123,
    num_examples: Annotated[int, typer.Option(help="Prompts to score.")] = 100,
    max_new_tokens: Annotated[int, typer.Option()] = 300,
    batch_size: Annotated[int, typer.Option()] = 32,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write results JSON here.")
    ] = None,
    device: Annotated[str, typer.Option()] = "auto",
    autocast: Annotated[
        str,
        typer.Option(
            help="none (float32) or bfloat16/float16: decode as a pipeline with model.autocast "
            "does (merged copy in that dtype), to reproduce its eval numbers; auto: bfloat16 "
            "on a CPU with native bf16, else none."
        ),
    ] = "none",
    use_base_model: Annotated[
        bool, typer.Option(help="Evaluate the base model under the adapter dir --model.")
    ] = False,
    compare_to: Annotated[
        str | None, typer.Option(help="A second model: before/after table (it is 'before').")
    ] = None,
    compare_base: Annotated[
        bool, typer.Option(help="Compare the adapter dir --model with its base model.")
    ] = False,
    num_samples: Annotated[
        int, typer.Option(help="Samples per prompt for pass@k (0: greedy only).")
    ] = 0,
    pass_k: Annotated[str, typer.Option(help="k values of pass@k, e.g. 1,4.")] = "1",
    temperature: Annotated[float, typer.Option(help="Sampling temperature for pass@k.")] = 0.7,
    top_p: Annotated[float, typer.Option(help="Nucleus mass for pass@k.")] = 0.95,
    seed: Annotated[int, typer.Option(help="Sampling seed for pass@k.")] = 0,
    keep_samples: Annotated[
        int, typer.Option(help="Greedy completions written to --output (-1: all).")
    ] = 10,
    glue: Annotated[
        str | None,
        typer.Option(help="GLUE-style evaluation instead: cola,sts-b,mrpc,rte,wnli or all."),
    ] = None,
    glue_dir: Annotated[
        Path | None, typer.Option(help="Folder of GLUE TSV/CSV files (else `datasets`, online).")
    ] = None,
    max_samples: Annotated[int | None, typer.Option(help="GLUE examples per task.")] = None,
    save_predictions: Annotated[
        Path | None, typer.Option(help="Write GLUE predictions as DIR/<task>.json.")
    ] = None,
) -> None:
    """Score a model on a task's eval seed (greedy; pass@k with --num-samples), or on GLUE."""
    if glue is not None:
        _glue_eval(
            model, use_base_model, glue, glue_dir, max_samples, save_predictions, output, device
        )
        return
    from smarttuner.evaluate.harness import EvalOptions, run_evaluation
    from smarttuner.progress import results_table

    try:
        ks = tuple(int(k) for k in pass_k.split(",") if k.strip())
    except ValueError:
        _fail(f"--pass-k must be comma-separated integers such as 1,4, got {pass_k!r}")
    options = _run(
        EvalOptions,
        eval_seed=eval_seed,
        num_examples=num_examples,
        max_new_tokens=max_new_tokens,
        batch_size=batch_size,
        num_samples=num_samples,
        pass_k=ks,
        temperature=temperature,
        top_p=top_p,
        seed=seed,
        keep_samples=num_examples if keep_samples < 0 else keep_samples,
        device=device,
        autocast=autocast,
    )
    results = _run(
        run_evaluation,
        model,
        task,
        options,
        compare_to=compare_to,
        use_base_model=use_base_model,
        output=output,
        compare_base=compare_base,
    )
    console.print(results_table(results))
    if "paired" in results:
        from smarttuner.evaluate.paired import paired_text

        console.print(paired_text(results["paired"]))
    if output is not None:
        console.print(f"results: {output}")


def _glue_eval(
    model, use_base_model, tasks, glue_dir, max_samples, save_predictions, output, device
):
    from rich.table import Table

    from smarttuner.evaluate.glue import run_glue
    from smarttuner.evaluate.harness import base_model_spec

    spec = _run(base_model_spec, model) if use_base_model else model
    summary = _run(
        run_glue,
        spec,
        tasks,
        data_dir=glue_dir,
        max_samples=max_samples,
        save_predictions=save_predictions,
        device=device,
        output=output,
    )
    table = Table(title=f"GLUE · {spec}")
    for column in ("task", "n", "metrics"):
        table.add_column(column)
    for name, block in summary["tasks"].items():
        metrics = "  ".join(
            f"{k} {'—' if v is None else f'{v:.3f}'}" for k, v in block["metrics"].items()
        )
        table.add_row(name, str(block["n"]), metrics)
    console.print(table)


@app.command()
def pool(
    paths: Annotated[
        list[Path],
        typer.Argument(help="Run folders or results JSONs holding a paired result, one per seed."),
    ],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write the pooled result as JSON.")
    ] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of the prompts.")] = 10_000,
) -> None:
    """Pool paired before/after results of several runs (seeds) on the same eval prompts."""
    from rich.table import Table

    from smarttuner.evaluate.pooled import check_same_prompts, load_paired, pool_paired, pooled_text
    from smarttuner.outputs import write_json

    if output is not None and output.exists():
        _fail(f"{output} already exists: choose another --output")
    loaded = [_run(load_paired, p) for p in paths]
    _run(check_same_prompts, [results for results, _ in loaded], [str(p) for p in paths])
    pooled = _run(pool_paired, [verdicts for _, verdicts in loaded], resamples=resamples)
    table = Table(title="paired greedy, each run against its own start")
    for column in ("run", "before", "after", "change", "gained", "lost", "sign test p"):
        table.add_column(column, justify="left" if column == "run" else "right")
    for path, run in zip(paths, pooled["runs"], strict=True):
        table.add_row(
            str(path),
            f"{run['before']:.3f}",
            f"{run['after']:.3f}",
            f"{run['change']:+.3f}",
            str(run["gained"]),
            str(run["lost"]),
            f"{run['sign_test_p']:.3g}",
        )
    console.print(table)
    console.print(pooled_text(pooled), highlight=False, soft_wrap=True)
    if output is not None:
        pooled["sources"] = [str(p) for p in paths]
        typer.echo(str(_run(write_json, output, pooled)))


@app.command()
def plot(
    paths: Annotated[
        list[Path] | None,
        typer.Argument(help="Run folders (or, with --compare, results JSONs or run folders)."),
    ] = None,
    all_runs: Annotated[
        bool, typer.Option("--all", help="Plot every run found under the given folders.")
    ] = False,
    compare: Annotated[
        bool, typer.Option(help="One chart across PATHS: results JSONs or run folders.")
    ] = False,
    metric: Annotated[str, typer.Option(help="Metric of the --compare bars.")] = "accuracy",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Figure folder (or --compare file).")
    ] = None,
) -> None:
    """Draw every figure of a run into RUN/plots; with no argument, pick one from runs/."""
    from smarttuner.plots import plot_comparison, plot_run, plot_runs_overlay
    from smarttuner.report import find_runs

    paths = list(paths or [])
    if compare:
        if not paths:
            _fail("--compare needs results JSON files or run folders")
        if all(p.is_file() for p in paths):
            out = output or paths[0].parent / "plots" / f"compare_{metric}.png"
            typer.echo(str(_run(plot_comparison, paths, out, metric=metric)))
        else:
            out = output or paths[0].parent / "plots" / "compare_runs.png"
            typer.echo(str(_run(plot_runs_overlay, paths, out)))
        return
    if all_runs:
        paths = [run for root in (paths or [Path("runs")]) for run in _run(find_runs, root)]
    elif not paths:
        paths = [_pick_run()]
    for run_dir in paths:
        out_dir = output / run_dir.name if output is not None and len(paths) > 1 else output
        for p in _run(plot_run, run_dir, out_dir):
            typer.echo(str(p))


def _pick_run() -> Path:
    """The interactive mode: list the runs under runs/ (else here) and ask for one."""
    from smarttuner.report import find_runs

    root = Path("runs") if Path("runs").is_dir() else Path(".")
    runs = _run(find_runs, root)
    if not runs:
        _fail(f"no runs (folders with metrics.jsonl) under {root.resolve()}; pass a run folder")
    for number, run in enumerate(runs, start=1):
        console.print(f"{number:3d}  {run}", highlight=False)
    choice = typer.prompt("Plot which run", type=int, default=len(runs))
    if not 1 <= choice <= len(runs):
        _fail(f"pick a number from 1 to {len(runs)}, got {choice}")
    return runs[choice - 1]


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run (or pipeline) output folder.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="HTML file (default RUN/report.html).")
    ] = None,
    max_completions: Annotated[
        int, typer.Option(help="Sample completions shown at most (whole steps, spread out).")
    ] = 2000,
) -> None:
    """One self-contained HTML page: plots, config, before/after table, completions browser."""
    from smarttuner.report import write_report

    typer.echo(str(_run(write_report, run_dir, output, max_completions)))


@app.command()
def tasks() -> None:
    """List the registered tasks (any reasoning-gym dataset name also works)."""
    from smarttuner.tasks import list_tasks

    typer.echo("\n".join(list_tasks()))
