"""amc-pipeline: AMC workflow executions from request to landed Parquet, driven by Dagster."""
