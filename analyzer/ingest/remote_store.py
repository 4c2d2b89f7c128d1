"""Object-store URLs, their filesystems and their listings (the part of analyzer.ingest.remote that talks to
fsspec before anything is fetched).

Which paths are remote, ``file://`` URLs as local paths, ``--storage-option`` values, credentials written
into an ``s3://`` URL, and the listing of every object under a prefix. Every message names a URL through
`shown`: credentials in it never reach a message. fsspec and the store's package (s3fs, gcsfs, ...) are
imported only when a filesystem is made.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import unquote

from analyzer.display import shown
from analyzer.errors import ConfigError, InputError
from analyzer.ingest.skipped import short

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
#: The package each protocol needs, for the one-line error when it is missing.
_EXTRA = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs"}
_PACKAGE = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "hf": "huggingface_hub", "az": "adlfs",
            "abfs": "adlfs", "abfss": "adlfs"}


def is_remote(path: str | Path) -> bool:
    """Whether ``path`` names an object store (``scheme://...``); ``file://`` is a local path."""
    m = _SCHEME.match(str(path))
    return m is not None and m.group(1).lower() != "file"


def protocol(url: str) -> str:
    """The protocol of a remote ``url``, lower-cased (``s3`` for ``S3://bucket``)."""
    return _SCHEME.match(url).group(1).lower()  # type: ignore[union-attr]


def local_path(path: str | Path) -> str | Path:
    """``file:///x/y`` (or ``file://localhost/x/y``) as the local path ``/x/y``; anything else as given. A
    percent-escape (``%20``) is decoded when the path does not exist as written, as a browser writes it."""
    text = str(path)
    if not text.lower().startswith("file://"):
        return path
    rest = text[len("file://"):]
    if rest.lower().startswith("localhost/"):
        rest = rest[len("localhost"):]
    decoded = unquote(rest, errors="surrogateescape")
    return decoded if decoded != rest and not os.path.exists(rest) and os.path.exists(decoded) else rest


def parse_storage_options(items: Sequence[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings as fsspec storage options. true/false, plain integers and JSON objects/lists
    become values of those types (``client_kwargs={"region_name": "eu-west-1"}``); anything else stays a
    string (quote a number in JSON, ``'"123"'``, to keep it one). Values are never echoed: they may be secrets."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--storage-option {key or item[:40]!r}...: expected KEY=VALUE, e.g. "
                              "--storage-option anon=true")
        if value in ("true", "false"):
            out[key] = value == "true"
        elif re.fullmatch(r"-?(0|[1-9][0-9]*)", value):
            out[key] = int(value)
        elif value[:1] in ("{", "[", '"'):
            try:
                out[key] = json.loads(value)
            except ValueError:
                raise ConfigError(f"--storage-option {key}: the value starts like JSON but is not valid JSON") from None
        else:
            out[key] = value
    return out


@dataclass(frozen=True)
class StoredObject:
    """One object as the store's listing names it."""

    name: str  # the store's path, protocol stripped ("bucket/runs/a/events...")
    size: int
    version: str  # ETag, generation or mtime: changes whenever the object is rewritten


def _version(info: Mapping[str, Any]) -> str:
    for key in ("ETag", "etag", "generation", "md5Hash", "blob_id", "sha256", "LastModified", "mtime", "updated",
                "last_modified", "created"):
        if info.get(key) is not None:
            return f"{key}:{info[key]}"
    return ""


def _s3_credentials(url: str, storage_options: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """``s3://KEY:SECRET@bucket/x`` as ``s3://bucket/x`` with ``key``/``secret`` storage options (s3fs would
    take ``KEY:SECRET@bucket`` for the bucket's name); other protocols keep their URL: fsspec reads the
    credentials of http(s), ftp and sftp URLs itself."""
    m = re.match(r"^(s3a?://)([^@/]*(?::[^@]*)?)@(.*)$", url, re.IGNORECASE | re.DOTALL)
    if m is None or any(k in storage_options for k in ("key", "secret")):
        return url, dict(storage_options)
    user, _, password = m.group(2).partition(":")
    found = {"key": unquote(user), **({"secret": unquote(password)} if password else {})}
    return m.group(1) + m.group(3), {**storage_options, **found}


def filesystem(url: str, storage_options: Mapping[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem for ``url`` and its root path. Every message names the URL through `shown`:
    credentials in it never reach a message."""
    scheme = protocol(url)
    given = shown(url)
    url, storage_options = _s3_credentials(url, storage_options)
    try:
        import fsspec
    except ImportError:
        raise InputError(f"{given}: reading from object stores needs fsspec: pip install "
                         f"'steadytrain[{_EXTRA.get(scheme, 's3')}]'") from None
    try:
        return fsspec.core.url_to_fs(url, **storage_options)
    except ImportError:
        extra = f"steadytrain[{_EXTRA[scheme]}]" if scheme in _EXTRA else _PACKAGE.get(scheme, "its fsspec package")
        raise InputError(f"{given}: reading {scheme}:// needs {_PACKAGE.get(scheme, 'an fsspec implementation')}: "
                         f"pip install '{extra}'") from None
    except ValueError as exc:
        if "protocol" in str(exc).lower():
            raise InputError(f"{given}: {scheme}:// is not a protocol fsspec knows ({short(exc, 200)})") from None
        raise InputError(f"{given}: {short(exc, 200)} (check --storage-option)") from None
    except TypeError as exc:
        raise InputError(f"{given}: a storage option was not accepted: {short(exc, 200)}") from None
    except OSError as exc:  # filesystems that connect when made (ftp://, sftp://): refused, unreachable, timed out
        raise InputError(f"{given}: cannot connect ({type(exc).__name__}: {short(exc, 200)}); check the address "
                         "and the network") from None


def list_objects(fs: Any, url: str, root: str) -> list[StoredObject]:
    """Every object under ``root``; InputError (one line) when there is none or listing fails."""
    url = shown(url)
    try:
        fs.invalidate_cache(root)  # s3fs/gcsfs keep listings: a long-lived process must see new objects
        found = fs.find(root, detail=True)
        if not found and fs.isfile(root):
            found = {root: fs.info(root)}
    except FileNotFoundError as exc:
        raise InputError(f"{url}: no such bucket or prefix ({short(exc, 200)})") from None
    except PermissionError as exc:
        raise InputError(f"{url}: access denied while listing ({short(exc, 200)}); check the credentials "
                         "(AWS_ACCESS_KEY_ID/AWS_PROFILE, --storage-option)") from None
    except Exception as exc:  # noqa: BLE001 - any listing failure (endpoint down, DNS, TLS) is one line, exit 2
        raise InputError(f"{url}: cannot list the objects ({type(exc).__name__}: {short(exc, 200)}); check the "
                         "endpoint (AWS_ENDPOINT_URL or --storage-option) and the network") from None
    if not found:
        raise InputError(f"{url}: no objects under this prefix (empty or missing); point at a prefix that holds "
                         "training logs")
    objects = []
    for name, info in sorted(found.items()):
        if info.get("type", "file") != "file":
            continue
        objects.append(StoredObject(name.rstrip("/"), int(info.get("size") or 0), _version(info)))
    return objects
