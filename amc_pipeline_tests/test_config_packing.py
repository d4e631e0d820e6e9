"""The `packing:` block of a workflow: valid forms and errors that name the field."""

import pytest

from amc_pipeline.config import ConfigError, parse_config

INSTANCE = {"instance_id": "amcabc123", "advertiser_id": "ENTITY1AA1AA11AAA1", "marketplace_id": "ATVPDKIKX0DER"}


def config(packing):
    workflow = {"name": "w", "instance_id": "amcabc123", "sql": "SELECT 1", "start_date": "2026-01-01",
                "packing": packing}
    return parse_config({"instances": [INSTANCE], "workflows": [workflow]}, "f.yaml")


def test_packing_is_optional_and_parsed():
    assert config(None).workflows[0].packing is None
    packing = config({"max_windows": 31, "split_column": "event_date"}).workflows[0].packing
    assert (packing.max_windows, packing.split_column, packing.settle_seconds) == (31, "event_date", 60.0)


@pytest.mark.parametrize(("packing", "message"), [
    ({"max_windows": 0, "split_column": "d"}, "workflows[0].packing.max_windows: Input should be greater"),
    ({"max_windows": 400, "split_column": "d"}, "workflows[0].packing.max_windows: Input should be less"),
    ({"max_windows": 3, "split_column": "a; drop"}, "workflows[0].packing.split_column: expected a column name"),
    ({"max_windows": 3}, "workflows[0].packing.split_column: required field is missing"),
    ({"max_windows": 3, "split_column": "d", "settle_seconds": -1}, "workflows[0].packing.settle_seconds"),
    ({"max_windows": 3, "split_column": "d", "windows": 3}, "workflows[0].packing.windows: unknown field"),
])
def test_bad_packing_names_the_field(packing, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        config(packing)
