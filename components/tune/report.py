"""The tuning report: a results table (Markdown) and an HTML page with the study's plots.

Plots (embedded PNG): the objective of each trial (eval RMSE for a regressor, eval log loss for a
classifier) against its number with the running best, and against ``nbuckets``, the
preprocessing hyperparameter the study tunes.
"""

from __future__ import annotations

import html
import math
from typing import Any

from mlengine.components.shared import reports
from mlengine.constants import PARAM_NBUCKETS

STATE_MARKERS = {"COMPLETE": "o", "PRUNED": "x"}
NO_PLOTS_FOR = "No trial reported an {}, so there is nothing to plot."
NO_PLOTS = NO_PLOTS_FOR.format("eval RMSE")
LOG_LOSS_NAMES = ("log_loss", "logloss", "eval_log_loss", "binary_crossentropy", "categorical_crossentropy")


def objective(result: dict) -> tuple[str, str, str]:
    """(trial field, axis label, short name) of the study's objective: log loss for a classifier, else RMSE."""
    if result.get("task") in ("binary", "multiclass") or str(result.get("metric", "")).lower() in LOG_LOSS_NAMES:
        return "log_loss", "eval log loss", "log loss"
    return "rmse", "eval RMSE", "RMSE"


def _value(record: dict, key: str, prefix: str = ""):
    """A trial's (or the study's best/default) objective; a study that keeps it in the rmse slot works too."""
    name = f"{prefix}{key}"
    return record[name] if name in record else record.get(f"{prefix}rmse")


def _rows(result: dict) -> list[list[Any]]:
    names = _param_names(result)
    key = objective(result)[0]
    rows = []
    for trial in result["trials"]:
        rmse = _value(trial, key)
        number = f"{trial['number']} (default)" if trial.get("default") else trial["number"]
        rows.append([number, *[trial["params"].get(n, "") for n in names],
                     "" if rmse is None else float(rmse), trial["state"], trial.get("error") or ""])
    return rows


def _param_names(result: dict) -> list[str]:
    names: list[str] = []
    for trial in result["trials"]:
        for name in trial["params"]:
            if name not in names:
                names.append(name)
    # a regression study (or one without class weights) has nothing to show in that column
    if all(trial["params"].get("class_weight", "none") == "none" for trial in result["trials"]):
        names = [name for name in names if name != "class_weight"]
    return names


def _headers(result: dict) -> list[str]:
    return ["trial", *_param_names(result), objective(result)[0], "state", "error"]


def _summary(result: dict) -> str:
    if result.get("skipped"):
        given = ", ".join(f"{k}={v}" for k, v in (result.get("best_params") or {}).items())
        reason = result.get("skip_reason") or "0 trials"
        return f"Tuning skipped ({reason}): the given hyperparameters are used: {given}."
    counts: dict[str, int] = {}
    for trial in result["trials"]:
        counts[trial["state"]] = counts.get(trial["state"], 0) + 1
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    key, label, _ = objective(result)
    best_value, default_value = _value(result, key, "best_"), _value(result, key, "default_")
    if result.get("best_params") and best_value is not None:
        best = ", ".join(f"{k}={v}" for k, v in result["best_params"].items())
        text = (f"Algorithm `{result['algorithm']}`, {len(result['trials'])} trials ({states}). "
                f"Best {label} **{best_value:.4f}** (trial {result.get('best_trial')}): {best}.")
        if default_value is not None:
            same = result.get("best_trial") == result.get("default_trial")
            text += (f" Trial {result['default_trial']} is the default configuration ({label} "
                     f"{default_value:.4f})" + (": no trial beat it, the defaults are kept." if same else
                                                "; the best trial beat it."))
        return text
    return f"Algorithm `{result['algorithm']}`, {len(result['trials'])} trials ({states}). No trial completed."


def _fixed_and_searched(result: dict) -> str:
    """Which hyperparameters the user fixed (every trial used them) and which the study searched,
    the built-in ones apart from a model module's own."""
    fixed = result.get("fixed") or {}
    searched = result.get("searched") or []
    module = result.get("module") or {}
    own = set(module.get("parameters") or [])

    def grouped(names: list[str], show) -> str:
        if not module:
            return ", ".join(show(n) for n in names)
        groups = [(label, [n for n in names if (n in own) == is_module]) for label, is_module in
                  (("built-in", False), (f"model module {module.get('file')}", True))]
        return "; ".join(f"{label}: " + ", ".join(show(n) for n in members) for label, members in groups if members)

    parts = []
    if fixed:
        parts.append("Fixed by you (not searched): " + grouped(sorted(fixed), lambda k: f"`{k}`={fixed[k]}") + ".")
    if searched:
        parts.append("Searched: " + grouped(list(searched), lambda name: f"`{name}`") + ".")
    if own and not (set(fixed) | set(searched)) & own:
        parts.append(f"Model module {module.get('file')}: no hyperparameters of its own to search.")
    return " ".join(parts)


def render_tuning_markdown(result: dict) -> str:
    """The study as Markdown: a summary line, fixed vs searched parameters, one table row per trial."""
    parts = ["## Hyperparameter tuning", _summary(result), _fixed_and_searched(result),
             reports.markdown_table(_headers(result), _rows(result))]
    return "\n\n".join(part for part in parts if part) + "\n"


def _points(result: dict) -> list[tuple[int, float, dict, str]]:
    key = objective(result)[0]
    return [(t["number"], float(_value(t, key)), t["params"], t["state"]) for t in result["trials"]
            if _value(t, key) is not None and math.isfinite(float(_value(t, key))) and t["state"] in STATE_MARKERS]


def plot_rmse_by_trial(result: dict) -> str:
    """PNG (base64): the objective (RMSE, a classifier's log loss) per trial and the running best."""
    figure, axes = reports.new_figure()
    points = sorted(_points(result))
    for state, marker in STATE_MARKERS.items():
        chosen = [(n, r) for n, r, _, s in points if s == state]
        if chosen:
            axes.scatter([n for n, _ in chosen], [r for _, r in chosen], marker=marker,
                         label="stopped early" if state == "PRUNED" else "trial")
    best_x, best_y, best = [], [], math.inf
    for number, rmse, _, state in points:
        if state == "COMPLETE":
            best = min(best, rmse)
            best_x.append(number)
            best_y.append(best)
    if best_x:
        last = max(number for number, *_ in points)
        if last > best_x[-1]:  # the running best carries on to the last trial
            best_x.append(last)
            best_y.append(best_y[-1])
        axes.step(best_x, best_y, where="post", color="black", label="best so far")
    best_value = _value(result, objective(result)[0], "best_")
    if not points and best_value is not None:  # a best without trial rows (Katib): the line, not empty axes
        axes.axhline(best_value, color="black", label=f"best (trial {result.get('best_trial')})")
    _, label, short = objective(result)
    axes.set_xlabel("trial")
    axes.set_ylabel(label)
    axes.set_title(f"{short} by trial")
    if points or best_value is not None:
        axes.legend()
    return reports.figure_png_base64(figure)


def plot_rmse_by_nbuckets(result: dict) -> str:
    """PNG (base64): the objective against the number of buckets of each trial."""
    figure, axes = reports.new_figure()
    points = [(p.get(PARAM_NBUCKETS), r, s) for _, r, p, s in _points(result) if p.get(PARAM_NBUCKETS) is not None]
    for state, marker in STATE_MARKERS.items():
        chosen = [(x, r) for x, r, s in points if s == state]
        if chosen:
            axes.scatter([x for x, _ in chosen], [r for _, r in chosen], marker=marker,
                         label="stopped early" if state == "PRUNED" else "trial")
    best = result.get("best_params") or {}
    key, label, short = objective(result)
    best_value = _value(result, key, "best_")
    if best.get(PARAM_NBUCKETS) is not None and best_value is not None:
        axes.scatter([best[PARAM_NBUCKETS]], [best_value], marker="*", s=200, color="red", label="best")
    axes.set_xlabel("nbuckets")
    axes.set_ylabel(label)
    axes.set_title(f"{short} by number of buckets")
    if points or (best.get(PARAM_NBUCKETS) is not None and best_value is not None):
        axes.legend()
    return reports.figure_png_base64(figure)


def render_tuning_html(result: dict) -> str:
    """A self-contained HTML page: summary, the two plots, the results table.

    Without any objective value (tuning skipped, or every trial failed) there is nothing to plot:
    the page says so instead of showing two empty axes.
    """
    summary = html.escape(_summary(result).replace("**", "").replace("`", ""))
    fixed = html.escape(_fixed_and_searched(result).replace("`", ""))
    key, label, _ = objective(result)
    if _points(result) or _value(result, key, "best_") is not None:  # Katib may report a best without trials
        plots = [reports.html_image(plot_rmse_by_trial(result), f"{label} by trial with the running best"),
                 reports.html_image(plot_rmse_by_nbuckets(result), f"{label} by nbuckets")]
    else:
        plots = [f"<p>{NO_PLOTS_FOR.format(label)}</p>"]
    body = [f"<p>{summary}</p>", f"<p>{fixed}</p>" if fixed else "", *plots,
            reports.html_table(_headers(result), _rows(result))]
    return reports.html_page("Hyperparameter tuning", "".join(body))
