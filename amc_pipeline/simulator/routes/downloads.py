"""Result downloads: `downloadUrls` hands out pre-signed S3 URLs, `/_s3/...` serves them.

The URLs point at the simulator's own host and carry a real HMAC signature and expiry, so the
client's handling of expired, tampered or leaked URLs meets what S3 would answer (XML errors).
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from urllib.parse import quote, urlencode

import anyio
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from amc_pipeline.simulator.results import metadata_document
from amc_pipeline.simulator.routes.auth import authorize
from amc_pipeline.simulator.routes.executions import record_for
from amc_pipeline.simulator.routes.responses import amc_error, amc_json, expired_response, s3_error
from amc_pipeline.simulator.state import SimulatorState

S3_BUCKET = "amc-sim-results"


class _ResultFileResponse(FileResponse):
    """Result files in 1 MiB chunks: Starlette's 64 KiB default costs a thread hop per chunk, which made
    the simulator, not the client, the bottleneck of a 1 GB download."""

    chunk_size = 1024 * 1024


class DownloadRoutes:
    """`GET .../workflowExecutions/{id}/downloadUrls` and the pre-signed objects under `/_s3/`."""

    def __init__(self, state: SimulatorState) -> None:
        self.state = state

    def routes(self) -> list[Route]:
        return [
            Route(
                "/amc/reporting/{instanceId}/workflowExecutions/{executionId}/downloadUrls",
                self.download_urls,
                methods=["GET"],
            ),
            Route("/_s3/{rest:path}", self.s3_object, methods=["GET"]),
        ]

    async def download_urls(self, request: Request) -> Response:
        instance, denied = authorize(self.state, request)
        if denied:
            return denied
        record = record_for(self.state, instance, request.path_params["executionId"])
        if isinstance(record, Response):
            return record
        status, _ = self.state.status_of(record, self.state.now())
        if status != "SUCCEEDED":
            return amc_error(400, f"Workflow execution {record['id']} is in status {status}, not SUCCEEDED")
        paths = await anyio.to_thread.run_sync(self.state.result_files, record["id"])
        base = str(request.base_url).rstrip("/")
        urls = [self.presign(base, instance, record["id"], p.name) for p in paths]
        meta = [self.presign(base, instance, record["id"], p.stem + ".metadata.json") for p in paths]
        return amc_json({"downloadUrls": urls, "metadataDownloadUrls": meta})

    def presign(self, base: str, instance: str, execution_id: str, name: str) -> str:
        path = f"/_s3/{S3_BUCKET}/{instance}/{execution_id}/{name}"
        now = self.state.now()
        amz_date = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%SZ")
        expires = str(int(self.state.config.url_ttl_seconds))
        query = {
            "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
            "X-Amz-Credential": f"ASIASIMULATOR/{amz_date[:8]}/us-east-1/s3/aws4_request",
            "X-Amz-Date": amz_date,
            "X-Amz-Expires": expires,
            "X-Amz-SignedHeaders": "host",
            "X-Amz-Signature": self.state.sign(path, amz_date, expires),
        }
        with self.state.lock:
            self.state.issued_signatures.append(query["X-Amz-Signature"])
        return base + quote(path) + "?" + urlencode(query)

    async def s3_object(self, request: Request) -> Response:
        path = request.url.path
        q = request.query_params
        amz_date, expires, signature = q.get("X-Amz-Date"), q.get("X-Amz-Expires"), q.get("X-Amz-Signature")
        if not amz_date or not expires or not signature:
            return s3_error("AccessDenied", "Query-string authentication requires the Signature, Expires and Date")
        expected = self.state.sign(path, amz_date, expires)
        if not hmac.compare_digest(expected, signature):
            return s3_error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        try:
            signed_at = datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC).timestamp()
            ttl = int(expires)
        except ValueError:
            return s3_error("AccessDenied", "Invalid date")
        now = self.state.now()
        if now > signed_at + ttl:
            return expired_response(signed_at, ttl, now)
        parts = path.split("/")
        if len(parts) != 6:
            return s3_error("NoSuchKey", "The specified key does not exist.", 404)
        _, _, _bucket, _instance, execution_id, name = parts
        try:
            files = await anyio.to_thread.run_sync(self.state.result_files, execution_id)
        except KeyError:
            return s3_error("NoSuchKey", "The specified key does not exist.", 404)
        for file_path in files:
            if name == file_path.name:
                return _ResultFileResponse(file_path, media_type="text/csv", content_disposition_type="attachment")
            if name == file_path.stem + ".metadata.json":
                record = self.state.get_record(execution_id)
                return Response(
                    metadata_document(execution_id, record["columns"] if record else [], file_path),
                    media_type="application/json",
                )
        return s3_error("NoSuchKey", "The specified key does not exist.", 404)
