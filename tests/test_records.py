"""The run-record contract: version, validation, reading; aggregation reads records without torch."""

import json
import re

import pytest
from fake_records import make_record

from optbench.records.record import RecordError, read_record, validate_record, write_record


def test_a_record_round_trips(tmp_path):
    record = make_record("adamw", 1e-3, 0.1, 0, 0.2)
    write_record(record, tmp_path / "run.json")
    assert read_record(tmp_path / "run.json") == record


def test_validation_names_where_and_what(tmp_path):
    record = make_record("adamw", 1e-3, 0.1, 0, 0.2)
    record["history"][1]["test_error"] = -0.5
    with pytest.raises(RecordError, match=re.escape("$.history[1].test_error: -0.5 is less than the minimum of 0")):
        validate_record(record)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_numbers_are_rejected(tmp_path, value):
    record = make_record("adamw", 1e-3, 0.1, 0, 0.2)
    record["history"][0]["lr_multiplier"] = value
    with pytest.raises(RecordError, match=re.escape("$.history[0].lr_multiplier:")):
        validate_record(record)
    path = tmp_path / "run.json"
    path.write_text(json.dumps(record))  # Python writes NaN and Infinity unless told not to
    with pytest.raises(RecordError, match=re.escape(f"{path}: not a valid run record: $.history[0].lr_multiplier:")):
        read_record(path)


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"run_id": ')
    with pytest.raises(RecordError, match=re.escape(f"{path}: not a valid run record: Expecting value")):
        read_record(path)
