"""Run in a child process by test_kill_pack_landing: land one pack, so the test can SIGKILL it mid-way.

argv: api_url token_url data_dir database_url workflow_json leader_attempt_id
"""

import json
import sys
from pathlib import Path

from amc_pipeline.amc.client import AmcClient, AmcCredentials
from amc_pipeline.monitor.pack_landing import land_pack
from amc_pipeline.store.store import ExecutionStore
from amc_pipeline_tests.constants import CREDENTIALS
from amc_pipeline_tests.harness import pipeline_config

if __name__ == "__main__":
    api_url, token_url, data_dir, database_url, workflow_json, leader = sys.argv[1:7]
    config = pipeline_config([json.loads(workflow_json)])
    workflow = config.workflows[0]
    creds = AmcCredentials(**CREDENTIALS, token_url=token_url)
    with AmcClient(api_url, creds) as client, ExecutionStore(database_url) as store:
        land_pack(store, client, config.instance(workflow.instance_id), workflow, int(leader), config.monitor,
                  data_dir=Path(data_dir))
    print("LANDED", flush=True)
