"""The local tuning study: trials as processes, failures recorded, resume, no orphans, reports."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from mlengine.components.tune.local import STUDY_DB, load_trials, run_local_study
from mlengine.components.tune.report import NO_PLOTS, render_tuning_html, render_tuning_markdown
from mlengine.components.tune.space_loader import space_from_dict
from mlengine.constants import TRIALS_FILE
from mlengine.errors import MlengineError
from tests import tune_fixtures
from tests.log_capture import logged_lines
from tests.tune_fixtures import calls_made

pytestmark = pytest.mark.e2e  # starts servers or processes: not in the quick loop (-m "not e2e")

REPO = Path(__file__).resolve().parents[3]


def make_space(**overrides) -> object:
    raw = {
        "algorithm": "tpe",
        "algorithm_settings": {"n_startup_trials": 4, "random_state": 7},
        "max_trials": 12,
        "parallel_trials": 1,
        "early_stopping": {"algorithm": "medianstop", "min_trials_required": 3, "start_step": 2},
        "parameters": {
            "nbuckets": {"type": "int", "min": 4, "max": 32, "step": 2},
            "learning_rate": {"type": "double", "min": 0.0001, "max": 0.1, "log": True},
        },
    }
    raw.update(overrides)
    return space_from_dict(raw, source="test-space.yaml")


def nbuckets_grid(values: tuple[int, int, int], **overrides):
    low, high, step = values
    return make_space(algorithm="grid", algorithm_settings={}, early_stopping=None,
                      parameters={"nbuckets": {"type": "int", "min": low, "max": high, "step": step}}, **overrides)


def study(tmp_path, space, runner, *, epochs=3, lines=None, out="study", defaults=None):
    with logged_lines("mlengine.components.tune.local", lines.append if lines is not None else lambda line: None):
        return run_local_study(str(tmp_path / "train"), str(tmp_path / "eval"), None, space,
                               str(tmp_path / out), epochs=epochs, trial_runner=runner, defaults=defaults)


def test_study_improves_on_its_first_trial_and_stops_bad_trials_early(tmp_path):
    lines: list[str] = []
    # a poor default configuration (far from the bowl's minimum): it is trial 0, and the search beats it
    poor = {"nbuckets": 30, "learning_rate": 0.05}
    result = study(tmp_path, make_space(), tune_fixtures.bowl_runner, lines=lines, defaults=poor)
    trials = result["trials"]
    assert len(trials) == 12 and len(calls_made(tmp_path / "study")) == 12
    assert trials[0]["default"] is True and trials[0]["params"]["nbuckets"] == 30
    assert trials[0]["params"]["learning_rate"] == 0.05 and not any(t["default"] for t in trials[1:])
    assert result["default_trial"] == 0 and result["default_rmse"] == trials[0]["rmse"]
    complete = [t for t in trials if t["state"] == "COMPLETE"]
    assert result["best_rmse"] == min(t["rmse"] for t in complete)
    assert result["best_rmse"] < trials[0]["rmse"]  # the search found something better than the default
    assert result["best_rmse"] == pytest.approx(tune_fixtures.bowl(result["best_params"]))
    assert set(result["best_params"]) == {"nbuckets", "hidden_units", "learning_rate", "batch_size", "class_weight"}
    # medianstop: trials worse than the median at epoch 2 were stopped and keep their last value
    pruned = [t for t in trials if t["state"] == "PRUNED"]
    assert pruned, "no trial was stopped early"
    for trial in pruned:
        assert set(trial["intermediate"]) == {"1", "2"}
        assert trial["rmse"] == trial["intermediate"]["2"]
    # live progress, one line per finished trial in the documented shape
    finished = [line for line in lines if " -> " in line]
    assert len(finished) == 12
    # one numbering everywhere: the console's trial numbers are the report's and the trial folders'
    assert any(line.startswith("tune: trial 4 (5/12) nbuckets=") and " lr=" in line for line in finished)
    numbers = sorted(int(line.split()[2]) for line in finished)
    assert numbers == [t["number"] for t in sorted(trials, key=lambda t: t["number"])] == list(range(12))
    assert "tune: trial 0 is the default configuration nbuckets=30 lr=0.05" in lines
    assert any("-> rmse=" in line and "(best " in line for line in finished)
    # persisted: trials.json mirrors the result, study.db holds the optuna study
    assert load_trials(tmp_path / "study")["best_params"] == result["best_params"]
    assert (tmp_path / "study" / STUDY_DB).stat().st_size > 0


def test_failing_trials_are_recorded_and_the_study_goes_on(tmp_path):
    space = nbuckets_grid((4, 20, 2), parallel_trials=2)
    result = study(tmp_path, space, tune_fixtures.crash_some_runner)
    by_nbuckets = {t["params"]["nbuckets"]: t for t in result["trials"]}
    assert sorted(by_nbuckets) == list(range(4, 21, 2))
    for nbuckets in (4, 6, 8, 10):
        assert by_nbuckets[nbuckets]["state"] == "FAIL"
        assert "RuntimeError: simulated crash" in by_nbuckets[nbuckets]["error"]
    assert by_nbuckets[12]["state"] == "FAIL"
    assert "exited with code 7" in by_nbuckets[12]["error"]
    for nbuckets in (14, 16, 18, 20):
        assert by_nbuckets[nbuckets]["state"] == "COMPLETE"
    assert result["best_params"]["nbuckets"] == 16


def test_all_trials_failing_is_an_error_not_a_best(tmp_path):
    with pytest.raises(MlengineError, match=r"all 3 trial\(s\) failed; first error: ValueError: the data is unusable"):
        study(tmp_path, nbuckets_grid((4, 8, 2)), tune_fixtures.always_fail_runner)
    written = json.loads((tmp_path / "study" / TRIALS_FILE).read_text())
    assert [t["state"] for t in written["trials"]] == ["FAIL"] * 3
    assert written["best_params"] is None and written["best_rmse"] is None


def test_nan_objective_is_a_failed_trial(tmp_path):
    result = study(tmp_path, nbuckets_grid((4, 10, 2)), tune_fixtures.nan_runner)
    states = {t["params"]["nbuckets"]: (t["state"], t["error"]) for t in result["trials"]}
    for nbuckets in (4, 8):
        assert states[nbuckets][0] == "FAIL" and "objective is nan" in states[nbuckets][1]
    assert states[6][0] == states[10][0] == "COMPLETE"
    assert math.isfinite(result["best_rmse"])


def test_more_failures_than_allowed_fail_the_study(tmp_path):
    space = nbuckets_grid((4, 20, 2), max_failed_trials=1)
    with pytest.raises(MlengineError, match="more than max_failed_trials=1"):
        study(tmp_path, space, tune_fixtures.crash_some_runner)


def test_resume_runs_only_the_missing_trials(tmp_path):
    space = make_space(max_trials=4, early_stopping=None)
    first = study(tmp_path, space, tune_fixtures.bowl_runner)
    assert len(calls_made(tmp_path / "study")) == 4
    again = study(tmp_path, space, tune_fixtures.bowl_runner)
    assert len(calls_made(tmp_path / "study")) == 4  # nothing re-run
    assert again["trials"] == first["trials"]
    more = study(tmp_path, space.with_overrides(max_trials=6), tune_fixtures.bowl_runner)
    assert len(calls_made(tmp_path / "study")) == 6 and len(more["trials"]) == 6
    assert more["trials"][:4] == first["trials"]
    other = make_space(max_trials=4, parameters={"nbuckets": {"type": "int", "min": 2, "max": 8}})
    with pytest.raises(MlengineError, match="another search space"):
        study(tmp_path, other, tune_fixtures.bowl_runner)


STUDY_SCRIPT = textwrap.dedent("""
    import sys
    from mlengine.components.shared.logs import setup_logging
    from mlengine.components.tune.local import run_local_study
    from mlengine.components.tune.space_loader import space_from_dict
    from tests import tune_fixtures

    space = space_from_dict({"algorithm": "random", "algorithm_settings": {"random_state": 3}, "max_trials": 4,
                             "parallel_trials": 2,
                             "parameters": {"nbuckets": {"type": "int", "min": 4, "max": 32, "step": 2},
                                            "learning_rate": {"type": "double", "min": 0.0001, "max": 0.1,
                                                              "log": True}}})
    setup_logging()
    run_local_study(sys.argv[1] + "/train", sys.argv[1] + "/eval", None, space, sys.argv[1] + "/study", epochs=1,
                    trial_runner=tune_fixtures.sleepy_runner)
""")


def _trial_pids(out: Path, count: int, deadline: float) -> list[int]:
    while time.monotonic() < deadline:
        pid_files = sorted(out.glob("trials/*/pid"))
        if len(pid_files) == count and all(f.read_text() for f in pid_files):
            return [int(f.read_text()) for f in pid_files]
        time.sleep(0.2)
    raise AssertionError(f"the trial processes did not start: {list(out.glob('trials/*'))}")


def _sigint_as_in_a_shell() -> None:
    """Ctrl-C as a terminal delivers it: a test worker may run with SIGINT ignored, which children inherit."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _gone(pid: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL])
def test_stopping_the_study_kills_its_trials_and_a_rerun_repeats_them(tmp_path, stop_signal):
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen([sys.executable, "-c", STUDY_SCRIPT, str(tmp_path)], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=_sigint_as_in_a_shell)
    try:
        pids = _trial_pids(tmp_path / "study", 2, time.monotonic() + 60)
        process.send_signal(stop_signal)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode != 0
    for pid in pids:  # no orphan keeps training after the study is gone (Ctrl-C or kill -9)
        assert _gone(pid, time.monotonic() + 15), f"trial process {pid} outlived the study"
    if stop_signal == signal.SIGINT:
        assert "will run again when the study resumes" in output
        interrupted = json.loads((tmp_path / "study" / TRIALS_FILE).read_text())["trials"]
        assert [t["state"] for t in interrupted] == ["INTERRUPTED", "INTERRUPTED"]

    # the re-run repeats the two interrupted trials (same parameters) and finishes the budget
    space = space_from_dict({"algorithm": "random", "algorithm_settings": {"random_state": 3}, "max_trials": 4,
                             "parallel_trials": 2,
                             "parameters": {"nbuckets": {"type": "int", "min": 4, "max": 32, "step": 2},
                                            "learning_rate": {"type": "double", "min": 0.0001, "max": 0.1,
                                                              "log": True}}})
    result = run_local_study(str(tmp_path / "train"), str(tmp_path / "eval"), None, space, str(tmp_path / "study"),
                             epochs=1, trial_runner=tune_fixtures.bowl_runner)
    states = [t["state"] for t in result["trials"]]
    assert states.count("INTERRUPTED") == 2 and states.count("COMPLETE") == 4
    interrupted_params = sorted(json.dumps(t["params"], sort_keys=True) for t in result["trials"]
                                if t["state"] == "INTERRUPTED")
    rerun_params = sorted(json.dumps(t["params"], sort_keys=True) for t in result["trials"]
                          if t["state"] == "COMPLETE")
    assert set(interrupted_params) <= set(rerun_params)


def test_report_has_table_and_plots(tmp_path):
    result = study(tmp_path, make_space(max_trials=5), tune_fixtures.bowl_runner, epochs=2,
                   defaults={"nbuckets": 30, "learning_rate": 0.05})
    markdown = render_tuning_markdown(result)
    assert markdown.count("\n| ") == 1 + 5  # header + one row per trial
    assert "| 0 (default) | 30 |" in markdown
    assert f"Trial 0 is the default configuration (eval RMSE {result['default_rmse']:.4f})" in markdown
    assert "| trial | nbuckets | hidden_units | learning_rate | batch_size | rmse | state | error |" in markdown
    assert f"{result['best_rmse']:.4f}" in markdown
    page = render_tuning_html(result)
    assert page.count("data:image/png;base64,") == 2
    assert page.count("<tr>") == 1 + 5
    assert page.startswith("<!doctype html>")
    assert NO_PLOTS not in page


def test_report_without_trials_draws_no_plots_and_says_so():
    skipped = {"algorithm": "tpe", "trials": [], "best_params": {"nbuckets": 8}, "best_rmse": None,
               "skipped": True, "skip_reason": "0 trials"}
    page = render_tuning_html(skipped)
    assert "data:image/png;base64," not in page
    assert NO_PLOTS in page and "Tuning skipped (0 trials)" in page
    failed = {"algorithm": "tpe", "best_params": {}, "best_rmse": None,
              "trials": [{"number": 0, "params": {"nbuckets": 8}, "rmse": None, "state": "FAIL", "error": "boom"}]}
    page = render_tuning_html(failed)
    assert "data:image/png;base64," not in page and NO_PLOTS in page
    assert page.count("<tr>") == 1 + 1  # the table still lists the failed trial


def test_executor_searches_only_what_is_not_fixed_and_zero_trials_skips(tmp_path):
    from mlengine.components.shared.hyperparameters import HyperParameters
    from mlengine.components.tune.executor import run

    space_file = tmp_path / "space.yaml"
    space_file.write_text(make_space(max_trials=3, parameters={
        "nbuckets": {"type": "int", "min": 10, "max": 20, "step": 2},
        "learning_rate": {"type": "double", "min": 0.001, "max": 0.01, "log": True},
        "batch_size": {"type": "categorical", "values": [256, 512]}}).to_yaml())
    fixed = {"nbuckets": 8, "hidden_units": "16,8", "batch_size": 128}
    result = run(str(tmp_path / "train"), str(tmp_path / "eval"), "", str(tmp_path / "study"), fixed=fixed, trials=3,
                 parallel=1, algorithm="random", epochs=1, space_path=str(space_file),
                 trial_runner=tune_fixtures.bowl_runner)
    best = result.hyperparameters
    assert (best.nbuckets, best.hidden_units, best.batch_size) == (8, "16,8", 128)  # fixed: as given
    assert 0.001 <= best.learning_rate <= 0.01 and result.searched == ["learning_rate"]  # tuned: from the study
    trials = load_trials(tmp_path / "study")["trials"]
    assert len(trials) == 3
    assert all((t["params"]["nbuckets"], t["params"]["batch_size"]) == (8, 128) for t in trials)  # every trial
    assert len({t["params"]["learning_rate"] for t in trials}) == 3
    assert "Fixed by you" in result.markdown and "`nbuckets`=8" in result.markdown
    assert "Searched: `learning_rate`" in result.markdown
    assert "| 16,8 |" in result.markdown and result.html.count("data:image/png;base64,") == 2

    skipped = run(str(tmp_path / "train"), str(tmp_path / "eval"), "", str(tmp_path / "skip"), fixed=fixed,
                  trials=0, parallel=1, algorithm="tpe", epochs=1, hyperparameters_path=str(tmp_path / "hp.json"),
                  markdown_path=str(tmp_path / "tuning.md"), html_path=str(tmp_path / "tuning.html"))
    assert isinstance(skipped, type(result)) and skipped.skipped and not result.skipped
    assert skipped.hyperparameters == HyperParameters(**{**HyperParameters().to_dict(), **fixed})
    assert "skipped" in skipped.markdown
    assert (tmp_path / "tuning.md").read_text(encoding="utf-8") == skipped.markdown
    assert (tmp_path / "tuning.html").read_text(encoding="utf-8") == skipped.html
    assert "data:image/png;base64," not in skipped.html and NO_PLOTS in skipped.html
    assert HyperParameters.load(tmp_path / "hp.json") == skipped.hyperparameters
    everything = run(str(tmp_path / "train"), str(tmp_path / "eval"), "", str(tmp_path / "all"),
                     fixed={**fixed, "learning_rate": 0.01}, trials=3, epochs=1, space_path=str(space_file))
    assert everything.study["skipped"] and everything.hyperparameters.learning_rate == 0.01
    with pytest.raises(MlengineError, match="unknown hyperparameter 'epochs'"):
        run(str(tmp_path / "train"), str(tmp_path / "eval"), "", str(tmp_path / "bad"), fixed={"epochs": 3},
            trials=1, epochs=1)


def test_a_good_default_is_never_lost_and_one_trial_is_the_default(tmp_path):
    """--trials 1 runs exactly the default configuration; with more trials the best is never worse than it."""
    default = {"nbuckets": 16, "learning_rate": 10 ** -2.5}  # the bowl's minimum
    one = study(tmp_path, make_space(max_trials=1), tune_fixtures.bowl_runner, defaults=default, out="one")
    assert [t["params"]["nbuckets"] for t in one["trials"]] == [16]
    assert one["best_params"]["learning_rate"] == pytest.approx(10 ** -2.5)
    several = study(tmp_path, make_space(max_trials=5), tune_fixtures.bowl_runner, defaults=default, out="five")
    assert several["best_rmse"] <= several["default_rmse"] == pytest.approx(1.0)


def test_a_default_outside_the_space_is_not_enqueued(tmp_path):
    lines: list[str] = []
    result = study(tmp_path, make_space(max_trials=2), tune_fixtures.bowl_runner, lines=lines,
                   defaults={"nbuckets": 40, "learning_rate": 0.01})
    assert result["default_trial"] is None and not any(t["default"] for t in result["trials"])
    assert any("the default nbuckets lie outside the search space" in line for line in lines)


def test_sampler_seed_follows_the_dataset(tmp_path):
    from mlengine.components.tune.local import dataset_seed

    space = make_space()
    taxi = {"name": "taxi"}
    assert dataset_seed(space, taxi, tmp_path / "none") == dataset_seed(space, taxi, tmp_path / "none")
    assert dataset_seed(space, taxi, tmp_path / "none") != dataset_seed(space, {"name": "houses"}, tmp_path / "none")
