"""The text form of a partition key of a fanned-out workflow: `<window key>|<instance id>`.

Why a module without Dagster: the store, the results layout and the notifications handle keys as
text and must read the instance out of them without loading Dagster. The form is Dagster's own
`MultiPartitionKey` string for the dimensions `date` and `instance` (values joined by `|` in the
order of the sorted dimension names); `amc_pipeline_tests/test_partitions.py` holds the two to each
other.
"""

#: Dagster's separator between the dimension values of a multi-partition key.
SEPARATOR = "|"
#: The dimension names of a fanned-out workflow's partitions (sorted: `date` comes first in the key).
TIME_DIMENSION = "date"
INSTANCE_DIMENSION = "instance"


def fan_out_key(window_key: str, instance_id: str) -> str:
    """The key of (window, instance) for a workflow that runs on several instances."""
    return f"{window_key}{SEPARATOR}{instance_id}"


def split_key(partition_key: str) -> tuple[str, str | None]:
    """(window key, instance id) of a fanned-out key, or (key, None) for a one-instance workflow's key."""
    window_key, separator, instance_id = partition_key.partition(SEPARATOR)
    return (window_key, instance_id) if separator else (partition_key, None)
