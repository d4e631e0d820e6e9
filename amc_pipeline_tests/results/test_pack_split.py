"""Splitting a packed result at landing: exact rows per window, time zones, and refused results."""

from datetime import date, datetime, timedelta

import pyarrow.parquet as pq
import pytest

from amc_pipeline.monitor.pack_landing import land_pack
from amc_pipeline.results.layout import partition_dir
from amc_pipeline.results.split import PackSplitError
from amc_pipeline.simulator import Scenario
from amc_pipeline_tests.harness import rig

KEYS = ["2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04"]


def workflow(split_column: str = "date", timezone: str = "UTC") -> dict:
    return {"name": "packed", "sql": "SELECT 1", "timezone": timezone,
            "packing": {"max_windows": 31, "split_column": split_column, "settle_seconds": 0}}


def run_pack(r, data_dir):
    for key in KEYS:
        r.request("packed", key)
    r.drive(lambda: all(r.status("packed", k) == "SUCCESS" for k in KEYS))
    wf = r.config.workflow("packed")
    leader = r.store.get_live("packed", KEYS[0]).attempt.pack_leader_id
    return land_pack(r.store, r.client, r.config.instance(wf.instance_id), wf, leader, r.config.monitor,
                     data_dir=data_dir)


@pytest.mark.parametrize(("split_column", "timezone"), [("date", "America/New_York"),
                                                        ("first_impression_time", "Asia/Tokyo")])
def test_each_window_gets_exactly_its_rows_in_the_workflows_time_zone(tmp_path, split_column, timezone):
    data_dir = tmp_path / "data"
    with rig([workflow(split_column, timezone)], database_url=f"sqlite:///{tmp_path / 's.db'}",
             scenarios={"packed": Scenario(rows=400, files=2)}) as r:
        packed = run_pack(r, data_dir)
        assert [e.partition_key for e, _ in packed.windows] == KEYS
        total = 0
        for execution, landed in packed.windows:
            table = pq.read_table(partition_dir(data_dir, "packed", execution.partition_key))
            day = date.fromisoformat(execution.partition_key)
            values = table.column(split_column).to_pylist()
            as_days = {v if isinstance(v, date) and not isinstance(v, datetime) else v.date() for v in values}
            assert as_days == {day}  # local calendar days of the window, not UTC ones
            assert landed.landing.rows == table.num_rows == r.store.get(execution.id).rows == 100
            total += table.num_rows
        assert total == packed.pack_rows == 400


def test_a_window_without_rows_lands_an_empty_partition_with_the_schema(tmp_path):
    data_dir = tmp_path / "data"
    with rig([workflow()], database_url=f"sqlite:///{tmp_path / 's.db'}",
             scenarios={"packed": Scenario(rows=2, files=1)}) as r:  # rows on 10-01 and 10-02 only
        packed = run_pack(r, data_dir)
        rows = {e.partition_key: landed.landing.rows for e, landed in packed.windows}
        assert rows == {"2026-10-01": 1, "2026-10-02": 1, "2026-10-03": 0, "2026-10-04": 0}
        empty = pq.read_table(partition_dir(data_dir, "packed", "2026-10-04"))
        assert empty.num_rows == 0 and "date" in empty.schema.names and "campaign" in empty.schema.names


def test_a_result_without_the_split_column_is_refused_naming_it(tmp_path):
    data_dir = tmp_path / "data"
    columns = [{"name": "campaign", "dataType": "STRING"}, {"name": "impressions", "dataType": "LONG"}]
    with rig([workflow("event_date")], database_url=f"sqlite:///{tmp_path / 's.db'}",
             scenarios={"packed": Scenario(rows=10, columns=columns)}) as r:
        with pytest.raises(PackSplitError, match="packing.split_column 'event_date': not among the outputColumns"):
            run_pack(r, data_dir)
        for key in KEYS:  # every window records the failure; nothing landed
            execution = r.store.get_live("packed", key)
            assert "event_date" in execution.land_error and execution.landed_at is None
        assert not (data_dir / "results" / "packed").exists()


def test_a_split_column_that_is_not_a_date_is_refused(tmp_path):
    with (rig([workflow("campaign")], database_url=f"sqlite:///{tmp_path / 's.db'}",
              scenarios={"packed": Scenario(rows=10)}) as r,
          pytest.raises(PackSplitError, match="'campaign': AMC reports it as STRING, expected DATE or TIMESTAMP")):
        run_pack(r, tmp_path / "data")


def test_a_row_outside_the_packed_range_fails_the_landing_naming_the_value(tmp_path):
    data_dir = tmp_path / "data"
    result = tmp_path / "result.csv"
    days = [(date(2026, 10, 1) + timedelta(days=i)).isoformat() for i in range(4)] + ["2026-10-07"]
    result.write_text("date,campaign\n" + "".join(f"{d},c{i}\n" for i, d in enumerate(days)), encoding="utf-8")
    columns = [{"name": "date", "dataType": "DATE"}, {"name": "campaign", "dataType": "STRING"}]
    with rig([workflow()], database_url=f"sqlite:///{tmp_path / 's.db'}",
             scenarios={"packed": Scenario(result_files=[str(result)], columns=columns)}) as r:
        with pytest.raises(PackSplitError, match="value 2026-10-07 lies outside the packed range"):
            run_pack(r, data_dir)
        assert not (data_dir / "results" / "packed").exists()  # checked before any window is published
