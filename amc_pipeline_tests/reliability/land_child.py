"""Run in a child process by test_kill_download: land one execution, so the test can SIGKILL it.

argv: api_url token_url data_dir workflow partition_key amc_execution_id output_columns_json
"""

import json
import sys

from amc_pipeline.amc.client import AmcClient, AmcCredentials
from amc_pipeline.config import InstanceConfig
from amc_pipeline.results.landing import land_execution

if __name__ == "__main__":
    api_url, token_url, data_dir, workflow, key, amc_id, columns = sys.argv[1:8]
    instance = InstanceConfig(instance_id="amcdemo001", advertiser_id="ENTITY1AA1AA11AAA1",
                              marketplace_id="ATVPDKIKX0DER")
    creds = AmcCredentials(client_id="sim-client-id", client_secret="sim-client-secret",
                           refresh_token="sim-refresh-token", token_url=token_url)
    with AmcClient(api_url, creds) as client:
        land_execution(client, instance, amc_id, json.loads(columns), data_dir=data_dir, workflow=workflow,
                       partition_key=key, downloader_options={"workers": 1})
    print("LANDED", flush=True)
