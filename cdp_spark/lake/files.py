"""The lake's files that are not Delta tables (API keys, erasure requests, the tombstone salt...), on local disk or
object storage alike, through one type: `LakeFiles`, over pyarrow's file systems (S3, GCS, local).

A location is always a string (a local path or a URI such as ``s3://bucket/lake``), never ``pathlib.Path``:
``Path("s3://b/lake")`` is a *local relative* path, the defect this module exists to prevent.

``lake.storage_options`` are delta-rs' names (``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``AWS_ACCESS_KEY_ID``...); the
same settings reach pyarrow here, so tables and files always live on the same store with the same credentials.

Example:
    >>> import tempfile
    >>> files = LakeFiles(tempfile.mkdtemp())
    >>> files.write_text("_system/a.txt", "hello")
    >>> files.read_text("_system/a.txt"), files.list("_system")
    ('hello', ['a.txt'])
"""
from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING, Iterator, Mapping
from urllib.parse import urlparse

import pyarrow.fs as pafs

from cdp_spark.lake.errors import LakeError
from cdp_spark.locations import is_remote, join, storage_option

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

    from cdp_spark.config import CdpConfig


class LakeFilesError(LakeError):
    """A file under the lake root could not be read, written or listed; the message names the location."""


def s3_settings(options: Mapping[str, str]) -> dict[str, object]:
    """pyarrow ``S3FileSystem`` arguments from delta-rs style ``lake.storage_options`` (unset ones fall back to
    the AWS default chain: environment, profile, instance role).

    Example:
        >>> s3_settings({"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ALLOW_HTTP": "true"})
        {'endpoint_override': '127.0.0.1:9000', 'scheme': 'http'}
    """
    out: dict[str, object] = {}
    endpoint = storage_option(options, "AWS_ENDPOINT_URL", "AWS_ENDPOINT", "ENDPOINT_URL", "ENDPOINT")
    if endpoint:
        url = urlparse(endpoint)
        out["endpoint_override"] = url.netloc + url.path.rstrip("/")
        out["scheme"] = url.scheme
    region = storage_option(options, "AWS_REGION", "AWS_DEFAULT_REGION", "REGION")
    if region:
        out["region"] = region
    key, secret = storage_option(options, "AWS_ACCESS_KEY_ID", "ACCESS_KEY_ID"), storage_option(
        options, "AWS_SECRET_ACCESS_KEY", "SECRET_ACCESS_KEY")
    if key and secret:
        out["access_key"], out["secret_key"] = key, secret
        token = storage_option(options, "AWS_SESSION_TOKEN", "SESSION_TOKEN")
        if token:
            out["session_token"] = token
    return out


def storage_option_problems(root: str, options: Mapping[str, str]) -> list[str]:
    """What is wrong with ``lake.storage_options`` for ``root`` (empty: nothing): each item names the key.

    Example:
        >>> storage_option_problems("s3://b/lake", {"AWS_ACCESS_KEY_ID": "k"})
        ['lake.storage_options.AWS_SECRET_ACCESS_KEY: missing; expected it beside AWS_ACCESS_KEY_ID (or neither, for the AWS default credential chain)']
    """
    if not root.startswith(("s3://", "s3a://")):
        return []
    problems = []
    key, secret = storage_option(options, "AWS_ACCESS_KEY_ID"), storage_option(options, "AWS_SECRET_ACCESS_KEY")
    if bool(key) != bool(secret):
        have, lack = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if key else ("AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
        problems.append(f"lake.storage_options.{lack}: missing; expected it beside {have} (or neither, for the AWS "
                        f"default credential chain)")
    endpoint = storage_option(options, "AWS_ENDPOINT_URL", "AWS_ENDPOINT")
    if endpoint:
        url = urlparse(endpoint)
        if url.scheme not in ("http", "https") or not url.netloc:
            problems.append(f"lake.storage_options.AWS_ENDPOINT_URL: {endpoint!r}; expected http(s)://host[:port]")
        elif url.scheme == "http" and (storage_option(options, "AWS_ALLOW_HTTP") or "").lower() != "true":
            problems.append(f"lake.storage_options.AWS_ALLOW_HTTP: expected 'true' for the plain-http endpoint "
                            f"{endpoint!r} (delta-rs refuses http otherwise)")
    if storage_option(options, "AWS_S3_LOCKING_PROVIDER"):
        problems.append("lake.storage_options.AWS_S3_LOCKING_PROVIDER: delta-rs 1.x has no DynamoDB log store and "
                        "ignores it; expected it unset (conditional puts keep concurrent commits safe)")
    if (storage_option(options, "AWS_S3_ALLOW_UNSAFE_RENAME") or "").lower() == "true":
        problems.append("lake.storage_options.AWS_S3_ALLOW_UNSAFE_RENAME: 'true' lets two writers overwrite each "
                        "other's commit; expected it unset (conditional puts keep concurrent commits safe)")
    return problems


def delta_storage_options(root: str, options: Mapping[str, str] | None) -> dict[str, str]:
    """delta-rs storage options for ``root``: on S3, conditional puts (``If-None-Match``) make each commit
    put-if-absent, so of two writers racing for one version exactly one wins and the other retries on the new
    snapshot. Kept as configured when ``conditional_put`` is set explicitly.

    Example:
        >>> delta_storage_options("s3://b/lake", {})
        {'conditional_put': 'etag'}
    """
    out = dict(options or {})
    if root.startswith(("s3://", "s3a://")) and not storage_option(out, "CONDITIONAL_PUT", "AWS_CONDITIONAL_PUT"):
        out["conditional_put"] = "etag"
    return out


def filesystem(location: str, options: Mapping[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The pyarrow file system holding ``location`` and the path inside it.

    Example:
        >>> filesystem("/tmp")[1]
        '/tmp'
    """
    if not is_remote(location):
        return pafs.LocalFileSystem(), os.path.abspath(location.removeprefix("file://"))
    url = urlparse(location)
    if url.scheme in ("s3", "s3a"):
        return pafs.S3FileSystem(**s3_settings(options or {})), (url.netloc + url.path).rstrip("/")
    try:
        return pafs.FileSystem.from_uri(location)
    except (OSError, ValueError) as exc:
        raise LakeFilesError(f"{location}: no file system for this URI ({exc})") from None


class LakeFiles:
    """Files under one folder (by default the lake root), local or on object storage.

    Writes are whole-file: a local file is written beside and renamed into place (fsync'd); an object is visible
    only once its upload completes. ``private`` files (secrets, clear identifiers) get mode 0600 locally; on object
    storage their protection is the bucket's policy and encryption (see docs/operations.md).

    Example:
        >>> files = LakeFiles.of(config)                   # doctest: +SKIP
        >>> files.read_text("_system/privacy/salt")         # doctest: +SKIP
    """

    def __init__(self, root: str | os.PathLike[str], storage_options: Mapping[str, str] | None = None):
        root = os.fspath(root)
        self.root = root.rstrip("/") if is_remote(root) else os.path.abspath(root.removeprefix("file://"))
        self.storage_options = dict(storage_options or {})
        self.fs, self._base = filesystem(self.root, self.storage_options)
        self.remote = not isinstance(self.fs, pafs.LocalFileSystem)

    @classmethod
    def of(cls, config: "CdpConfig", location: str | None = None) -> "LakeFiles":
        """The files under ``location`` (default: the lake root) with the lake's storage options."""
        return cls(location or config.lake.root, config.lake.storage_options)

    def uri(self, relative: str = "") -> str:
        """The full location of ``relative`` (for messages and for the readers that take a URI)."""
        return join(self.root, relative)

    def _path(self, relative: str) -> str:
        return join(self._base, relative) if relative else self._base

    def _fail(self, action: str, relative: str, exc: Exception) -> LakeFilesError:
        hint = " (check lake.root and lake.storage_options)" if self.remote else ""
        return LakeFilesError(f"cannot {action} {self.uri(relative)}: {type(exc).__name__}: {exc}{hint}")

    def exists(self, relative: str) -> bool:
        try:
            return self.fs.get_file_info(self._path(relative)).type != pafs.FileType.NotFound
        except OSError as exc:
            raise self._fail("look up", relative, exc) from None

    def read_bytes(self, relative: str) -> bytes:
        try:
            with self.fs.open_input_stream(self._path(relative), compression=None) as f:
                return f.read()
        except FileNotFoundError:
            raise
        except OSError as exc:
            if not self.exists(relative):
                raise FileNotFoundError(self.uri(relative)) from None
            raise self._fail("read", relative, exc) from None

    def read_text(self, relative: str) -> str:
        return self.read_bytes(relative).decode("utf-8")

    def open_input(self, relative: str) -> "pa.NativeFile":
        """A seekable reader of ``relative`` (Parquet footers are read without downloading the whole object)."""
        try:
            return self.fs.open_input_file(self._path(relative))
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise self._fail("read", relative, exc) from None

    def write_bytes(self, relative: str, data: bytes, *, private: bool = False) -> None:
        """Replace ``relative`` with ``data`` as a whole (readers never see a partial file)."""
        path = self._path(relative)
        try:
            if self.remote:
                with self.fs.open_output_stream(path, compression=None) as f:
                    f.write(data)
                return
            folder = os.path.dirname(path)
            os.makedirs(folder, exist_ok=True)
            if private:
                os.chmod(folder, 0o700)
            tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            fsync_path(folder)
        except OSError as exc:
            raise self._fail("write", relative, exc) from None

    def write_text(self, relative: str, text: str, *, private: bool = False) -> None:
        self.write_bytes(relative, text.encode("utf-8"), private=private)

    def create(self, relative: str, data: bytes, *, private: bool = False) -> bool:
        """Write ``relative`` only if it does not exist yet; False when it already did (then it is left alone).

        Locally this is atomic (a hard link). pyarrow has no conditional put, so on object storage two processes
        creating the same new file in the same instant may both write it: the last upload wins and both re-read
        it. Create such files once, at setup, or set their value in config (`privacy.tombstone_salt`).
        """
        if self.exists(relative):
            return False
        if self.remote:
            self.write_bytes(relative, data, private=private)
            return True
        path = self._path(relative)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.link(tmp, path)  # atomic create-if-absent: a racing process keeps the first file
            return True
        except FileExistsError:
            return False
        finally:
            os.unlink(tmp)

    def delete(self, relative: str, *, scrub: bool = False) -> None:
        """Remove ``relative`` (no error when absent). ``scrub`` first overwrites a local file with zeros, so clear
        values do not linger on disk (an object store drops the object whole)."""
        path = self._path(relative)
        try:
            if not self.remote and scrub and os.path.isfile(path):
                size = os.path.getsize(path)
                with open(path, "r+b") as f:
                    f.write(b"\0" * size)
                    f.flush()
                    os.fsync(f.fileno())
            if self.exists(relative):
                self.fs.delete_file(path)
        except OSError as exc:
            raise self._fail("delete", relative, exc) from None

    def modified(self, relative: str) -> float:
        """When ``relative`` was last written (seconds since the epoch)."""
        try:
            info = self.fs.get_file_info(self._path(relative))
        except OSError as exc:
            raise self._fail("look up", relative, exc) from None
        if info.type == pafs.FileType.NotFound:
            raise FileNotFoundError(self.uri(relative))
        return (info.mtime_ns or 0) / 1e9

    def stamp(self, relative: str) -> tuple[int, int, int] | None:
        """A value that changes whenever ``relative`` is replaced (inode, mtime, size; no inode on object
        storage), None when it does not exist: a cheap "has it changed" check for cached readers."""
        if not self.remote:
            try:
                st = os.stat(self._path(relative))
            except FileNotFoundError:
                return None
            return st.st_ino, st.st_mtime_ns, st.st_size
        try:
            info = self.fs.get_file_info(self._path(relative))
        except OSError as exc:
            raise self._fail("look up", relative, exc) from None
        return None if info.type == pafs.FileType.NotFound else (0, info.mtime_ns or 0, info.size or 0)

    def list(self, relative: str = "", *, suffix: str = "") -> list[str]:
        """Names of the files directly in folder ``relative`` ending in ``suffix``, sorted ([] when absent)."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self._path(relative), allow_not_found=True))
        except OSError as exc:
            raise self._fail("list", relative, exc) from None
        return sorted(i.base_name for i in infos if i.type == pafs.FileType.File and i.base_name.endswith(suffix))

    def walk(self, relative: str = "") -> Iterator[tuple[str, int]]:
        """(relative path, size) of every file under ``relative``, recursively. A folder that does not exist or
        cannot be listed raises `LakeFilesError`: a caller that must see everything (erasure's verification)
        never mistakes "cannot read" for "empty"."""
        try:
            top = self.fs.get_file_info(self._path(relative))
            if top.type == pafs.FileType.NotFound:
                # an object store has no folders: a prefix without objects is empty, but only in a bucket that exists
                bucket = self._path(relative).split("/", 1)[0]
                if not self.remote or self.fs.get_file_info(bucket).type == pafs.FileType.NotFound:
                    raise FileNotFoundError(self.uri(relative) if self.remote else self._path(relative))
                return
            infos = self.fs.get_file_info(pafs.FileSelector(self._path(relative), recursive=True))
        except OSError as exc:
            raise self._fail("list", relative, exc) from None
        prefix = len(self._base) + 1
        for info in infos:
            if info.type == pafs.FileType.File:
                yield info.path[prefix:], info.size or 0


def fsync_path(path: str | os.PathLike[str]) -> None:
    """fsync a file, or a folder (so that a rename or a file created inside it survives a power cut).

    Example:
        >>> import tempfile
        >>> fsync_path(tempfile.mkdtemp())
    """
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
