import pytest
from pyspark.sql import functions as F

from features.errors import UserError
from features.task_map import load_task_map, locale_column, normalise_locale, parse_task_map, task_column


def test_repo_task_map_is_valid_and_has_catch_all():
    tm = load_task_map("configs/tasks.yaml")
    assert len(tm.tasks) >= 8
    assert tm.catch_all is not None and tm.catch_all.name == "other"
    assert [t.id for t in tm.tasks] == list(range(len(tm.tasks)))


@pytest.mark.parametrize(
    "data",
    [
        {},
        {"tasks": []},
        {"tasks": [{"name": "bad name!"}]},
        {"tasks": [{"name": "a"}, {"name": "a"}]},
        {"tasks": [{"name": "a", "markets": []}]},
        {"tasks": [{"name": "a"}], "unmapped": "no way"},
    ],
)
def test_malformed_task_maps_are_user_errors(data):
    with pytest.raises(UserError):
        parse_task_map(data)


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_task_map(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("tasks: [\n")
    with pytest.raises(UserError, match="YAML"):
        load_task_map(bad)


def test_first_match_wins_and_unmapped(spark):
    tm = parse_task_map(
        {
            "tasks": [
                {"name": "us-retail", "markets": ["en-us"], "verticals": ["Retail"]},
                {"name": "retail", "markets": ["*"], "verticals": ["retail"]},
            ],
            "unmapped": "quarantine",
        }
    )
    df = spark.createDataFrame(
        [("EN-us", "retail"), ("en_gb", "retail"), ("en-US", "travel")], "market string, vertical string"
    )
    market = locale_column(F.col("market"))
    ids = [r[0] for r in df.select(task_column(tm, market, F.col("vertical"))).collect()]
    assert ids == [0, 1, None]


def test_spark_task_column_agrees_with_task_for(spark):
    tm = parse_task_map(
        {
            "tasks": [
                {"name": "gb-travel", "markets": ["en-GB"], "verticals": ["travel"]},
                {"name": "gb", "markets": ["en-GB"], "verticals": ["*"]},
                {"name": "health", "markets": ["*"], "verticals": ["health", "pharma"]},
                {"name": "us-any", "markets": ["en-US", "en-CA"], "verticals": ["retail", "travel"]},
                {"name": "other", "markets": ["*"], "verticals": ["*"]},
            ],
            "unmapped": "other",
        }
    )
    grid = [(m, v) for m in ("en-GB", "en-US", "en-CA", "fr-FR", None)
            for v in ("travel", "health", "retail", "pharma", "autos", None)]
    df = spark.createDataFrame(grid, "market string, vertical string")
    got = [r[0] for r in df.select(task_column(tm, F.col("market"), F.col("vertical"))).collect()]
    assert got == [tm.task_for(m, v).id for m, v in grid]
    assert len(set(got)) == 5  # every task is reached somewhere on the grid


def test_spark_task_column_with_wildcards_only(spark):
    tm = parse_task_map({"tasks": [{"name": "all", "markets": ["*"], "verticals": ["*"]}], "unmapped": "quarantine"})
    df = spark.createDataFrame([("en-GB", "travel"), (None, None)], "market string, vertical string")
    assert [r[0] for r in df.select(task_column(tm, F.col("market"), F.col("vertical"))).collect()] == [0, 0]


LOCALES = ["en-US", "EN-us", " en_gb ", "fr", "", "de-", "-at", "zh-Hant-TW", "en-GB-US", "en_GB-us", "pt_br_x"]


def test_spark_locale_column_agrees_with_normalise_locale(spark):
    """Both split at the first separator: 'en-GB-US' must not become 'en-US' on one side only."""
    df = spark.createDataFrame([(v,) for v in LOCALES], "market string")
    got = [r[0] for r in df.select(locale_column(F.col("market"))).collect()]
    assert got == [normalise_locale(v) for v in LOCALES]
    assert normalise_locale("en-GB-US") == "en-GB-US"
