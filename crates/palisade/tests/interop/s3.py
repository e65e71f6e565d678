"""The object store's side of the off-site backup tests, through boto3 (AWS's SDK).

    s3.py ENDPOINT mkbucket BUCKET
    s3.py ENDPOINT list BUCKET PREFIX        -> one key per line
    s3.py ENDPOINT sha256 BUCKET KEY         -> the object's SHA-256, hex
"""
import hashlib
import sys

import boto3

endpoint, command, bucket, *rest = sys.argv[1:]
s3 = boto3.client(
    "s3",
    endpoint_url=endpoint,
    region_name="us-east-1",
    aws_access_key_id="palisade-test",
    aws_secret_access_key="palisade-test-secret",
)
if command == "mkbucket":
    s3.create_bucket(Bucket=bucket)
elif command == "list":
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=rest[0])
    for page in pages:
        for item in page.get("Contents", []):
            print(item["Key"])
elif command == "sha256":
    body = s3.get_object(Bucket=bucket, Key=rest[0])["Body"]
    digest = hashlib.sha256()
    for chunk in iter(lambda: body.read(1 << 16), b""):
        digest.update(chunk)
    print(digest.hexdigest())
else:
    sys.exit(f"unknown command {command}")
