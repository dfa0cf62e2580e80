"""Five-field crons become KFP's six-field form; every field is checked and errors name it."""

import pytest

from mlengine.kubeflow.cron import CronError, to_kfp_cron


@pytest.mark.parametrize(("given", "sent"), [
    ("0 3 * * *", "0 0 3 * * *"),
    ("*/15 * * * *", "0 */15 * * * *"),
    ("30 2 1-7 JAN,jul MON-FRI", "0 30 2 1-7 JAN,jul MON-FRI"),
    ("0 0 12 ? * 7", "0 0 12 ? * 7"),  # six fields: KFP's form, kept (7 = Sunday in robfig/cron)
    ("  5   4 * * 0 ", "0 5 4 * * 0"),
    ("@daily", "@daily"),
])
def test_translation(given, sent):
    cron = to_kfp_cron(given)
    assert cron.kfp == sent
    assert cron.translated == (len(given.split()) == 5)
    assert sent in cron.describe()


@pytest.mark.parametrize(("given", "message"), [
    ("", "empty"),
    ("0 3 * *", "4 fields"),
    ("0 0 0 3 * * *", "7 fields"),
    ("0 24 * * *", "hour field: 24 is out of range 0-23"),
    ("0 3 0 * *", "day-of-month field: 0 is out of range 1-31"),
    ("0 3 * 13 *", "month field: 13 is out of range 1-12"),
    ("0 3 * * 8", "day-of-week field: 8 is out of range 0-6"),
    ("60 0 3 * * *", "second field: 60 is out of range 0-59"),
    ("0 3 * * FUNDAY", "day-of-week field: 'FUNDAY' is not a number or one of SUN"),
    ("0 3-1 * * *", "hour field: range '3-1' runs backwards"),
    ("*/0 3 * * *", "minute field: step 0"),
    ("? 3 * * *", 'minute field: "?" is only allowed'),
    ("0 3 * * 1;2", "day-of-week field: '1;2' is not a value"),
    ("@sometimes", "unknown descriptor"),
])
def test_errors_name_the_field(given, message):
    with pytest.raises(CronError) as err:
        to_kfp_cron(given)
    assert message in str(err.value)
    assert "\n" not in str(err.value)
