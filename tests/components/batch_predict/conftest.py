"""The moto S3 server fixtures of the shared storage tests, for batch prediction from s3://."""

from tests.components.shared.conftest import moto_endpoint, s3_env  # noqa: F401 (pytest fixtures)
