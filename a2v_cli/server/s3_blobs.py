"""`Blobs` in S3-compatible object storage (``--storage s3://bucket/prefix``), through boto3.

Why this layout: object storage has no rename, so what a directory does with one rename is done here
with a small manifest object written last, which every reader requires. Under the prefix, every key
below is made of server-made ids only (video, upload and attempt ids, tenant hashes, checked avatar
ids), never of a string a client chose:

- ``secrets/url-signing.key``: the front ends' shared link-signing key (created once: If-None-Match);
- ``uploads/<upload_id>``: an uploaded audio file;
- ``videos/<video_id>/<attempt>/<file>``: the files of one try; ``videos/<video_id>/result.json``,
  written last, names the attempt that is the result. A try that is not published is deleted; the
  holder of a job deletes whatever earlier tries left (`discard_staging`), so one result set remains;
- ``avatars/<tenant>/<avatar_id>/<generation>/<file>``: a tenant's bundle, built on local disk and
  uploaded; ``avatars/<tenant>/<avatar_id>.json``, written last, names its generation and files.
  Each process keeps a read-only local copy of the bundles it uses, keyed by generation, so an id
  deleted and created again is never served from a stale copy.

Credentials, endpoint and region come from boto3's standard chain (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_REGION``, ``~/.aws/``), never from argv, and
never reach a log or a render child. Every call has connect and read timeouts and bounded retries,
so a slow or unreachable store fails the request with a clear error instead of hanging it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from a2v_cli.engine.avatars import AVATAR_ID
from a2v_cli.errors import InputError, UnavailableError
from a2v_cli.server.blobs import RESULT_FILES, signed_url, staged_folder
from a2v_cli.server.security import UrlSigner

log = logging.getLogger("a2v.server")

CONNECT_S = 3.0  # one connection attempt
READ_S = 15.0  # one wait for bytes (a big transfer may take longer while it keeps moving)
TRIES = 3  # attempts per call, retries included (botocore's standard mode: backoff, throttling)
# a front end answers clients, who wait 30 s by default (the CLI's --http-timeout): a call to the store there
# gives up within about 2 x (2 + 5) s plus backoff, so the client hears a 503 rather than its own timeout
FRONT_END_LIMITS = (2.0, 5.0, 2)
READY_TIMEOUT_S = 3.0  # readyz's look at the bucket: one try, this long at most
PRESIGN_S = 300  # a presigned object URL only has to start the download the front end's link redirected
MANIFEST = "result.json"
BUCKET_RE = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
PREFIX_RE = re.compile(r"[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*")
MEDIA_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".mov": "video/quicktime"}


def parse_url(storage: str) -> tuple[str, str]:
    """``s3://bucket/prefix`` -> (bucket, prefix with a trailing slash or ""); InputError (exit 2) otherwise."""
    rest = storage[len("s3://"):] if storage.startswith("s3://") else None
    bucket, _, prefix = (rest or "").partition("/")
    if rest is None or "@" in bucket or ":" in bucket:
        raise InputError(f"storage {_shown(storage)!r} must look like s3://bucket/prefix",
                         "credentials go in AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, never in the URL")
    if not BUCKET_RE.fullmatch(bucket) or ".." in bucket:
        raise InputError(f"{bucket!r} is not an S3 bucket name", "3-63 lower-case letters, digits, dots or dashes")
    prefix = prefix.strip("/")
    if prefix and (not PREFIX_RE.fullmatch(prefix) or any(p in (".", "..") for p in prefix.split("/"))):
        raise InputError(f"storage prefix {prefix!r} may hold only letters, digits and . _ - /")
    return bucket, f"{prefix}/" if prefix else ""


def _shown(storage: str) -> str:
    """The storage URL without anything that might be a credential (user:secret@)."""
    return re.sub(r"^(s3://)[^/@]*@", r"\1...@", storage)


def make_client(connect_s: float = CONNECT_S, read_s: float = READ_S, tries: int = TRIES) -> Any:
    """A boto3 S3 client from the standard environment and config files, with timeouts and bounded retries."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=connect_s, read_timeout=read_s, signature_version="s3v4",
                    retries={"total_max_attempts": tries, "mode": "standard"})
    return boto3.session.Session().client("s3", config=config)


def _code(err: Exception) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _missing(err: Exception) -> bool:
    return _code(err) in ("NoSuchKey", "404", "NotFound")


def _why(err: Exception) -> str:
    """One line about a failed call: the service's error code, or the connection problem."""
    code = _code(err)
    if code:
        message = (getattr(err, "response", None) or {}).get("Error", {}).get("Message") or ""
        return f"{code}{': ' + message if message else ''}"
    return str(err).splitlines()[0][:300] or err.__class__.__name__


class S3Blobs:
    """Result files, uploads and avatar bundles in one bucket under one prefix (see the module doc)."""

    def __init__(self, storage: str, local: Path, signer: UrlSigner | None = None, client: Any = None,
                 front_end: bool = False) -> None:
        self.storage = storage
        self.bucket, self.prefix = parse_url(storage)
        self.local = local  # private, this process's: staging folders, new uploads, copies of bundles
        self.signer = signer
        self.s3 = client or (make_client(*FRONT_END_LIMITS) if front_end else make_client())
        self._probe = make_client(READY_TIMEOUT_S, READY_TIMEOUT_S, 1)
        self._prepared: dict[Path, list[str]] = {}  # staging folder -> keys uploaded from it
        self._manifests: dict[str, tuple[str | None, dict[str, Any]]] = {}  # key -> (ETag, manifest)
        self._avatar_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # --- the bucket ------------------------------------------------------------------------------

    def _key(self, *parts: str) -> str:
        """The object key of ``parts`` under the prefix; each part must be a server-made name (an id, a result
        file's name, a bundle's relative path), so nothing a client sent can reach another key."""
        for part in parts:
            if not PREFIX_RE.fullmatch(part) or any(p in (".", "..") for p in part.split("/")):
                raise ValueError(f"not an object name: {part!r}")
        return self.prefix + "/".join(parts)

    def describe(self) -> str:
        endpoint = getattr(getattr(self.s3, "meta", None), "endpoint_url", "") or "AWS"
        return f"{_shown(self.storage)} at {endpoint}"

    def _unavailable(self, err: Exception, doing: str) -> UnavailableError:
        return UnavailableError(f"the object storage {self.describe()} failed {doing}: {_why(err)}",
                                "check the bucket, AWS_ENDPOINT_URL and the credentials (docs/deploy.md)")

    def problem(self) -> str | None:
        try:
            self._probe.head_bucket(Bucket=self.bucket)
        except Exception as err:
            code = _code(err)
            if code in ("404", "NoSuchBucket", "NotFound"):
                what = "does not exist"
            elif code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                what = f"refuses these credentials ({code})"
            elif err.__class__.__name__ in ("NoCredentialsError", "PartialCredentialsError"):
                what = "needs credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or give a role)"
            else:
                what = f"does not answer ({_why(err)})"
            return f"the object storage bucket {self.bucket!r} at {self.describe().split(' at ', 1)[1]} {what}"
        return None

    def check(self) -> None:
        """UnavailableError (exit 5) unless the bucket answers: a front end or worker must not start without it."""
        why = self.problem()
        if why:
            raise UnavailableError(why, "create the bucket, or check AWS_ENDPOINT_URL and the credentials "
                                   "(docs/deploy.md)")

    def _list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def _delete(self, keys: Iterable[str]) -> int:
        keys = list(keys)
        for i in range(0, len(keys), 1000):
            self.s3.delete_objects(Bucket=self.bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]],
                                                                "Quiet": True})
        return len(keys)

    def _get_json(self, key: str) -> dict[str, Any] | None:
        try:
            body = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except Exception as err:
            if _missing(err):
                return None
            raise self._unavailable(err, "to read a manifest") from None
        try:
            data = json.loads(body)
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def signing_key(self) -> bytes:
        """The front ends' shared URL-signing key: the first front end creates it (a conditional write, so two
        starting at once agree), every other one reads it; never replaced, so links outlive restarts."""
        import secrets

        key = self._key("secrets", "url-signing.key")
        raw = self._read_key(key)
        if raw is None:
            try:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=secrets.token_hex(32).encode(), IfNoneMatch="*")
            except Exception as err:
                if _code(err) not in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                    raise self._unavailable(err, "to store the link-signing key") from None
            raw = self._read_key(key) or ""
        if len(raw) < 32:
            raise InputError(f"the link-signing key {key} in the bucket is too short", "delete it; a front end "
                             "makes a new one")
        return bytes.fromhex(raw) if all(c in "0123456789abcdef" for c in raw) else raw.encode()

    def _read_key(self, key: str) -> str | None:
        try:
            return str(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read().decode("ascii").strip())
        except Exception as err:
            if _missing(err):
                return None
            raise self._unavailable(err, "to read the link-signing key") from None

    # --- results ---------------------------------------------------------------------------------

    def _attempt(self, staged: Path) -> str:
        return staged.name.rsplit(".", 2)[-2]  # .<video_id>.<attempt>.part

    @contextlib.contextmanager
    def staged(self, video_id: str, files: Iterable[Path] = ()) -> Iterator[Path]:
        """A new local staging folder (holding copies of ``files``); what is not published from it by the
        end of the block is removed here and in the bucket, however the block ends."""
        (self.local / "staging").mkdir(mode=0o700, parents=True, exist_ok=True)
        folder = self.local / "staging" / f".{video_id}.{uuid.uuid4().hex[:12]}.part"
        folder.mkdir(mode=0o700)
        try:
            with staged_folder(folder, files):
                yield folder
        finally:
            left = self._prepared.pop(folder, None)
            if left:
                with contextlib.suppress(Exception):  # the next holder's discard_staging removes them otherwise
                    self._delete(left)

    def prepare(self, video_id: str, staged: Path) -> None:
        """Upload the staged result files under this try's own keys (nobody reads them before `publish`)."""
        attempt, keys = self._attempt(staged), []
        self._prepared[staged] = keys
        for f in sorted(staged.iterdir()):
            if f.name not in RESULT_FILES:
                continue
            key = self._key("videos", video_id, attempt, f.name)
            keys.append(key)
            try:
                self.s3.upload_file(str(f), self.bucket, key, ExtraArgs={"ContentType": MEDIA_TYPES[f.suffix]})
            except Exception as err:
                raise self._unavailable(err, f"to store {f.name}") from None

    def publish(self, video_id: str, staged: Path, replace: bool = False) -> bool:
        """Write the manifest naming this try's files; False (and this try's objects removed) if a result is
        there already. ``replace``: the caller holds the job, so a manifest there is an orphan of a try that
        died between writing it and recording it: it is overwritten. Every other try's objects go."""
        if staged not in self._prepared:
            self.prepare(video_id, staged)
        attempt = self._attempt(staged)
        files = {f.name: f.stat().st_size for f in staged.iterdir() if f.name in RESULT_FILES}
        body = json.dumps({"attempt": attempt, "files": files}).encode()
        extra = {} if replace else {"IfNoneMatch": "*"}
        try:
            self.s3.put_object(Bucket=self.bucket, Key=self._key("videos", video_id, MANIFEST), Body=body,
                               ContentType="application/json", **extra)
        except Exception as err:
            if _code(err) in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                return False  # the staged block's end removes this try's objects
            raise self._unavailable(err, "to publish a result") from None
        self._prepared.pop(staged, None)
        mine = self._key("videos", video_id, attempt) + "/"
        manifest = self._key("videos", video_id, MANIFEST)
        try:  # not done until no other try's files are left (the job is then given back and done again)
            self._delete(k for k in self._list(self._key("videos", video_id) + "/")
                         if not k.startswith(mine) and k != manifest)
        except Exception as err:
            raise self._unavailable(err, "to remove an earlier try's files") from None
        return True

    def discard_staging(self, video_id: str) -> int:
        """Remove everything under the video: only for whoever holds its unfinished job, for whom nothing
        there is a result (earlier tries' files, or the manifest of one that died before recording it)."""
        try:
            return self._delete(self._list(self._key("videos", video_id) + "/"))
        except Exception as err:
            raise self._unavailable(err, "to delete a video's files") from None

    def sweep_staging(self, older_than_s: float) -> int:
        """Nothing to sweep: staging folders are on each worker's disk (removed with its scratch), and what a
        killed worker uploaded goes when its job is taken back (`discard_staging`)."""
        return 0

    def delete_results(self, video_id: str) -> None:
        self.discard_staging(video_id)

    def result_location(self, video_id: str, name: str, head: bool = False) -> str | None:
        """A presigned URL of the published file ``name`` (PRESIGN_S seconds), or None."""
        manifest = self._get_json(self._key("videos", video_id, MANIFEST))
        files = manifest.get("files") if manifest else None
        attempt = str(manifest.get("attempt", "")) if manifest else ""
        if name not in RESULT_FILES or not isinstance(files, dict) or name not in files or not attempt.isalnum():
            return None
        download = f"a2v-{video_id}.mp4" if name == "video.mp4" else f"a2v-{video_id}.{name}"
        params = {"Bucket": self.bucket, "Key": self._key("videos", video_id, attempt, name)}
        if not head:
            params.update(ResponseContentDisposition=f'inline; filename="{download}"',
                          ResponseContentType=MEDIA_TYPES[Path(name).suffix])
        return str(self.s3.generate_presigned_url("head_object" if head else "get_object", Params=params,
                                                  ExpiresIn=PRESIGN_S))

    def url(self, base: str, video_id: str, name: str) -> str:
        return signed_url(self.signer, base, video_id, name)

    # --- uploads ---------------------------------------------------------------------------------

    def uploads_dir(self) -> Path:
        path = self.local / "uploads"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path

    def put_upload(self, upload_id: str, tmp: Path) -> None:
        try:
            self.s3.upload_file(str(tmp), self.bucket, self._key("uploads", upload_id))
        except Exception as err:
            raise self._unavailable(err, "to store the upload") from None
        finally:
            tmp.unlink(missing_ok=True)

    def upload_location(self, upload_id: str) -> str | None:
        """A presigned URL of the upload. Not looked up: its row in the database is written only after the
        object is stored, and uploads are never removed (a lookup would cost every video.generate a call)."""
        params = {"Bucket": self.bucket, "Key": self._key("uploads", upload_id)}
        return str(self.s3.generate_presigned_url("get_object", Params=params, ExpiresIn=PRESIGN_S))

    def fetch_upload(self, upload_id: str, work: Path) -> Path | None:
        dest = work / "upload"
        try:
            self.s3.download_file(self.bucket, self._key("uploads", upload_id), str(dest))
        except Exception as err:
            dest.unlink(missing_ok=True)
            if _missing(err):
                return None
            raise self._unavailable(err, "to fetch the upload") from None
        return dest

    # --- tenants' avatar bundles -------------------------------------------------------------------

    def _avatar_lock(self, tenant: str) -> threading.Lock:
        with self._guard:
            return self._avatar_locks.setdefault(tenant, threading.Lock())

    def _bundles(self, tenant: str) -> dict[str, dict[str, Any]]:
        """The tenant's bundle manifests in the bucket: avatar id -> {"generation", "files"}. One listing of
        the manifests only; a manifest is read again only when its ETag changed."""
        base = self._key("avatars", tenant) + "/"
        found: dict[str, dict[str, Any]] = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base,
                                                                      Delimiter="/"):
            for obj in page.get("Contents", []):
                avatar_id = obj["Key"][len(base):].removesuffix(".json")
                if not obj["Key"].endswith(".json") or not AVATAR_ID.fullmatch(avatar_id):
                    continue
                cached = self._manifests.get(obj["Key"])
                if cached is None or cached[0] != obj.get("ETag"):
                    manifest = self._get_json(obj["Key"])
                    if manifest is None:
                        continue
                    cached = (obj.get("ETag"), manifest)
                    self._manifests[obj["Key"]] = cached
                manifest = cached[1]
                if str(manifest.get("generation", "")).isalnum() and isinstance(manifest.get("files"), list):
                    found[avatar_id] = manifest
        return found

    def avatars_local(self, tenant: str) -> Path:
        self._key("avatars", tenant)  # a checked name (ValueError otherwise) before a path is made of it
        return self.local / "avatars" / tenant

    def avatars_home(self, tenant: str) -> Path:
        """The local copy of the tenant's bundles, brought up to date with the bucket (one listing)."""
        home = self.avatars_local(tenant)
        with self._avatar_lock(tenant):
            try:
                remote = self._bundles(tenant)
            except UnavailableError:
                raise
            except Exception as err:
                raise self._unavailable(err, "to list avatars") from None
            folder = home / "avatars"
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            for local in folder.iterdir():  # gone from the bucket, or another generation: not served
                generation = _generation(local)  # None: built here just now, not uploaded yet
                if generation is not None and generation != remote.get(local.name, {}).get("generation"):
                    shutil.rmtree(local, ignore_errors=True)
            for avatar_id, manifest in remote.items():
                if not (folder / avatar_id).is_dir():
                    self._download_bundle(tenant, avatar_id, manifest, folder)
        return home

    def _download_bundle(self, tenant: str, avatar_id: str, manifest: dict[str, Any], folder: Path) -> None:
        """The bundle into ``folder/avatar_id`` (read-only files), via a staging folder renamed into place."""
        generation = str(manifest["generation"])
        stage = Path(tempfile.mkdtemp(prefix=".bundle-", dir=folder.parent))
        try:
            for rel in manifest["files"]:
                if not isinstance(rel, str) or not PREFIX_RE.fullmatch(rel) or ".." in rel.split("/"):
                    continue  # a manifest is ours, but a bucket is not trusted with paths
                dest = stage / rel
                dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.s3.download_file(self.bucket, self._key("avatars", tenant, avatar_id, generation, rel), str(dest))
                dest.chmod(0o400)
            (stage / ".generation").write_text(generation)
            (stage / ".generation").chmod(0o400)
            os.rename(stage, folder / avatar_id)
        except Exception as err:
            shutil.rmtree(stage, ignore_errors=True)
            if isinstance(err, OSError):
                raise
            raise self._unavailable(err, f"to fetch avatar {avatar_id}") from None

    def avatars_changed(self, tenant: str, avatar_id: str) -> None:
        """Make the bucket match the local copy of ``avatar_id`` after a build or a removal: a new bundle (no
        generation yet) is uploaded, its manifest last; one removed here loses its manifest, then its files."""
        base = self._key("avatars", tenant, avatar_id)  # checked names before any path is made of them
        path = self.local / "avatars" / tenant / "avatars" / avatar_id
        with self._avatar_lock(tenant):
            try:
                if path.is_dir():
                    if _generation(path) is None:
                        self._upload_bundle(tenant, avatar_id, path)
                else:
                    self._delete([base + ".json"])
                    self._delete(self._list(base + "/"))
            except Exception as err:
                raise self._unavailable(err, f"to store avatar {avatar_id}") from None

    def _upload_bundle(self, tenant: str, avatar_id: str, path: Path) -> None:
        generation = uuid.uuid4().hex[:16]
        files = sorted(str(f.relative_to(path)) for f in path.rglob("*") if f.is_file())
        for rel in files:
            self.s3.upload_file(str(path / rel), self.bucket, self._key("avatars", tenant, avatar_id, generation, rel))
        body = json.dumps({"generation": generation, "files": files}).encode()
        self.s3.put_object(Bucket=self.bucket, Key=self._key("avatars", tenant, avatar_id) + ".json", Body=body,
                           ContentType="application/json")
        (path / ".generation").write_text(generation)


def _generation(bundle: Path) -> str | None:
    try:
        return (bundle / ".generation").read_text().strip()
    except OSError:
        return None
