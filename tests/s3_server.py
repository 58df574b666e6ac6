"""S3 for the archive tests: moto in server mode on 127.0.0.1, with IAM users whose permissions it can enforce."""
from __future__ import annotations

import contextlib
import json
import logging

import boto3
import requests
from moto.server import ThreadedMotoServer

REGION = "us-east-1"
ANY_KEY = "testing"   # moto accepts any key while it does not enforce IAM; not a secret


class S3Server:
    def __init__(self):
        logging.getLogger("werkzeug").setLevel(logging.WARNING)   # no access log line per request
        self._moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._moto.start()
        host, port = self._moto.get_host_and_port()
        self.endpoint_url = f"http://{host}:{port}"

    def client(self, service: str = "s3", key_id: str = ANY_KEY, secret: str = ANY_KEY):
        return boto3.client(service, region_name=REGION, endpoint_url=self.endpoint_url, aws_access_key_id=key_id,
                            aws_secret_access_key=secret)

    def environment(self, key_id: str = ANY_KEY, secret: str = ANY_KEY) -> dict[str, str]:
        """What ``nasiko-nb`` needs to reach this server through the standard AWS chain."""
        return {"NASIKO_S3_ENDPOINT_URL": self.endpoint_url, "AWS_ACCESS_KEY_ID": key_id,
                "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": REGION}

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def user(self, name: str, statements: list[dict]) -> tuple[str, str]:
        """An IAM user allowed ``statements`` (none: allowed nothing); its access key id and secret."""
        iam = self.client("iam")
        iam.create_user(UserName=name)
        if statements:
            iam.put_user_policy(UserName=name, PolicyName="archive", PolicyDocument=json.dumps(
                {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **s} for s in statements]}))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    @contextlib.contextmanager
    def iam_enforced(self):
        """Check signatures and policies on every request (moto's process-wide switch), then stop again."""
        previous = requests.post(f"{self.endpoint_url}/moto-api/reset-auth", data=b"0", timeout=10).json()
        try:
            yield
        finally:
            requests.post(f"{self.endpoint_url}/moto-api/reset-auth", timeout=10,
                          data=str(previous["PREVIOUS_INITIAL_NO_AUTH_ACTION_COUNT"]).encode())

    def stop(self) -> None:
        self._moto.stop()


@contextlib.contextmanager
def s3_with_bucket(bucket: str):
    """A fresh moto S3 server holding one empty bucket, stopped afterwards."""
    server = S3Server()
    try:
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        server.stop()
