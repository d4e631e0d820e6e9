"""Benchmark the results-landing path against the usual alternatives. Prints figures; not a test.

    .venv/bin/python benchmarks/landing.py [--sizes 100MB,1GB] [--keep] [--tune]

For each size it generates AMC-like CSV (UTF-8, header per file, quoted commas/quotes/newlines,
non-ASCII, nulls in LONG columns, `yyyy-MM-ddTHH:mm:ss.SSS` timestamps; 1 GB = 5 files) with
pyarrow/numpy, serves it through the project's simulator (`Scenario(result_files=...)`), and runs,
each in its own child process so peak RSS is that method's alone: the child's own high-water mark,
VmHWM of /proc/self/status, read as it exits (os.wait4's ru_maxrss is printed beside it but is not
the child's alone: Linux starts a forked child's high-water mark at the parent's RSS at fork, so it
never reads below the driver's own RSS, which holds the simulator and moto's objects):

- ours: `land_execution` end to end (fresh URLs, HTTP download, CSV→typed Parquet, atomic swap);
- ours → S3: the same with `results=s3://…` on moto's S3 server (127.0.0.1, started by this script in
  the parent process, so the objects it holds are not in the child's RSS; always stopped): upload to
  staging (multipart), server-side copy into place, staging deleted;
- ours → Iceberg: the same with `iceberg=IcebergSettings(...)`: a SQL catalog on a temp SQLite file,
  a local warehouse; the window is committed as one snapshot;
- pandas: `pd.read_csv` + `DataFrame.to_parquet`, file by file, from local disk;
- DictReader: `csv.DictReader` into a list (the original system's way), capped at a row limit on
  big inputs and extrapolated linearly (marked "~");
- pyarrow: `pyarrow.csv.open_csv` → `ParquetWriter`, file by file, from local disk (our converter,
  one file at a time, no download: the conversion floor).

"types exact" checks the Parquet schema against outputColumns and, for ours, row count, the sum of
a LONG column and its null count against what the generator wrote (for S3 read back from the
bucket, for Iceberg from a scan of the table). MB = 10^6 bytes of CSV. "peak RSS target" is the issue's
peak-RSS bound for our landings: under 400 MB (stated at 1 GB; printed for every size), `met` or
`MISSED`; the alternatives get none.
Temp files live under one directory removed at the end unless --keep.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

COLUMNS = [
    ("advertiser", "STRING"),
    ("campaign", "STRING"),
    ("campaign_id", "LONG"),
    ("date", "DATE"),
    ("first_impression_time", "TIMESTAMP"),
    ("impressions", "LONG"),
    ("spend", "DOUBLE"),
    ("reach", "LONG"),
    ("filtered", "BOOLEAN"),
]
INSTANCE = dict(instance_id="amcdemo001", advertiser_id="ENTITY1AA1AA11AAA1", marketplace_id="ATVPDKIKX0DER")
DICTREADER_CAP = 1_000_000
#: The issue's target: peak RSS of our landing of a 1 GB result under this many MB.
RSS_TARGET_MB = 400
OURS = ("ours", "ours_s3", "ours_iceberg")


# ------------------------------------------------------------------------------------ generation

def _vocab(n: int, seed: int) -> list[str]:
    import numpy as np

    rng = np.random.default_rng(seed)
    tricky = ["Acme, Inc.", 'The "Best" Brand', "Line one\nline two", "Café Zürich – 東京 ✓", "Ελληνικά",
              "Brand; semicolon", "trailing space ", "emoji 🎉 launch"]
    out = []
    for i in range(n):
        pad = "x" * int(rng.integers(0, 4))
        out.append(f"C{i:04d} {tricky[i % len(tricky)]}" if i % 3 == 0 else f"C{i:04d} sale{pad}")
    return out


def generate(directory: Path, total_bytes: int, files: int, seed: int = 7) -> dict:
    """Write `files` CSVs totalling about `total_bytes`; return paths and the checks to verify."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    advertisers = pa.array(["Acme, Inc.", "Globex", "Initech – Ü", 'Umb "Corp"', "Stark\nInd"])
    campaigns = pa.array(_vocab(5000, seed))
    base_day = np.datetime64("2024-01-01", "D").astype("int64")
    base_ms = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
    schema = pa.schema([
        ("advertiser", pa.string()), ("campaign", pa.string()), ("campaign_id", pa.int64()),
        ("date", pa.date32()), ("first_impression_time", pa.string()), ("impressions", pa.int64()),
        ("spend", pa.float64()), ("reach", pa.int64()), ("filtered", pa.bool_()),
    ])

    def chunk(n: int) -> pa.Table:
        ts = pa.array(base_ms + rng.integers(0, 31 * 86400 * 1000, n), pa.int64()).cast(pa.timestamp("ms"))
        return pa.table({
            "advertiser": pc.take(advertisers, pa.array(rng.integers(0, len(advertisers), n))),
            "campaign": pc.take(campaigns, pa.array(rng.integers(0, len(campaigns), n))),
            "campaign_id": pa.array(rng.integers(1, 10**9, n), mask=rng.random(n) < 0.05),
            "date": pa.array((base_day + rng.integers(0, 31, n)).astype("int32"), pa.int32()).cast(pa.date32()),
            "first_impression_time": pc.strftime(ts, format="%Y-%m-%dT%H:%M:%S"),
            "impressions": pa.array(rng.integers(0, 5_000_000, n), mask=rng.random(n) < 0.02),
            "spend": pa.array(np.round(rng.uniform(0, 10_000, n), 2)),
            "reach": pa.array(rng.integers(0, 1_000_000, n)),
            "filtered": pa.array(rng.random(n) < 0.5),
        }, schema=schema)

    sample = chunk(20_000)
    import io
    buf = io.BytesIO()
    pacsv.write_csv(sample, buf)
    bytes_per_row = len(buf.getvalue()) / sample.num_rows
    rows_per_file = int(total_bytes / files / bytes_per_row)
    if total_bytes >= 10**9:  # the brief: at least 10 M rows for the 1 GB case
        rows_per_file = max(rows_per_file, -(-10_000_000 // files))
    paths, rows, impressions_sum, id_nulls, size = [], 0, 0, 0, 0
    for k in range(files):
        path = directory / f"result-{k}.csv"
        with pacsv.CSVWriter(str(path), schema) as writer:
            left = rows_per_file
            while left:
                n = min(left, 500_000)
                table = chunk(n)
                writer.write_table(table)
                impressions_sum += pc.sum(table["impressions"]).as_py() or 0
                id_nulls += table["campaign_id"].null_count
                left -= n
        rows += rows_per_file
        size += path.stat().st_size
        paths.append(str(path))
    return {"paths": paths, "rows": rows, "bytes": size, "impressions_sum": impressions_sum,
            "campaign_id_nulls": id_nulls}


# ------------------------------------------------------------------------------------ children

def _expected_schema():
    from amc_pipeline.results.convert_schema import schema_for
    return schema_for(COLUMNS)


def own_peak_rss_mb() -> float | None:
    """This process's own peak RSS since exec (VmHWM), in MB; None where /proc is not there."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def child_ours(args: dict) -> dict:
    from amc_pipeline.amc.client import AmcClient, AmcCredentials
    from amc_pipeline.config import InstanceConfig
    from amc_pipeline.results.landing import land_execution

    options = dict(args.get("options", {}))
    target = args.get("target", "local")
    if target == "s3":
        options["results"] = args["results_uri"]
    elif target == "iceberg":
        from amc_pipeline.results.iceberg import IcebergSettings
        options["iceberg"] = IcebergSettings(**args["iceberg"])
    creds = AmcCredentials(client_id="sim-client-id", client_secret="sim-client-secret",
                           refresh_token="sim-refresh-token", token_url=args["token_url"])
    started = time.perf_counter()
    with AmcClient(args["url"], creds) as client:
        result = land_execution(client, InstanceConfig(**INSTANCE), args["execution_id"], COLUMNS,
                                data_dir=args["data_dir"], workflow="bench", partition_key="2024-01-01",
                                **options)
    seconds = time.perf_counter() - started
    landing_peak_mb = own_peak_rss_mb() or 0.0
    # Verify after measuring the landing's own peak: stream the checks batch by batch.
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    total, nulls = 0, 0

    def batches():
        if target == "iceberg":
            from amc_pipeline.results.iceberg import load_catalog_for
            table = load_catalog_for(options["iceberg"]).load_table(result.table_name)
            yield from table.scan(selected_fields=("impressions", "campaign_id")).to_arrow_batch_reader()
            return
        filesystem = None
        if target == "s3":
            from amc_pipeline.results.storage import resolve_results_root
            filesystem = resolve_results_root(args["results_uri"]).filesystem
        for path in result.parquet_files:
            yield from pq.ParquetFile(path, filesystem=filesystem).iter_batches(
                columns=["impressions", "campaign_id"])

    for batch in batches():
        total += pc.sum(batch.column("impressions")).as_py() or 0
        nulls += batch.column("campaign_id").null_count
    schema_exact = result.schema.equals(_expected_schema())  # the Parquet the landing converted
    if target == "iceberg":  # and the table's column types are the Iceberg types of outputColumns
        from amc_pipeline.results.iceberg import _to_iceberg, load_catalog_for
        table = load_catalog_for(options["iceberg"]).load_table(result.table_name)
        wanted = {f.name: f.field_type for f in _to_iceberg(_expected_schema()).fields}
        have = {f.name: f.field_type for f in table.schema().fields if f.name != "window_start"}
        schema_exact = schema_exact and have == wanted
    return {"rows": result.rows, "schema_exact": schema_exact,
            "impressions_sum": total, "campaign_id_nulls": nulls,
            "download_seconds": result.download_seconds, "parquet_bytes": result.bytes, "seconds": seconds,
            "upload_seconds": result.upload_seconds, "landing_peak_mb": landing_peak_mb,
            "parts": len(result.parquet_files)}


def child_pyarrow(args: dict) -> dict:
    from amc_pipeline.results.convert_csv import convert_csv
    rows, exact = 0, True
    for i, path in enumerate(args["paths"]):
        res = convert_csv(path, Path(args["out_dir"]) / f"pa-{i}.parquet", COLUMNS, file_index=i)
        rows += res.rows
        exact = exact and res.schema.equals(_expected_schema())
    return {"rows": rows, "schema_exact": exact}


def child_pandas(args: dict) -> dict:
    import pandas as pd
    import pyarrow.parquet as pq
    rows, dtypes = 0, {}
    for i, path in enumerate(args["paths"]):
        frame = pd.read_csv(path)
        out = Path(args["out_dir"]) / f"pd-{i}.parquet"
        frame.to_parquet(out)
        rows += len(frame)
        dtypes = {k: str(v) for k, v in frame.dtypes.items()}
        del frame
    schema = pq.read_schema(out)
    exact = schema.remove_metadata().equals(_expected_schema())
    return {"rows": rows, "schema_exact": exact, "dtypes": dtypes}


def child_dictreader(args: dict) -> dict:
    import csv
    cap = args["cap"]
    rows: list[dict] = []
    for path in args["paths"]:
        with open(path, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                rows.append(row)
                if cap and len(rows) >= cap:
                    break
        if cap and len(rows) >= cap:
            break
    return {"rows": len(rows), "schema_exact": False}


CHILDREN = {"ours": child_ours, "ours_s3": child_ours, "ours_iceberg": child_ours, "pyarrow": child_pyarrow,
            "pandas": child_pandas, "dictreader": child_dictreader}


def run_child(method: str, args: dict, env: dict[str, str] | None = None) -> dict:
    """Run one method in a fresh interpreter; wall time and that process's own peak RSS (wait4)."""
    started = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", method, json.dumps(args)],
                            stdout=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{method} failed (exit {proc.returncode})")
    result = json.loads(out.strip().splitlines()[-1])
    own = result.get("own_peak_rss_mb")
    result.update(seconds=result.get("seconds", wall), peak_rss_mb=own if own else usage.ru_maxrss / 1024,
                  wait4_maxrss_mb=usage.ru_maxrss / 1024, cpu_seconds=usage.ru_utime + usage.ru_stime)
    return result


def _child_main(method: str, payload: str) -> None:
    args = json.loads(payload)
    # Import first so every method is timed on its work, not on interpreter and library start-up.
    if method == "pandas":
        import pandas  # noqa: F401
    if method != "dictreader":
        import pyarrow.parquet  # noqa: F401

        import amc_pipeline.amc.client  # noqa: F401
        import amc_pipeline.results.landing  # noqa: F401
    if method == "ours_s3":
        import boto3  # noqa: F401
    started = time.perf_counter()
    result = CHILDREN[method](args)
    result.setdefault("seconds", time.perf_counter() - started)
    result["own_peak_rss_mb"] = own_peak_rss_mb()
    print(json.dumps(result))


# ------------------------------------------------------------------------------------ driver

def parse_size(text: str) -> int:
    text = text.strip().upper()
    for unit, factor in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * factor)
    return int(text)


def land_via_simulator(sim, paths: list[str]) -> str:
    from amc_pipeline.amc.client import AmcClient, AmcCredentials, execution_body
    from amc_pipeline.config import InstanceConfig
    from amc_pipeline.simulator import Scenario

    key = f"bench{len(paths)}x{abs(hash(tuple(paths))) % 10**6}"
    sim.set_scenario(key, Scenario(result_files=paths, columns=[list(c) for c in COLUMNS]))
    creds = AmcCredentials(client_id="sim-client-id", client_secret="sim-client-secret",
                           refresh_token="sim-refresh-token", token_url=sim.token_url)
    instance = InstanceConfig(**INSTANCE)
    with AmcClient(sim.url, creds) as client:
        body = execution_body(workflow_id=f"{key}-run", sql="SELECT 1", window_start=datetime(2024, 1, 1),
                              window_end=datetime(2024, 1, 2), time_zone="UTC", timeout_seconds=3600)
        execution = client.create_execution(instance, body)
        for _ in range(1200):
            execution = client.get_execution(instance, execution.execution_id)
            if execution.status == "SUCCEEDED":
                return execution.execution_id
            time.sleep(0.05)
    raise SystemExit("simulator execution never SUCCEEDED")


@contextlib.contextmanager
def s3_endpoint() -> Iterator[tuple[str, Any, dict[str, str]]]:
    """moto's S3 server on 127.0.0.1 (a free port) and a boto3 client for it; always stopped.

    The test fixture (amc_pipeline_tests/s3.py) when importable, else moto's ThreadedMotoServer
    directly with the same fake credentials."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    try:
        from amc_pipeline_tests.s3 import aws_env, s3_server
    except ImportError:
        s3_server = None
    if s3_server is not None:
        with s3_server() as server:
            yield server.endpoint_url, server.client, aws_env(server.endpoint_url)
        return
    import boto3
    from moto.server import ThreadedMotoServer

    env = {"AWS_ACCESS_KEY_ID": "AKIAFAKETESTKEY00000", "AWS_SECRET_ACCESS_KEY": "fake-secret-for-moto-only",
           "AWS_REGION": "us-east-1", "AWS_DEFAULT_REGION": "us-east-1"}
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        env["AWS_ENDPOINT_URL"] = endpoint
        client = boto3.client("s3", endpoint_url=endpoint, region_name=env["AWS_REGION"],
                              aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                              aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
        yield endpoint, client, env
    finally:
        server.stop()


def empty_bucket(client: Any, bucket: str) -> str:
    """Delete every object of the bucket (frees moto's memory between runs); say what was there.
    Raises if a multipart upload was left open (a landing must not leave any)."""
    open_uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    for upload in open_uploads:
        client.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
    parts, staged, markers = 0, 0, 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        contents = page.get("Contents", [])
        for o in contents:
            if o["Key"].endswith("/") and o["Size"] == 0:
                markers += 1  # pyarrow's empty "dir/" marker objects
            elif "/_staging/" in o["Key"]:
                staged += 1
            else:
                parts += 1
        if contents:
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in contents]})
    if open_uploads:
        raise SystemExit(f"the S3 landing left {len(open_uploads)} multipart upload(s) open")
    if staged:
        raise SystemExit(f"the S3 landing left {staged} staging object(s)")
    return f"{parts} part(s), {markers} empty dir marker(s), 0 staged, 0 open uploads"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100MB,1GB", help="comma-separated CSV sizes (1GB+ → 5 files)")
    parser.add_argument("--keep", action="store_true", help="keep the temp directory (path printed)")
    parser.add_argument("--dir", default=None, help="parent of the temp directory (default: system temp)")
    parser.add_argument("--tune", action="store_true", help="also run ours with other workers/blocks/groups")
    parser.add_argument("--methods", default="ours,ours_s3,ours_iceberg,pandas,dictreader,pyarrow")
    parser.add_argument("--dictreader-cap", type=int, default=DICTREADER_CAP,
                        help="row cap for csv.DictReader on inputs above 200 MB (0 = none)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child_main(*args.child)
        return

    from amc_pipeline.simulator import SimulatorConfig, SimulatorServer

    root = Path(tempfile.mkdtemp(prefix="amc-landing-bench-", dir=args.dir))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    rows_out: list[tuple] = []
    bucket = f"amc-bench-{uuid.uuid4().hex[:8]}"  # moto's backend is per process: a bucket of our own
    try:
        with contextlib.ExitStack() as stack:
            sim = stack.enter_context(SimulatorServer(SimulatorConfig(pending_seconds=0.1, running_seconds=0.1),
                                                      db_path=root / "sim.db"))
            s3_client, s3_env = None, {}
            if "ours_s3" in methods:
                _, s3_client, s3_env = stack.enter_context(s3_endpoint())
                s3_client.create_bucket(Bucket=bucket)
            for size_text in args.sizes.split(","):
                size = parse_size(size_text)
                files = 5 if size >= 500 * 10**6 else 1
                t0 = time.perf_counter()
                gen = generate(root / f"csv-{size_text}", size, files)
                print(f"\n== {size_text}: {gen['bytes'] / 1e6:.0f} MB CSV, {gen['rows']:,} rows, {files} file(s) "
                      f"(generated in {time.perf_counter() - t0:.1f}s)", flush=True)
                mb = gen["bytes"] / 1e6
                variants: list[tuple[str, str, dict]] = []
                for method in methods:
                    if method == "ours":
                        variants.append(("ours (download+convert, 2 workers)", "ours", {}))
                        if args.tune:
                            for label, opts in [
                                ("ours 1 convert worker", {"convert_workers": 1}),
                                ("ours 1 download worker", {"downloader_options": {"workers": 1}}),
                                ("ours row groups 128K", {"row_group_rows": 128 * 1024}),
                                ("ours row groups 128K, 1 convert worker",
                                 {"row_group_rows": 128 * 1024, "convert_workers": 1}),
                                ("ours row groups 1M", {"row_group_rows": 1024 * 1024}),
                                ("ours block 256K", {"block_size": 256 << 10}),
                                ("ours block 4M", {"block_size": 4 << 20}),
                            ]:
                                variants.append((label, "ours", opts))
                    elif method == "ours_s3":
                        variants.append(("ours → S3 (moto, 127.0.0.1)", "ours_s3", {}))
                    elif method == "ours_iceberg":
                        variants.append(("ours → Iceberg (SQLite catalog, local)", "ours_iceberg", {}))
                    else:
                        variants.append(({"pandas": "pandas read_csv+to_parquet (local)",
                                          "dictreader": "csv.DictReader → list (local)",
                                          "pyarrow": "pyarrow open_csv→ParquetWriter (local)"}[method],
                                         method, {}))
                for label, method, opts in variants:
                    work = root / f"work-{size_text}-{len(rows_out)}"
                    work.mkdir()
                    payload: dict = {"paths": gen["paths"], "out_dir": str(work)}
                    extrapolate = 1.0
                    env: dict[str, str] = {}
                    if method in OURS:
                        payload.update(url=sim.url, token_url=sim.token_url, data_dir=str(work),
                                       execution_id=land_via_simulator(sim, gen["paths"]), options=opts,
                                       target={"ours": "local", "ours_s3": "s3", "ours_iceberg": "iceberg"}[method])
                    if method == "ours_s3":
                        payload["results_uri"] = f"s3://{bucket}/lake-{len(rows_out)}"
                        env = s3_env
                    if method == "ours_iceberg":
                        payload["iceberg"] = {"catalog_uri": f"sqlite:///{work / 'catalog.db'}",
                                              "warehouse": str(work / "warehouse")}
                    if method == "dictreader":
                        cap = args.dictreader_cap if size > 200 * 10**6 else 0
                        payload["cap"] = cap
                        if cap and cap < gen["rows"]:
                            extrapolate = gen["rows"] / cap
                    res = run_child(method, payload, env)
                    if method == "ours_s3":
                        res["objects_left"] = empty_bucket(s3_client, bucket)
                    shutil.rmtree(work, ignore_errors=True)
                    seconds = res["seconds"] * extrapolate
                    exact = res.get("schema_exact")
                    if method in OURS:
                        exact = exact and res["rows"] == gen["rows"] and (
                            res["impressions_sum"] == gen["impressions_sum"]
                            and res["campaign_id_nulls"] == gen["campaign_id_nulls"])
                    elif method in ("pyarrow", "pandas"):
                        exact = exact and res["rows"] == gen["rows"]
                    mark = "~" if extrapolate != 1.0 else ""
                    rss = res["peak_rss_mb"] * extrapolate
                    note = ""
                    if method == "pandas" and not exact:
                        dt = res.get("dtypes", {})
                        note = (f"campaign_id {dt.get('campaign_id')}, date {dt.get('date')}, "
                                f"ts {dt.get('first_impression_time')}")
                    if method == "dictreader":
                        note = (f"{res['rows']:,} rows measured, x{extrapolate:.1f}" if extrapolate != 1.0
                                else "all rows") + "; every value a str"
                    if method in OURS:
                        note = f"download {res['download_seconds']:.1f}s, parquet {res['parquet_bytes'] / 1e6:.0f} MB"
                        if method != "ours":
                            note += f", {'upload' if method == 'ours_s3' else 'commit'} {res['upload_seconds']:.1f}s"
                        if method == "ours_s3":
                            note += f", in the bucket after: {res['objects_left']}"
                        note += f"; peak RSS before the read-back check {res['landing_peak_mb']:.0f} MB"
                    note += f"{'; ' if note else ''}wait4 ru_maxrss {res['wait4_maxrss_mb'] * extrapolate:.0f} MB"
                    target = ""
                    if method in OURS:
                        target = f"< {RSS_TARGET_MB} MB: " + ("met" if rss < RSS_TARGET_MB else "MISSED")
                    rows_out.append((size_text, label, mb / seconds, seconds, mark, rss, res["cpu_seconds"],
                                     "yes" if exact else "no", target, note))
                    print(f"  {label:42s} {mark}{mb / seconds:8.1f} MB/s  {mark}{seconds:7.1f}s  "
                          f"peak RSS {mark}{rss:7.0f} MB  cpu {res['cpu_seconds']:6.1f}s  "
                          f"types exact: {'yes' if exact else 'no'}  {target}  {note}", flush=True)
    finally:
        if args.keep:
            print(f"\nkept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

    print("\n| size | method | MB/s | seconds | peak RSS MB | CPU s | types exact | peak RSS target | notes |")
    print("|---|---|---:|---:|---:|---:|---|---|---|")
    for size_text, label, mbs, secs, mark, rss, cpu, exact, target, note in rows_out:
        print(f"| {size_text} | {label} | {mark}{mbs:.1f} | {mark}{secs:.1f} | {mark}{rss:.0f} | {cpu:.1f} | "
              f"{exact} | {target} | {note} |")
    pandas_rate = {s: r[2] for r in rows_out for s in [r[0]] if r[1].startswith("pandas")}
    for size_text, label, mbs, *_ in rows_out:
        if label.startswith("ours (") and size_text in pandas_rate:
            print(f"{size_text}: ours / pandas throughput = {mbs / pandas_rate[size_text]:.2f}x")
    floor = {r[0]: r[2] for r in rows_out if r[1].startswith("pyarrow")}
    for size_text, label, mbs, *_ in rows_out:
        if label.startswith("ours") and size_text in floor:
            print(f"{size_text}: {label} / pyarrow floor throughput = {mbs / floor[size_text]:.2f}x")


if __name__ == "__main__":
    main()
