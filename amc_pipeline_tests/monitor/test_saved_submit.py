"""A saved workflow kept here runs by its workflowId, with `parameter_values` rendered for each window."""

from amc_pipeline.sync import apply, plan
from amc_pipeline_tests.harness import rig

SAVED = {"name": "reach", "sql": "SELECT campaign FROM dsp_impressions WHERE day >= CUSTOM_PARAMETER('since')",
         "saved_workflow": True, "parameter_values": {"since": "{window_start_date}", "label": "{partition_key} in "
                                                       "{timezone}", "fixed": "x{{y}}"}}


def test_saved_workflow_executions_name_the_workflow_and_render_parameters(tmp_path):
    with rig([SAVED], database_url=f"sqlite:///{tmp_path / 's.db'}") as r:
        apply(r.client, r.config, plan(r.client, r.config))
        r.request("reach", "2026-10-05")
        r.drive(lambda: r.status("reach", "2026-10-05") == "SUCCESS")
        [execution] = r.sim.executions()
        assert execution["workflowId"] == "reach"  # the saved workflow, not an ad hoc copy of its SQL
        assert "workflow" not in execution and execution["executionCategory"] == "AD_HOC"
        assert execution["parameterValues"] == {"since": "2026-10-05", "label": "2026-10-05 in UTC", "fixed": "x{y}"}
        assert r.store.get_live("reach", "2026-10-05").attempt.origin is None  # ours
