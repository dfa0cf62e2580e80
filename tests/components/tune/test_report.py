"""The tuning report of a classifier's study: log loss per trial; no empty plots when no tuning ran."""

from __future__ import annotations

import numpy as np
import pytest

from mlengine.components.tune import report
from mlengine.components.tune.report import NO_PLOTS, NO_PLOTS_FOR, render_tuning_html, render_tuning_markdown


def _study(key: str = "log_loss", **extra) -> dict:
    trials = [{"number": n, "params": {"nbuckets": 4 + 2 * n, "learning_rate": 0.01}, key: value, "state": state,
               "default": n == 0}
              for n, (value, state) in enumerate([(0.52, "COMPLETE"), (0.47, "COMPLETE"), (0.61, "PRUNED"),
                                                  (0.45, "COMPLETE")])]
    return {"algorithm": "tpe", "trials": trials, "best_trial": 3, "best_params": trials[3]["params"],
            f"best_{key}": 0.45, "default_trial": 0, f"default_{key}": 0.52, **extra}


@pytest.fixture
def drawn(monkeypatch) -> list[dict]:
    """What each figure of the report shows: title, y label and the plotted points."""
    figures: list[dict] = []

    def capture(figure) -> str:
        axes = figure.axes[0]
        points = [tuple(map(tuple, c.get_offsets())) for c in axes.collections]
        figures.append({"title": axes.get_title(), "ylabel": axes.get_ylabel(), "points": points,
                        "lines": [tuple(line.get_ydata()) for line in axes.lines]})
        import matplotlib.pyplot as plt

        plt.close(figure)
        return "UE5H"  # a stand-in PNG payload

    monkeypatch.setattr(report.reports, "figure_png_base64", capture)
    return figures


@pytest.mark.parametrize("study", [_study(task="binary"), _study(metric="log_loss"),
                                   _study("rmse", metric="log_loss")], ids=["task", "metric", "rmse-slot"])
def test_a_classifiers_study_plots_log_loss_per_trial(drawn, study):
    page = render_tuning_html(study)
    assert page.count("data:image/png;base64,") == 2
    assert 'alt="eval log loss by trial with the running best"' in page and 'alt="eval log loss by nbuckets"' in page
    by_trial, by_buckets = drawn
    assert by_trial["title"] == "log loss by trial" and by_trial["ylabel"] == "eval log loss"
    plotted = sorted(point for collection in by_trial["points"] for point in collection)
    assert plotted == [(0.0, 0.52), (1.0, 0.47), (2.0, 0.61), (3.0, 0.45)]
    assert by_trial["lines"] == [(0.52, 0.47, 0.45)]  # the running best over the complete trials (0, 1, 3)
    assert by_buckets["title"] == "log loss by number of buckets" and by_buckets["ylabel"] == "eval log loss"
    markdown = render_tuning_markdown(study)
    assert "Best eval log loss **0.4500** (trial 3)" in markdown
    assert "Trial 0 is the default configuration (eval log loss 0.5200); the best trial beat it." in markdown
    assert "| log_loss | state | error |" in markdown and "| 3 | 10 | 0.01 | 0.45 | COMPLETE |" in markdown


def test_a_regressors_study_still_plots_rmse(drawn):
    page = render_tuning_html(_study("rmse"))
    assert page.count("data:image/png;base64,") == 2 and 'alt="eval RMSE by trial with the running best"' in page
    assert [f["ylabel"] for f in drawn] == ["eval RMSE", "eval RMSE"] and drawn[0]["title"] == "RMSE by trial"
    assert "Best eval RMSE **0.4500**" in render_tuning_markdown(_study("rmse"))


def test_no_tuning_draws_no_plot(drawn):
    skipped = {"algorithm": "tpe", "trials": [], "best_params": {"nbuckets": 8}, "best_log_loss": None,
               "skipped": True, "skip_reason": "0 trials", "task": "multiclass"}
    page = render_tuning_html(skipped)
    assert drawn == [] and "data:image/png;base64," not in page
    assert NO_PLOTS_FOR.format("eval log loss") in page and "Tuning skipped (0 trials)" in page
    failed = {"algorithm": "tpe", "best_params": {}, "best_rmse": None, "task": "binary",
              "trials": [{"number": 0, "params": {"nbuckets": 8}, "log_loss": None, "state": "FAIL", "error": "boom"}]}
    assert "data:image/png;base64," not in render_tuning_html(failed) and drawn == []
    assert NO_PLOTS == "No trial reported an eval RMSE, so there is nothing to plot."


def test_a_best_without_trial_rows_draws_the_best_not_empty_axes(drawn):
    katib = {"algorithm": "random", "trials": [], "best_trial": "t-7", "best_params": {"nbuckets": 22},
             "best_log_loss": 0.41, "metric": "log_loss"}
    render_tuning_html(katib)
    by_trial, by_buckets = drawn
    assert by_trial["lines"] and np.allclose(by_trial["lines"][0], 0.41)
    assert by_buckets["points"] == [((22.0, 0.41),)]
