"""The rehearsal's stand-in for the cluster's MinIO: moto's S3 server behind an access-key check.

Runs inside the rehearsal's S3 image (``python /opt/rehearsal/s3server.py``), never imported by the
package. moto accepts any credentials, so a request signed with another access key than the
server's own (``AWS_ACCESS_KEY_ID`` in its environment, from the same Secret-like env file) is
answered ``403 InvalidAccessKeyId`` naming the bucket, as MinIO answers it. The signature itself is
not verified (moto does not, and a second SigV4 implementation is not worth it here).
"""

from __future__ import annotations

import os
import re
from xml.sax.saxutils import escape

CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")
QUERY_CREDENTIAL = re.compile(r"X-Amz-Credential=([^/&%]+)")


def guarded(app, access_key: str):
    """A WSGI app that answers 403 unless the request is signed with ``access_key``."""

    def wsgi(environ, start_response):
        match = (CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
                 or QUERY_CREDENTIAL.search(environ.get("QUERY_STRING", "")))
        if match is None or match.group(1) != access_key:
            bucket = environ.get("PATH_INFO", "/").lstrip("/").split("/", 1)[0]
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>InvalidAccessKeyId</Code>"
                    "<Message>The access key Id you provided does not exist in our records.</Message>"
                    f"<BucketName>{escape(bucket)}</BucketName></Error>").encode()
            start_response("403 Forbidden", [("Content-Type", "application/xml"),
                                             ("Content-Length", str(len(body)))])
            return [body]
        return app(environ, start_response)

    return wsgi


def main() -> None:
    from moto.moto_server.werkzeug_app import create_backend_app
    from werkzeug.serving import run_simple

    access_key = os.environ.pop("AWS_ACCESS_KEY_ID", "")
    os.environ.pop("AWS_SECRET_ACCESS_KEY", None)  # moto needs neither; keep them out of its environment
    if not access_key:
        raise SystemExit("s3server: AWS_ACCESS_KEY_ID is not set")
    app = guarded(create_backend_app("s3"), access_key)  # S3 only: no dispatch on the Host header
    run_simple("0.0.0.0", int(os.environ.get("S3_PORT", "9000")), app, threaded=True)


if __name__ == "__main__":
    main()
