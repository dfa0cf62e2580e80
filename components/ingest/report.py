"""The ingest reports: pure rendering functions of statistics.json, a Markdown view (tables and
text histograms) and an HTML page (the same tables, a histogram plot per numeric column, bar
charts of top values and of a class label's classes).

``executor.run`` writes them next to the other outputs; the KFP component maps the files to its
Markdown and HTML artifacts.
"""

from __future__ import annotations

import html
import itertools
import math
from typing import Any

from mlengine.components.shared import reports


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


def class_rows(stats: dict[str, Any]) -> list[tuple[Any, int, int | None]] | None:
    """A class label's (class, rows over all ok rows, training rows) in vocabulary order; None for
    statistics without class counts (a regression label)."""
    label = stats.get("label")
    every = ((stats.get("all") or {}).get("columns") or {}).get(label) or {}
    if "class_counts" not in every:
        return None
    train = {item["value"]: item["count"] for item in
             (((stats.get("train") or {}).get("columns") or {}).get(label) or {}).get("class_counts", [])}
    return [(item["value"], item["count"], train.get(item["value"])) for item in every["class_counts"]]


def _class_lines(stats: dict[str, Any]) -> list[str]:
    """A class label's rows per class, over all ok rows and in the training split (vocabulary order)."""
    rows = class_rows(stats)
    if rows is None:
        return []
    total = sum(count for _, count, _ in rows) or 1
    lines = [f"## Classes of the label `{_escape(stats.get('label'))}`", "", "| class | rows | share | training rows |",
             "|---|---:|---:|---:|"]
    for value, count, train in rows:
        lines.append(f"| {_escape(_fmt(value))} | {count:,} | {100.0 * count / total:.1f}% | {_fmt(train)} |")
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


NO_VALUES = "No value in this column (every cell missing or no ok row), so there is nothing to plot."


def render_statistics_html(stats: dict[str, Any], result: Any) -> str:
    """HTML: the Markdown view's tables, a histogram per numeric column and bar charts of the top
    values of string columns and of a class label's classes (embedded PNG, one self-contained page).

    A column without values gets a sentence instead of empty axes. ``result`` is an IngestResult
    (or its ``to_dict()``).
    """
    summary = result.to_dict() if hasattr(result, "to_dict") else dict(result)
    read, rejected = summary["rows_read"], summary["rows_rejected"]
    share = f" ({100.0 * rejected / read:.2f}%)" if read else ""
    distinct = summary.get("distinct_per_split") or {}
    rows = [("rows read", f"{read:,}"), ("rows ok", f"{summary['rows_ok']:,}"),
            ("rows rejected", f"{rejected:,}{share}")]
    rows += [(f"{name} split", f"{count:,}" + (f" ({distinct[name]:,} distinct)" if name in distinct else ""))
             for name, count in summary.get("rows_per_split", {}).items()]
    rows.append(("files", f"{len(summary.get('files', [])):,}"))
    parts = [reports.html_table(["", ""], rows)]
    reasons = summary.get("reject_reasons", {})
    if reasons:
        parts.append("<h3>Reject reasons</h3>" + reports.html_table(
            ["reason", "rows"], [(reason, f"{count:,}") for reason, count in sorted(reasons.items(),
                                                                                   key=lambda item: -item[1])]))
    parts += _class_html(stats)
    scope = stats.get("all", {})
    columns = scope.get("columns", {})
    parts.append(f"<h3>Columns (all {scope.get('rows', 0):,} ok rows)</h3>" + reports.html_table(
        ["column", "type", "count", "missing", "mean", "std", "min", "p50", "max"],
        [(name, entry["type"], _fmt(entry["count"]), _fmt(entry["missing"]), _fmt(entry.get("mean")),
          _fmt(entry.get("std")), _fmt(entry.get("min")), _fmt((entry.get("quantiles") or {}).get("p50")),
          _fmt(entry.get("max"))) for name, entry in columns.items()]))
    label = stats.get("label")
    for name, entry in columns.items():
        parts.append(f"<h3>{html.escape(str(name))} ({html.escape(entry['type'])})</h3>")
        if "histogram" in entry:
            parts.append(_histogram_html(name, entry["histogram"]))
        if entry.get("top_values") is not None and "histogram" not in entry:
            if name == label and "class_counts" in entry:
                parts.append("<p>Its rows per class are in the classes section above.</p>")
            else:
                parts.append(_top_values_html(name, entry))
    return reports.html_page(f"Ingest statistics: {stats.get('spec_name', '')}", "".join(parts))


def _plot_bars(title: str, labels: list[str], counts: list[int]) -> str:
    """A horizontal bar chart (one bar per label, top to bottom) as base64 PNG."""
    figure, axis = reports.new_figure(6.0, max(1.5, 0.3 * len(labels) + 0.8))
    positions = list(range(len(labels)))
    axis.barh(positions, counts, color="#4c72b0")
    axis.set_yticks(positions, [_plain(label if len(label) <= 30 else label[:29] + "…") for label in labels])
    axis.invert_yaxis()
    axis.set_xlabel("rows")
    axis.set_title(_plain(title), fontsize=10)
    return reports.figure_png_base64(figure)


def _class_html(stats: dict[str, Any]) -> list[str]:
    """A class label's rows per class (all ok rows and the training split) as a table and a bar chart."""
    rows = class_rows(stats)
    if rows is None:
        return []
    label = stats.get("label")
    total = sum(count for _, count, _ in rows)
    parts = [f"<h3>Classes of the label {_html_text(label)}</h3>", reports.html_table(
        ["class", "rows", "share", "training rows"],
        [(_fmt(value), f"{count:,}", f"{100.0 * count / (total or 1):.1f}%", _fmt(train))
         for value, count, train in rows])]
    if not total:
        return [*parts, f"<p>{NO_VALUES}</p>"]
    png = _plot_bars(f"rows per class of {label} (all ok rows)", [_fmt(value) for value, _, _ in rows],
                     [count for _, count, _ in rows])
    return [*parts, reports.html_image(png, f"classes of {label}")]


def _histogram_html(name: str, histogram: dict[str, Any]) -> str:
    """The column's histogram (data range) as a PNG, the rows beyond it named in its caption."""
    counts = histogram.get("counts") or []
    below, above = histogram.get("underflow", 0), histogram.get("overflow", 0)
    if not sum(counts) + below + above:
        return f"<p>{NO_VALUES}</p>"
    edges = histogram["edges"]
    figure, axis = reports.new_figure(6.0, 2.6)
    widths = [high - low for low, high in itertools.pairwise(edges)]
    axis.bar(edges[:-1], counts, width=widths, align="edge", color="#4c72b0", edgecolor="white", linewidth=0.5)
    axis.set_xlabel(_plain(str(name)))
    axis.set_ylabel("rows")
    beyond = [f"{count:,} {side}" for count, side in ((below, "below"), (above, "above")) if count]
    caption = f"{sum(counts) + below + above:,} rows of the {histogram.get('source', 'sample')}"
    axis.set_title(caption + (f" ({', '.join(beyond)} the range drawn)" if beyond else ""), fontsize=10)
    return reports.html_image(reports.figure_png_base64(figure), f"histogram of {name}")


def _top_values_html(name: str, entry: dict[str, Any]) -> str:
    """The most frequent values of a categorical column as a bar chart."""
    top = entry.get("top_values") or []
    if not top:
        return f"<p>{NO_VALUES}</p>"
    distinct = entry.get("distinct")
    title = f"top {len(top)} values" + (f" of {distinct:,} distinct" if distinct is not None else "")
    if entry.get("counts_approximate"):
        title += " (approximate counts)"
    png = _plot_bars(title, [_fmt(item["value"]) for item in top], [item["count"] for item in top])
    return reports.html_image(png, f"top values of {name}")


def _plain(text: str) -> str:
    """Text matplotlib draws as written: a ``$`` in the data would start its math mode."""
    return text.replace("$", r"\$")


def _html_text(value: Any) -> str:
    return f"<code>{html.escape(str(value))}</code>"
