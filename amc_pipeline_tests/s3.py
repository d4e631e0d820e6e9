"""A real S3 API on 127.0.0.1 for tests: moto's ThreadedMotoServer on a free port.

Why a server and not `mock_aws`: the code under test talks S3 through pyarrow's C++ filesystem
(pyiceberg's FileIO) as well as boto3; only a real HTTP endpoint is seen by both.

    with s3_server() as s3:                 # s3.endpoint_url, s3.client (boto3 S3 client)
        s3.client.create_bucket(Bucket="lake")
        for name, value in aws_env(s3.endpoint_url).items():
            monkeypatch.setenv(name, value)

The server is stopped in a finally, even when the body fails.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

FAKE_ACCESS_KEY_ID = "AKIAFAKETESTKEY00000"
FAKE_SECRET_ACCESS_KEY = "fake-secret-access-key-for-moto-only"
DEFAULT_REGION = "us-east-1"


class S3Server(NamedTuple):
    endpoint_url: str  # http://127.0.0.1:<port>
    client: Any  # a boto3 S3 client bound to the server, fake credentials


def aws_env(endpoint_url: str, region: str = DEFAULT_REGION) -> dict[str, str]:
    """The standard AWS environment variables pointing at the test server with fake credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_ACCESS_KEY_ID": FAKE_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": FAKE_SECRET_ACCESS_KEY,
        "AWS_REGION": region,
        "AWS_DEFAULT_REGION": region,
    }


@contextmanager
def s3_server(region: str = DEFAULT_REGION) -> Iterator[S3Server]:
    """Start moto's S3 server on 127.0.0.1 (free port), yield (endpoint_url, boto3 client), stop it."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=FAKE_ACCESS_KEY_ID,
            aws_secret_access_key=FAKE_SECRET_ACCESS_KEY,
        )
        yield S3Server(endpoint, client)
    finally:
        server.stop()
