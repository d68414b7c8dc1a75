"""The results as text tables (stdout), a Markdown table (for the README) and JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.machine import summary
from benchmarks.results import Comparison, Measured, Target

HEADERS = ["command", "runs", "min ms", "median ms", "max ms", "peak MiB", "subject vs this"]
NUMERIC = frozenset({1, 2, 3, 4, 5})


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _value(target: Target, value: float | None) -> str:
    if value is None:
        return "-"
    if target.kind == "ratio":
        return f"{value:.2f}x"
    if target.kind == "diff":
        return f"{value * 1000:+.1f} ms"
    return f"{value:.1f} MiB"


def _verdict(met: bool | None) -> str:
    return "not measured (baseline skipped)" if met is None else "met" if met else "MISSED"


def _peak(value: float, floor_mib: float) -> str:
    """A peak RSS; at or under the spawner's floor it is only an upper bound."""
    return f"<={floor_mib:.1f}" if value <= floor_mib + 0.05 else f"{value:.1f}"


def _row(
    comparison: Comparison, measured: Measured, is_subject: bool, floor_mib: float
) -> list[str]:
    stats = measured.seconds
    rss = measured.peak_rss_mib
    versus = ""
    if not is_subject:
        ratio = comparison.ratio(measured)
        versus = f"{ratio:.2f}x, {comparison.difference(measured) * 1000:+.1f} ms"
    return [
        measured.command,
        str(len(measured.samples)),
        _ms(stats.min),
        _ms(stats.median),
        _ms(stats.max),
        _peak(rss.max, floor_mib) if rss else "-",
        versus,
    ]


def _measured_rows(comparison: Comparison, floor_mib: float) -> list[list[str]]:
    table = [_row(comparison, comparison.subject, True, floor_mib)]
    table += [_row(comparison, baseline, False, floor_mib) for baseline in comparison.baselines]
    for skip in comparison.skipped:
        label, _, why = skip.partition(": ")
        table.append([label, "", "", "", "", "", why])
    return table


def text_table(
    headers: Sequence[str],
    body: Sequence[Sequence[str]],
    indent: str = "",
    numeric: frozenset[int] = NUMERIC,
) -> str:
    """Aligned columns; the ``numeric`` ones right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(headers, *body, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            cell.rjust(width) if index in numeric else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return (indent + "  ".join(padded)).rstrip()

    return "\n".join([line(headers), *(line(row) for row in body)])


def markdown_table(
    headers: Sequence[str], body: Sequence[Sequence[str]], numeric: frozenset[int] = NUMERIC
) -> str:
    """A GitHub-flavoured Markdown table; the ``numeric`` columns right-aligned."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") or " " for cell in cells) + " |"

    rule = "|" + "|".join("---:" if i in numeric else "---" for i in range(len(headers))) + "|"
    return "\n".join([line(headers), rule, *(line(row) for row in body)])


def target_rows(comparisons: Sequence[Comparison]) -> list[list[str]]:
    """One row per target: what, where, measured value, limit, met or MISSED."""
    body = []
    for comparison in comparisons:
        for target in comparison.targets:
            value, met = comparison.evaluate(target)
            body.append(
                [
                    comparison.title,
                    comparison.condition,
                    target.describe(),
                    _value(target, value),
                    _verdict(met),
                ]
            )
    return body


TARGET_HEADERS = ["comparison", "condition", "target", "measured", "result"]


def floor_mib(document: dict[str, Any]) -> float:
    """The spawner's RSS floor in MiB (peaks at or below it are upper bounds)."""
    return float(document["machine"].get("rss_floor_kib") or 0) / 1024


def render_comparison(comparison: Comparison, floor: float) -> str:
    """One comparison as a block of text."""
    lines = [f"[{comparison.name}] {comparison.title}", f"  {comparison.condition}"]
    lines.append(text_table(HEADERS, _measured_rows(comparison, floor), indent="  "))
    for target in comparison.targets:
        value, met = comparison.evaluate(target)
        lines.append(f"  target {target.describe()}: {_value(target, value)} -> {_verdict(met)}")
    lines += [f"  note: {note}" for note in comparison.notes]
    return "\n".join(lines)


def render_text(document: dict[str, Any], comparisons: Sequence[Comparison]) -> str:
    """The whole run: machine line, every comparison, the targets, any errors."""
    parts = [_header(document)]
    parts += [render_comparison(comparison, floor_mib(document)) for comparison in comparisons]
    if any(c.targets for c in comparisons):
        targets = text_table(TARGET_HEADERS, target_rows(comparisons), "  ", frozenset({3}))
        parts.append("Targets\n" + targets)
    parts += [f"error in {e['scenario']}: {e['error']}" for e in document.get("errors", [])]
    return "\n\n".join(parts)


def _header(document: dict[str, Any]) -> str:
    args = document["arguments"]
    load = ", ".join(f"{value:.2f}" for value in document["machine"]["load_average"] or [])
    return (
        f"Machine: {summary(document['machine'])}\n"
        f"Run: {document['started_at']} .. {document.get('finished_at') or '(unfinished)'}, "
        f"{args['runs']} alternating runs per command after {args['warmup']} warm-up; "
        f"load average at start {load}\n"
        f"Times are whole processes (start to exit); peak MiB is the largest ru_maxrss "
        f"(os.wait4) over the runs, where '<={floor_mib(document):.1f}' is the spawner's floor"
    )


def render_markdown(document: dict[str, Any], comparisons: Sequence[Comparison]) -> str:
    """The README's table: every measurement, then the targets, then the machine."""
    headers = ["comparison", "condition", *HEADERS]
    body = []
    for comparison in comparisons:
        for index, row in enumerate(_measured_rows(comparison, floor_mib(document))):
            first = index == 0
            body.append(
                [comparison.title if first else "", comparison.condition if first else "", *row]
            )
    measurements = markdown_table(headers, body, frozenset(index + 2 for index in NUMERIC))
    targets = markdown_table(TARGET_HEADERS, target_rows(comparisons), frozenset({3}))
    return "\n\n".join([measurements, targets, _header(document).replace("\n", "  \n")]) + "\n"


def write(document: dict[str, Any], comparisons: Sequence[Comparison], output: Path) -> Path:
    """Write the JSON document and, next to it, the Markdown table; returns the .md path."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    markdown = output.with_suffix(".md")
    markdown.write_text(render_markdown(document, comparisons), encoding="utf-8")
    return markdown
