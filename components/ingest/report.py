"""The ingest reports: the statistics view (Markdown) of statistics.json, a pure rendering function.

``executor.run`` writes it next to the other outputs; the KFP component maps the file to its
Markdown artifact.
"""

from __future__ import annotations

import math
from typing import Any


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1e6 else f"{value:.4e}"
    return str(value)


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_statistics_markdown(stats: dict[str, Any], result: Any) -> str:
    """Markdown: row counts, reject reasons, a summary table and one table per column.

    ``result`` is an IngestResult (or its ``to_dict()``).
    """
    summary = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    read, rejected = summary["rows_read"], summary["rows_rejected"]
    share = f" ({100.0 * rejected / read:.2f}%)" if read else ""
    lines = [f"# Ingest statistics: {_escape(stats.get('spec_name', ''))}", ""]
    lines.append(f"- rows read: **{read:,}**, ok: **{summary['rows_ok']:,}**, rejected: **{rejected:,}**{share}")
    distinct = summary.get("distinct_per_split") or {}
    splits = ", ".join(f"{name}: {count:,}" + (f" ({distinct[name]:,} distinct)" if name in distinct else "")
                       for name, count in summary.get("rows_per_split", {}).items())
    lines.append(f"- rows per split: {splits}")
    files = summary.get("files", [])
    shown = ", ".join(f"`{_escape(f)}`" for f in files[:10]) + (f" … (+{len(files) - 10})" if len(files) > 10 else "")
    lines.append(f"- files ({len(files)}): {shown}")
    lines.append("")
    reasons = summary.get("reject_reasons", {})
    if reasons:
        lines += ["## Reject reasons", "", "| reason | rows |", "|---|---:|"]
        for reason, count in sorted(reasons.items(), key=lambda item: -item[1]):
            lines.append(f"| {_escape(reason)} | {count:,} |")
        lines.append("")
    lines += _class_lines(stats)
    scope = stats.get("all", {})
    columns = scope.get("columns", {})
    lines += [f"## Columns (all {scope.get('rows', 0):,} ok rows)", "",
              "| column | type | count | missing | mean | std | min | p50 | max |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, entry in columns.items():
        quantiles = entry.get("quantiles") or {}
        lines.append(f"| {_escape(name)} | {entry['type']} | {_fmt(entry['count'])} | {_fmt(entry['missing'])} | "
                     f"{_fmt(entry.get('mean'))} | {_fmt(entry.get('std'))} | {_fmt(entry.get('min'))} | "
                     f"{_fmt(quantiles.get('p50'))} | {_fmt(entry.get('max'))} |")
    lines.append("")
    for name, entry in columns.items():
        lines += [f"### {_escape(name)}", ""]
        if entry.get("quantiles"):
            levels = list(entry["quantiles"])
            lines += ["| " + " | ".join(levels) + " |", "|" + "---:|" * len(levels),
                      "| " + " | ".join(_fmt(entry["quantiles"][level]) for level in levels) + " |", ""]
        if entry.get("top_values"):
            lines += ["| value | count |", "|---|---:|"]
            lines += [f"| {_escape(_fmt(item['value']))} | {item['count']:,} |" for item in entry["top_values"]]
            lines.append("")
        histogram = entry.get("histogram")
        if histogram and histogram.get("counts"):
            rows = histogram_rows(histogram)
            peak = max(count for _, count in rows) or 1
            total = sum(count for _, count in rows)
            lines += [f"histogram ({total:,} rows of the {histogram['source']}, data range):", "", "```"]
            width = max(len(label) for label, _ in rows)
            for label, count in rows:
                bar = "#" * round(30 * count / peak)
                lines.append(f"{label:>{width}} | {bar} {count:,}")
            lines += ["```", ""]
    return "\n".join(lines)


def _class_lines(stats: dict[str, Any]) -> list[str]:
    """A class label's rows per class, over all ok rows and in the training split (vocabulary order)."""
    label = stats.get("label")
    every = ((stats.get("all") or {}).get("columns") or {}).get(label) or {}
    if "class_counts" not in every:
        return []
    train = {item["value"]: item["count"] for item in
             (((stats.get("train") or {}).get("columns") or {}).get(label) or {}).get("class_counts", [])}
    total = sum(item["count"] for item in every["class_counts"]) or 1
    lines = [f"## Classes of the label `{_escape(label)}`", "", "| class | rows | share | training rows |",
             "|---|---:|---:|---:|"]
    for item in every["class_counts"]:
        lines.append(f"| {_escape(_fmt(item['value']))} | {item['count']:,} | {100.0 * item['count'] / total:.1f}% | "
                     f"{_fmt(train.get(item['value']))} |")
    return [*lines, ""]


def histogram_rows(histogram: dict[str, Any]) -> list[tuple[str, int]]:
    """(bin label, count) per bin, the under/overflow bins included when they hold rows.

    Integer bins are labelled with the whole numbers they hold (``7`` or ``7-9``), others with
    their interval.
    """
    edges, counts = histogram["edges"], histogram["counts"]
    integer = histogram.get("integer", False)

    def number(value: float) -> str:
        return f"{value:.5g}"

    rows: list[tuple[str, int]] = []
    if histogram.get("underflow"):
        rows.append((f"< {math.ceil(edges[0]) if integer else number(edges[0])}", histogram["underflow"]))
    for index, count in enumerate(counts):
        low, high = edges[index], edges[index + 1]
        if integer:
            first, last = math.ceil(low), math.floor(high)
            label = str(first) if first == last else f"{first}-{last}"
        else:
            label = f"[{number(low)}, {number(high)}" + ("]" if index == len(counts) - 1 else ")")
        rows.append((label, int(count)))
    if histogram.get("overflow"):
        rows.append((f"> {math.floor(edges[-1]) if integer else number(edges[-1])}", histogram["overflow"]))
    return rows
