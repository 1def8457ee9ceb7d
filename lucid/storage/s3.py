"""The S3 blob backend: each blob an object in one bucket of an S3-compatible server.

Write-once is the server's conditional create: PutObject (and, for large blobs,
CompleteMultipartUpload) with `If-None-Match: *`; 412 PreconditionFailed means another
write got there first, so `put` returns False and the stored bytes stand. Amazon S3 and
SeaweedFS >= 4.17 (the server `lucid up --blobs s3` and the tests run) check the condition
atomically at commit, so of concurrent puts of one key exactly one creates it. A server
that ignores the header would silently overwrite: the contract tests catch that.

botocore's errors are mapped once, here: a missing object is FileNotFoundError, a server
that cannot be reached (or answers 5xx after botocore's retries) is DependencyUnavailable
("blob store", a transient error: stages retry, the API answers 503), refused credentials
or a missing bucket are ConfigError.

`durable` is ignored: an acknowledged write is the server's to keep. Incomplete multipart
uploads left by a killed worker are invisible to readers; a bucket lifecycle rule that
aborts them after a day reclaims their space.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any, BinaryIO

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from lucid.errors import (
    ConfigError,
    DependencyUnavailable,
    InsufficientStorage,
    TooLarge,
)
from lucid.storage.blobs import BlobData, check_key, check_prefix, check_range, is_key

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

__all__ = ["MULTIPART_THRESHOLD", "PART_SIZE", "S3BlobStore", "s3_client"]

MIB = 1024 * 1024
# Every blob Lucid writes (a chunk is at most 256 MiB) goes in one conditional PUT, which S3
# allows up to 5 GiB: SeaweedFS 4.48 was seen letting two concurrent conditional *multipart*
# completes of one key both succeed, so multipart (8 MiB parts; S3's minimum is 5 MiB) is
# kept for larger objects only, where write-once then rests on the server alone.
MULTIPART_THRESHOLD = 512 * MIB
PART_SIZE = 8 * MIB
DEPENDENCY = "blob store"
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_PRECONDITION = frozenset({"PreconditionFailed", "412"})
# 409: AWS's answer to a conditional write racing another; retried, then 412 settles it.
_CONFLICT = frozenset({"ConditionalRequestConflict", "409"})
_CONFIG = frozenset(
    {"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "NoSuchBucket", "403"}
)
_FULL = frozenset({"XMinioStorageFull", "InsufficientStorage", "QuotaExceeded", "507"})


def s3_client(
    endpoint_url: str | None,
    *,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region: str = "us-east-1",
    timeout_s: float = 10.0,
) -> S3Client:
    """A boto3 S3 client with bounded timeouts and path-style addressing.

    Without a key pair boto3 looks for credentials itself (AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role).
    """
    config = Config(
        connect_timeout=timeout_s,
        read_timeout=timeout_s,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path"},
        max_pool_connections=16,
    )
    client: S3Client = boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key_id,
        aws_secret_access_key=secret_access_key,
        region_name=region,
        config=config,
    )
    return client


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextmanager
def _mapped(key: str, bucket: str) -> Iterator[None]:
    """botocore's errors as Lucid's: see the module docstring."""
    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code == "NoSuchBucket":
            raise ConfigError(
                f"expected S3 bucket {bucket!r} to exist, got NoSuchBucket; create it or "
                "set S3_BUCKET"
            ) from None
        if code in _MISSING:
            raise FileNotFoundError(f"no blob {key!r}") from None
        if code in _CONFIG:
            raise ConfigError(
                f"blob store refused access to {bucket}/{key} ({code}); check "
                "S3_ACCESS_KEY_ID / S3_SECRET_ACCESS_KEY"
            ) from None
        if code in _FULL:
            raise InsufficientStorage(
                f"insufficient storage: the blob store is full ({code}); free space, then retry"
            ) from None
        if code == "EntityTooLarge":
            raise TooLarge(f"blob {key!r} is larger than the blob store accepts") from None
        if status >= 500 or code in ("SlowDown", "ServiceUnavailable", "InternalError"):
            raise DependencyUnavailable(DEPENDENCY, f"{code or status} on {key!r}") from None
        raise
    except BotoCoreError as exc:
        # Connection refused or reset, timeouts, a stream cut mid-read: the server may come
        # back, so this is transient.
        raise DependencyUnavailable(DEPENDENCY, f"{type(exc).__name__}: {exc}") from None


class _BodyReader(io.RawIOBase):
    """A streamed GetObject body as a raw binary reader (wrapped in a BufferedReader)."""

    def __init__(self, body: Any, key: str, bucket: str) -> None:
        self._body = body
        self._key = key
        self._bucket = bucket

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        with _mapped(self._key, self._bucket):
            data = self._body.read(len(view))
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3BlobStore:
    """Blobs as objects in `bucket`, created only if absent (see the module docstring)."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        multipart_threshold: int = MULTIPART_THRESHOLD,
        part_size: int = PART_SIZE,
    ) -> None:
        if part_size < 5 * MIB:
            raise ConfigError(f"expected an S3 part size of at least 5 MiB, got {part_size}")
        self.client = client
        self.bucket = bucket
        self.multipart_threshold = multipart_threshold
        self.part_size = part_size

    def __repr__(self) -> str:
        return f"S3BlobStore(bucket={self.bucket!r})"

    def put(self, key: str, data: BlobData, *, durable: bool = True) -> bool:
        """Store `data` under `key` unless an object is already there (then return False)."""
        check_key(key)
        for _ in range(5):
            try:
                with _mapped(key, self.bucket):
                    if len(data) > self.multipart_threshold:
                        self._put_multipart(key, data)
                    else:
                        self.client.put_object(
                            Bucket=self.bucket, Key=key, Body=bytes(data), IfNoneMatch="*"
                        )
                return True
            except ClientError as exc:
                if _code(exc) in _PRECONDITION:
                    return False
                if _code(exc) not in _CONFLICT:
                    raise
        raise DependencyUnavailable(DEPENDENCY, f"conditional writes of {key!r} kept conflicting")

    def _put_multipart(self, key: str, data: BlobData) -> None:
        view = memoryview(data)
        upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:
            parts: list[CompletedPartTypeDef] = []
            for number, offset in enumerate(range(0, len(view), self.part_size), start=1):
                etag = self.client.upload_part(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload,
                    PartNumber=number,
                    Body=bytes(view[offset : offset + self.part_size]),
                )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
            self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
                IfNoneMatch="*",
            )
        except BaseException:
            # Best effort: a failed abort leaves an invisible upload the lifecycle rule reaps.
            with suppress(ClientError, BotoCoreError):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload)
            raise

    def get(self, key: str) -> bytes:
        """The whole blob."""
        check_key(key)
        with _mapped(key, self.bucket):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def read_range(self, key: str, start: int, length: int) -> bytes:
        """Up to `length` bytes from offset `start`: shorter at the end, empty past it."""
        check_key(key)
        check_range(start, length)
        if length == 0:
            if not self.exists(key):
                raise FileNotFoundError(f"no blob {key!r}")
            return b""
        try:
            with _mapped(key, self.bucket):
                response = self.client.get_object(
                    Bucket=self.bucket, Key=key, Range=f"bytes={start}-{start + length - 1}"
                )
                return response["Body"].read()
        except ClientError as exc:
            if _code(exc) == "InvalidRange":  # the object exists and ends before `start`
                return b""
            raise

    def open(self, key: str) -> BinaryIO:
        """A binary reader streaming the blob; the caller closes it."""
        check_key(key)
        with _mapped(key, self.bucket):
            body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        return io.BufferedReader(_BodyReader(body, key, self.bucket), buffer_size=MIB)  # type: ignore[return-value]

    @contextmanager
    def view(self, key: str) -> Iterator[memoryview]:
        """The whole blob, downloaded: a memoryview over the one buffer the body is read
        into (the single copy; the filesystem backend maps the file instead)."""
        data = self.get(key)
        with memoryview(data) as view:
            yield view

    def exists(self, key: str) -> bool:
        """Whether a blob is stored under `key`."""
        try:
            self.size(key)
        except FileNotFoundError:
            return False
        return True

    def size(self, key: str) -> int:
        """The blob's length in bytes."""
        check_key(key)
        with _mapped(key, self.bucket):
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    def delete(self, key: str) -> None:
        """Remove the blob; a missing blob is not an error."""
        check_key(key)
        with _mapped(key, self.bucket):
            self.client.delete_object(Bucket=self.bucket, Key=key)

    def delete_prefix(self, prefix: str) -> int:
        """Remove every blob whose key starts with `prefix`; return how many."""
        removed = 0
        batch: list[str] = []
        for key in self.keys(prefix):
            batch.append(key)
            if len(batch) == 1000:  # DeleteObjects takes at most 1000 keys
                removed += self._delete_batch(batch)
                batch = []
        if batch:
            removed += self._delete_batch(batch)
        return removed

    def _delete_batch(self, keys: list[str]) -> int:
        with _mapped(keys[0], self.bucket):
            response = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": key} for key in keys], "Quiet": True},
            )
        errors = response.get("Errors", [])
        if errors:
            first = errors[0]
            raise DependencyUnavailable(
                DEPENDENCY,
                f"{len(errors)} of {len(keys)} deletes failed, first {first.get('Key')!r}: "
                f"{first.get('Code')}",
            )
        return len(keys)

    def keys(self, prefix: str) -> Iterator[str]:
        """Keys starting with `prefix`, in string order.

        Amazon S3 lists in byte order, but SeaweedFS walks its folder tree ("a/b/1" before
        "a/b-c"), so the listing is collected and sorted: memory in proportion to the
        number of keys under `prefix` (a session's, in practice).
        """
        check_prefix(prefix)
        return iter(sorted(self._list(prefix)))

    def _list(self, prefix: str) -> Iterator[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        with _mapped(prefix, self.bucket):
            for page in pages:
                for item in page.get("Contents", []):
                    key = item.get("Key", "")
                    if is_key(key):  # objects someone else put in the bucket are not blobs
                        yield key
