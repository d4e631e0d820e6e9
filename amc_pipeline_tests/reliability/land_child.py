"""Run in a child process by test_kill_download: land one execution, so the test can SIGKILL it.

argv: api_url token_url data_dir workflow partition_key amc_execution_id output_columns_json [results_uri]
(test_kill_upload passes an s3:// results URI; the AWS_* environment points at the S3 server)
"""

import json
import sys

from amc_pipeline.amc.client import AmcClient, AmcCredentials
from amc_pipeline.config import InstanceConfig
from amc_pipeline.results.landing import land_execution
from amc_pipeline_tests.constants import CREDENTIALS, INSTANCE

if __name__ == "__main__":
    api_url, token_url, data_dir, workflow, key, amc_id, columns = sys.argv[1:8]
    results = sys.argv[8] if len(sys.argv) > 8 else None
    instance = InstanceConfig(**INSTANCE)
    creds = AmcCredentials(**CREDENTIALS, token_url=token_url)
    with AmcClient(api_url, creds) as client:
        land_execution(client, instance, amc_id, json.loads(columns), data_dir=data_dir, workflow=workflow,
                       partition_key=key, downloader_options={"workers": 1}, results=results)
    print("LANDED", flush=True)
