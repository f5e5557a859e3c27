"""The S3 backend, through boto3 (the `s3` extra): credentials, region and endpoint come
from the standard AWS_* variables and files (AWS_ENDPOINT_URL for an S3-compatible server),
uploads stream as multipart uploads of bounded parts, reads are ranged GETs, and presigned URLs
are boto3's own. docs/storage.md says why boto3."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterable
from typing import Any, BinaryIO, cast

from falbridge.worker.storage.backend import StorageUnavailable, StoredObjectMissing

# Each part is held in memory while it uploads (5 MiB: S3's smallest part but the last).
PART_BYTES = 5 * 1024 * 1024
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NotFound"})


def _boto() -> tuple[Any, Any, Any]:
    try:
        import boto3
        import botocore.config
        import botocore.exceptions
    except ImportError:
        raise StorageUnavailable(
            "FALBRIDGE_STORAGE_URL is s3://, which needs boto3: pip install 'falbridge[s3]'"
        ) from None
    return boto3, botocore.config, botocore.exceptions


class S3Backend:
    def __init__(self, bucket: str, prefix: str = "") -> None:
        boto3, botocore_config, self._errors = _boto()
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        # A short connect timeout and few retries: the storing task has its own retries.
        settings = botocore_config.Config(
            connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"}
        )
        self.client = boto3.session.Session().client("s3", config=settings)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, key: str) -> str:
        return self.prefix + key

    def _unavailable(self, exc: Exception) -> StorageUnavailable:
        return StorageUnavailable(f"S3 {self.url}: {type(exc).__name__}: {str(exc)[:200]}")

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """One PUT for a small object; a multipart upload of PART_BYTES parts otherwise,
        each part sent as soon as it is full (aborted if anything fails on the way)."""
        full_key, part, size = self._key(key), bytearray(), 0
        upload: _Multipart | None = None
        try:
            for chunk in chunks:
                part += chunk
                size += len(chunk)
                if len(part) >= PART_BYTES:
                    upload = upload or _Multipart(self.client, self.bucket, full_key)
                    upload.send(part)
                    part = bytearray()
            if upload is None:
                self.client.put_object(Bucket=self.bucket, Key=full_key, Body=bytes(part))
            else:
                if part:
                    upload.send(part)
                upload.complete()
        except (self._errors.BotoCoreError, self._errors.ClientError) as exc:
            _abort(upload)
            raise self._unavailable(exc) from None
        except BaseException:
            _abort(upload)
            raise
        return size

    def open(self, key: str) -> BinaryIO:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self._errors.ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                raise StoredObjectMissing(key) from None
            raise self._unavailable(exc) from None
        except self._errors.BotoCoreError as exc:
            raise self._unavailable(exc) from None
        raw = _RangedReader(self, self._key(key), int(head["ContentLength"]))
        return cast(BinaryIO, io.BufferedReader(raw, buffer_size=256 * 1024))

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except (self._errors.BotoCoreError, self._errors.ClientError) as exc:
            raise self._unavailable(exc) from None

    def exists(self, key: str) -> bool:
        try:
            self.open(key).close()
        except StoredObjectMissing:
            return False
        return True

    def presigned_url(self, key: str, expires_s: int, disposition: str, content_type: str) -> str | None:
        params = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "ResponseContentDisposition": disposition,
            "ResponseContentType": content_type,
        }
        return str(self.client.generate_presigned_url("get_object", Params=params, ExpiresIn=expires_s))


class _Multipart:
    """One multipart upload, part by part."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key
        self.upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
        self.parts: list[dict[str, Any]] = []

    def send(self, body: bytearray) -> None:
        number = len(self.parts) + 1
        answer = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=body
        )
        self.parts.append({"PartNumber": number, "ETag": answer["ETag"]})

    def complete(self) -> None:
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )


def _abort(upload: _Multipart | None) -> None:
    """Drop a failed upload's parts (S3 keeps them, billed, until aborted); best effort:
    the failure that brought us here is the one to report."""
    if upload is not None:
        with contextlib.suppress(Exception):
            upload.client.abort_multipart_upload(
                Bucket=upload.bucket, Key=upload.key, UploadId=upload.upload_id
            )


class _RangedReader(io.RawIOBase):
    """A seekable reader over one S3 object: each read after a seek opens a ranged GET from
    there, so serving a Range costs only its bytes."""

    def __init__(self, backend: S3Backend, key: str, size: int) -> None:
        self._backend, self._key, self._size = backend, key, size
        self._pos = 0
        self._body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        position = max(0, base + offset)
        if position != self._pos:
            self._drop_body()
            self._pos = position
        return self._pos

    def readinto(self, buffer: Any) -> int:
        if self._pos >= self._size:
            return 0
        if self._body is None:
            self._body = self._get()
        data = self._body.read(len(buffer))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def _get(self) -> Any:
        try:
            answer = self._backend.client.get_object(
                Bucket=self._backend.bucket, Key=self._key, Range=f"bytes={self._pos}-"
            )
        except (self._backend._errors.BotoCoreError, self._backend._errors.ClientError) as exc:
            raise self._backend._unavailable(exc) from None
        return answer["Body"]

    def _drop_body(self) -> None:
        if self._body is not None:
            self._body.close()
            self._body = None

    def close(self) -> None:
        self._drop_body()
        super().close()
