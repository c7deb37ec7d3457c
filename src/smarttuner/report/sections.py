"""The HTML of each report section, as pure functions of the run's data.

Every piece of text that comes from a run (model output, prompts, config values, file names)
goes through `esc` (html.escape with quotes), so a completion holding `<script>` is shown,
never run. The page has no external assets: CSS and the small completions-browser script are
inline, figures are base64 PNGs.
"""

from __future__ import annotations

import base64
import html
import math
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

STAGES = (("baseline", "baseline"), ("after_sft", "after SFT"), ("final", "final"))
RESULT_METRICS = ("accuracy", "format_rate", "mean_length", "mean_score")
_SPECIAL_TOKEN = re.compile(r"<\|[^|<>]*\|>")


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def fmt(value: Any, signed: bool = False) -> str:
    """A number for a table cell: 3 significant decimals; None/NaN (does not apply) is a dash."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else esc(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "—"
    if isinstance(value, int):
        return f"{value:+d}" if signed else str(value)
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def page(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{body}\n"
        f"<script>{SCRIPT}</script>\n</body>\n</html>\n"
    )


def header(title: str, facts: dict[str, Any]) -> str:
    items = "".join(f"<div><dt>{esc(k)}</dt><dd>{esc(v)}</dd></div>" for k, v in facts.items())
    nav = "".join(
        f'<a href="#{anchor}">{label}</a>'
        for anchor, label in (
            ("results", "before/after"),
            ("health", "health"),
            ("plots", "plots"),
            ("completions", "completions"),
            ("config", "config"),
        )
    )
    return f'<header><h1>{esc(title)}</h1><nav>{nav}</nav><dl class="facts">{items}</dl></header>'


def _metrics(blocks: list[dict[str, Any]]) -> list[str]:
    passes = {k for b in blocks for k in b if k.startswith("pass@")}
    extra = sorted(passes, key=lambda k: int(k[5:]))
    return [m for m in (*RESULT_METRICS, *extra) if any(m in b for b in blocks)]


def results_section(results: dict[str, Any] | None) -> str:
    """The before/after table: baseline, after SFT, final, and the change baseline → final."""
    head = '<section id="results"><h2>Before / after</h2>'
    if not results:
        return head + '<p class="muted">No results.json in this run.</p></section>'
    labels = results.get("labels") or {}
    stages = [(k, labels.get(k, label)) for k, label in STAGES if isinstance(results.get(k), dict)]
    if not stages:
        return head + '<p class="muted">results.json holds no evaluation stages.</p></section>'
    blocks = [results[k] for k, _ in stages]
    both = {"baseline", "final"} <= {k for k, _ in stages}
    cols = "".join(f"<th>{esc(label)}</th>" for _, label in stages)
    rows = []
    for metric in _metrics(blocks):
        cells = "".join(f"<td>{fmt(b.get(metric))}</td>" for b in blocks)
        if both:
            before, after = results["baseline"].get(metric), results["final"].get(metric)
            change = None if before is None or after is None else after - before
            cls = ""
            if change is not None and abs(change) > 1e-12:
                cls = ' class="up"' if change > 0 else ' class="down"'
            cells += f"<td{cls}>{fmt(change, signed=True)}</td>"
        rows.append(f"<tr><th>{esc(metric)}</th>{cells}</tr>")
    change_col = "<th>change</th>" if both else ""
    table = (
        f'<table class="results"><thead><tr><th>metric</th>{cols}{change_col}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    return head + table + "</section>"


def health_section(notes: list[tuple[int, list[str]]], n_steps: int) -> str:
    head = '<section id="health"><h2>Health</h2>'
    if not n_steps:
        return head + '<p class="muted">No GRPO steps in this run.</p></section>'
    if not notes:
        return head + f'<p class="ok">No warnings in {n_steps} GRPO steps.</p></section>'
    items = "".join(
        f"<li><b>step {step}</b>: {esc(' · '.join(lines))}</li>" for step, lines in notes
    )
    return head + f'<ul class="health">{items}</ul></section>'


def plots_section(stages: list[tuple[str, list[Path]]]) -> str:
    """Figures per run stage, embedded as base64 PNGs."""
    parts = ['<section id="plots"><h2>Plots</h2>']
    for stage, paths in stages:
        if stage:
            parts.append(f"<h3>{esc(stage)}</h3>")
        if not paths:
            parts.append('<p class="muted">No figures.</p>')
            continue
        figures = []
        for path in paths:
            data = base64.b64encode(path.read_bytes()).decode("ascii")
            figures.append(
                f'<figure><img alt="{esc(path.stem)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{esc(path.name)}</figcaption></figure>"
            )
        parts.append(f'<div class="grid">{"".join(figures)}</div>')
    return "".join(parts) + "</section>"


def config_section(configs: list[tuple[str, str]]) -> str:
    parts = ['<section id="config"><h2>Config</h2>']
    if not configs:
        parts.append('<p class="muted">No config.yaml in this run.</p>')
    for name, text in configs:
        parts.append(
            f"<details open><summary>{esc(name)}</summary><pre>{esc(text)}</pre></details>"
        )
    return "".join(parts) + "</section>"


def prompt_preview(prompt: str, width: int = 160) -> str:
    """The question part of a rendered chat prompt: special tokens and role lines dropped."""
    text = _SPECIAL_TOKEN.sub("\n", prompt)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    while lines and lines[-1] in ("assistant", "Response:"):
        lines.pop()
    tail = lines[-1] if lines else ""
    return tail if len(tail) <= width else tail[: width - 1] + "…"


def _groups(rows: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    """Consecutive rows of one step and one prompt (a GRPO group)."""
    group: list[dict[str, Any]] = []
    for row in rows:
        if group and (row.get("step"), row.get("prompt")) != (
            group[0].get("step"),
            group[0].get("prompt"),
        ):
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def completions_section(
    rows: list[dict[str, Any]], total_steps: int, total_rows: int, default_step: str
) -> str:
    """Sample completions by step: one tbody per prompt group (prompt row + one row per
    completion with reward, advantage and each reward component); a step selector, a text filter
    and a "hide zero advantage" switch in the inline script."""
    head = '<section id="completions"><h2>Sample completions</h2>'
    if not rows:
        return head + '<p class="muted">No completions.jsonl in this run.</p></section>'
    components = sorted({k for r in rows for k in (r.get("components") or {})})
    steps = sorted({r.get("step") for r in rows if isinstance(r.get("step"), int)})
    options = "".join(
        f'<option value="{s}"{" selected" if str(s) == default_step else ""}>step {s}</option>'
        for s in steps
    )
    shown_steps = (
        f"{len(steps)} of {total_steps} logged steps"
        if total_steps > len(steps)
        else (f"{len(steps)} logged steps")
    )
    controls = (
        '<div class="controls"><label>step <select id="step-select">'
        f'<option value="all"{" selected" if default_step == "all" else ""}>all steps</option>'
        f"{options}</select></label>"
        '<label>filter <input id="text-filter" type="search" placeholder="text in prompt, '
        'completion or answer"></label>'
        '<label><input id="hide-flat" type="checkbox"> hide zero advantage</label>'
        f'<span class="muted"><span id="shown-count">{len(rows)}</span> of {len(rows)} rows · '
        f"{shown_steps} · {total_rows} completions logged</span></div>"
    )
    comp_heads = "".join(f"<th>{esc(c)}</th>" for c in components)
    thead = (
        f"<thead><tr><th>step</th><th>completion</th><th>reward</th><th>advantage</th>"
        f"{comp_heads}</tr></thead>"
    )
    ncols = 4 + len(components)
    bodies = [_group_html(group, components, ncols) for group in _groups(rows)]
    table = f'<table id="completions-table">{thead}{"".join(bodies)}</table>'
    return head + controls + table + "</section>"


def _group_html(group: list[dict[str, Any]], components: list[str], ncols: int) -> str:
    first = group[0]
    step = esc(first.get("step", ""))
    prompt = str(first.get("prompt", ""))
    gold = first.get("gold")
    gold_html = f' <span class="gold">gold: {esc(gold)}</span>' if gold is not None else ""
    head = (
        f'<tr class="prompt"><td colspan="{ncols}"><details><summary>'
        f"<b>prompt</b> {esc(prompt_preview(prompt))}{gold_html}</summary>"
        f"<pre>{esc(prompt)}</pre></details></td></tr>"
    )
    rows = []
    for row in group:
        advantage = row.get("advantage")
        flat = isinstance(advantage, int | float) and abs(advantage) < 1e-9
        sign = (
            ""
            if not isinstance(advantage, int | float) or flat
            else ("pos" if advantage > 0 else "neg")
        )
        comps = row.get("components") or {}
        cells = "".join(f"<td>{fmt(comps.get(c))}</td>" for c in components)
        rows.append(
            f'<tr class="sample" data-flat="{int(flat)}"><td>{step}</td>'
            f'<td><pre class="completion">{esc(row.get("completion", ""))}</pre></td>'
            f"<td>{fmt(row.get('reward'))}</td>"
            f'<td class="{sign}">{fmt(advantage, signed=True)}</td>'
            f"{cells}</tr>"
        )
    return f'<tbody class="group" data-step="{step}">{head}{"".join(rows)}</tbody>'


CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;
max-width:1400px;padding:0 24px 48px;color:#1d2330;background:#fafbfc}
header{border-bottom:1px solid #dde1e7;margin-bottom:8px}
h1{font-size:24px;margin:20px 0 6px}h2{font-size:19px;margin:28px 0 10px}
h3{font-size:16px;margin:18px 0 8px}nav a{margin-right:14px;color:#2457c5}
dl.facts{display:flex;flex-wrap:wrap;gap:6px 22px;margin:10px 0 14px}
dl.facts div{display:flex;gap:6px}dt{color:#667085}dd{margin:0;font-weight:600}
table{border-collapse:collapse;background:#fff}
th,td{border:1px solid #dde1e7;padding:4px 8px;text-align:right;vertical-align:top}
table.results th:first-child{text-align:left}
td.up{color:#137a3a}td.down{color:#b42318}td.pos{color:#137a3a}td.neg{color:#b42318}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #dde1e7;padding:6px}
figure img{width:100%;height:auto}figcaption{color:#667085;font-size:12px}
pre{white-space:pre-wrap;word-break:break-word;margin:0;font:12px/1.4 ui-monospace,Menlo,
Consolas,monospace}
#completions-table{width:100%}#completions-table td:nth-child(2),
#completions-table th:nth-child(2){text-align:left;width:60%}
tr.prompt td{text-align:left;background:#f0f3f8}summary{cursor:pointer}
.gold{color:#137a3a;margin-left:10px}.muted{color:#667085}.ok{color:#137a3a}
ul.health li{margin:3px 0;color:#8a5a00}
.controls{display:flex;gap:18px;align-items:center;margin:8px 0 10px;flex-wrap:wrap}
.controls input[type=search]{width:280px}
"""

SCRIPT = """
(function () {
  var select = document.getElementById('step-select');
  if (!select) { return; }
  var filter = document.getElementById('text-filter');
  var hideFlat = document.getElementById('hide-flat');
  var count = document.getElementById('shown-count');
  var groups = Array.prototype.slice.call(document.querySelectorAll('tbody.group'));
  function apply() {
    var step = select.value, query = filter.value.toLowerCase(), shown = 0;
    groups.forEach(function (group) {
      var stepOk = step === 'all' || group.getAttribute('data-step') === step;
      var promptText = group.rows[0].textContent.toLowerCase();
      var visible = 0;
      Array.prototype.slice.call(group.querySelectorAll('tr.sample')).forEach(function (row) {
        var ok = stepOk && (!hideFlat.checked || row.getAttribute('data-flat') !== '1') &&
          (!query || promptText.indexOf(query) >= 0 ||
           row.textContent.toLowerCase().indexOf(query) >= 0);
        row.hidden = !ok;
        if (ok) { visible += 1; }
      });
      group.hidden = visible === 0;
      shown += visible;
    });
    count.textContent = String(shown);
  }
  select.addEventListener('change', apply);
  filter.addEventListener('input', apply);
  hideFlat.addEventListener('change', apply);
  apply();
})();
"""
