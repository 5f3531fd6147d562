"""A minimal, in-memory Hugging Face Hub server for tests (standard library + PyYAML only).

Written against ``huggingface_hub>=2.4,<3``: routes, headers and JSON shapes were read from the
2.4.0 client (``hf_api.py``, ``_commit_api.py``, ``lfs.py``, ``file_download.py``, ``utils/_http.py``).

- ``POST /api/repos/create`` (409 + url if it exists), ``GET /api/whoami-v2``, ``POST /api/validate-yaml``
- ``GET /api/{models,datasets,spaces}/{repo}[/revision/{rev}]`` (repo_info; ``?blobs=1`` adds sizes)
- ``GET .../tree/{rev}[/{path}]?recursive=``, ``POST .../paths-info/{rev}``, ``GET .../refs``,
  ``GET .../commits/{rev}``, ``POST .../branch/{branch}`` (``startingPoint``)
- ``POST .../preupload/{rev}``; ``POST .../commit/{rev}`` (NDJSON header/file/lfsFile/deletedFile/
  deletedFolder, ``parentCommit`` checked; no ``create_pr``)
- ``POST /{repo}.git/info/lfs/objects/batch`` (basic transfer) and ``.../objects/verify``
- ``GET|HEAD /[datasets/|spaces/]{repo}/resolve/{rev}/{path}`` (``Range`` supported)

Every commit gets a 40-hex oid and history is kept, so a revision is a branch or any commit oid.
A new repo starts with a ``.gitattributes`` commit; files go through LFS when >= 10 MiB, binary
or matching its patterns (``*.safetensors``, ``*.bin``, ...), as on the Hub. LFS bytes live on a
second port playing the CDN/S3: the batch API hands out signed ``PUT`` URLs there (sha256 and size
checked) and ``resolve`` answers LFS files with a 302 there, with ``X-Repo-Commit``,
``X-Linked-Etag`` and ``X-Linked-Size``. Like S3, that port rejects any ``Authorization`` header, so
a client leaking its token to the CDN fails loudly. Regular files are served directly
(``ETag`` = git blob sha1, ``X-Repo-Commit``).

Auth: exactly one token is valid; any other gets 401 "Invalid credentials in Authorization header"
(the client raises HfHubHTTPError). Public repos are readable without a token. Private or missing
repos get 401 (anonymous) / 404 with ``X-Error-Code: RepoNotFound``; unknown revisions and files
get ``RevisionNotFound`` / ``EntryNotFound``. Writes need the token and the user's namespace.

Client side: huggingface_hub reads ``HF_ENDPOINT`` at import time (transformers and gradio import
it), and tests/conftest.py sets ``HF_HUB_OFFLINE=1``. So client code runs in a subprocess whose
environment comes from ``client_env`` (HF_ENDPOINT, HF_TOKEN, HF_HOME, HF_HUB_DISABLE_XET=1,
HF_HUB_DISABLE_TELEMETRY=1, offline flags removed)::

    from hub_server import hub_server, run_client   # a fixture; tests/ is on sys.path under pytest

    def test_upload(hub_server, tmp_path):
        proc = run_client(hub_server, tmp_path / "hf_home", '''
            from huggingface_hub import HfApi
            HfApi().create_repo("tester/demo")
            print(HfApi().list_repo_files("tester/demo"))
        ''')                                  # asserts exit code 0; returns the CompletedProcess
        assert ".gitattributes" in proc.stdout

``hub_server`` is module-scoped; ``HubServer`` is also a plain context manager. ``requests_log``
holds ``(method, path, headers)`` for every request on both ports, without the Authorization header.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import hmac
import json
import os
import secrets
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import yaml

LFS_THRESHOLD = 10 * 1024 * 1024
LFS_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.ckpt", "*.h5", "*.onnx", "*.msgpack",
                "*.gguf", "*.npy", "*.npz", "*.pkl", "*.pickle", "*.zip", "*.gz", "*.tar", "*.model")
GITATTRIBUTES = "".join(f"{p} filter=lfs diff=lfs merge=lfs -text\n" for p in LFS_PATTERNS).encode()
INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
URL_PREFIX = {"model": "", "dataset": "datasets/", "space": "spaces/"}


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None, **extra):
        super().__init__(message)
        self.status, self.message, self.code, self.headers, self.extra = status, message, code, headers or {}, extra


@dataclass
class Blob:  # one version of one file
    size: int
    oid: str  # git blob sha1 (of the pointer file for LFS files)
    data: bytes | None = None  # regular files
    sha256: str | None = None  # LFS files: the bytes live in HubServer.lfs_store

    def info(self, path: str) -> dict:
        entry = {"type": "file", "oid": self.oid, "size": self.size, "path": path}
        if self.sha256:
            entry["lfs"] = {"oid": self.sha256, "size": self.size,
                            "pointerSize": len(lfs_pointer(self.sha256, self.size))}
        return entry


@dataclass
class Commit:
    oid: str
    title: str
    message: str
    date: str
    files: dict[str, Blob]
    parent: str | None = None


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created: str = field(default_factory=_now)
    branches: dict[str, str] = field(default_factory=dict)
    commits: dict[str, Commit] = field(default_factory=dict)

    def resolve(self, rev: str) -> Commit:
        oid = self.branches.get(rev, rev)
        if oid not in self.commits:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        return self.commits[oid]


def _regular(data: bytes) -> Blob:
    return Blob(size=len(data), oid=git_blob_sha1(data), data=data)


def _lfs(sha256: str, size: int) -> Blob:
    return Blob(size=size, oid=git_blob_sha1(lfs_pointer(sha256, size)), sha256=sha256)


def _ranged(data: bytes, range_header: str | None, headers: dict) -> tuple[int, dict, bytes]:
    """Serve `data` whole (200) or one `bytes=a-b` range of it (206)."""
    headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
    if not range_header or not range_header.strip().startswith("bytes="):
        return 200, headers, data
    start, _, end = range_header.strip()[6:].partition("-")
    first = int(start) if start else max(len(data) - int(end), 0)
    last = int(end) if start and end else len(data) - 1
    if first >= len(data):
        raise HubError(416, "Requested range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"})
    headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
    return 206, headers, data[first:last + 1]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx2 expects

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self): self._handle("GET")
    def do_HEAD(self): self._handle("HEAD")
    def do_POST(self): self._handle("POST")
    def do_PUT(self): self._handle("PUT")

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)) > 0:
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            while self.rfile.readline().strip():  # trailers
                pass
            return b"".join(chunks)
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _handle(self, method: str) -> None:
        hub: HubServer = self.server.hub  # type: ignore[attr-defined]
        headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        hub.requests_log.append((method, self.path, headers))
        try:
            body = self._read_body()
            route = hub._storage if self.server.is_storage else hub._route  # type: ignore[attr-defined]
            status, out_headers, payload = route(method, self.path, self.headers, body)
        except HubError as e:
            status, payload = e.status, {"error": e.message, **e.extra}
            header_safe = " ".join(e.message.split()).encode("ascii", "backslashreplace").decode()
            out_headers = {**e.headers, "X-Error-Message": header_safe}
            if e.code:
                out_headers["X-Error-Code"] = e.code
        except Exception as e:  # a server bug: say so (the client retries 500s for ~20 s, then raises)
            traceback.print_exc()
            status, out_headers, payload = 500, {}, {"error": f"test hub server bug: {e!r}"}
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload).encode()
            out_headers.setdefault("Content-Type", "application/json")
        self.send_response(status)
        for key, value in out_headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(payload)


class HubServer:
    """In-memory Hub on 127.0.0.1 (free ports). See the module docstring."""

    def __init__(self, token: str = "hf_test_token", user: str = "tester"):
        self.token, self.user = token, user
        self.repos: dict[tuple[str, str], Repo] = {}
        self.lfs_store: dict[str, bytes] = {}  # sha256 -> bytes
        self.requests_log: list[tuple[str, str, dict]] = []
        self.url = self.storage_url = ""
        self._pending: dict[str, int] = {}  # sha256 -> announced size, for uploads in flight
        self._secret = secrets.token_bytes(16)
        self._lock = threading.RLock()
        self._servers: list[ThreadingHTTPServer] = []
        self._counter = 0

    def start(self) -> "HubServer":
        for is_storage in (False, True):
            server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
            server.daemon_threads = True
            server.hub, server.is_storage = self, is_storage  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
        self.url, self.storage_url = (f"http://127.0.0.1:{s.server_address[1]}" for s in self._servers)
        return self

    def stop(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()
        self._servers = []

    def __enter__(self) -> "HubServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------- helpers
    def _auth(self, headers) -> bool:
        """True with the valid token, False with none; 401 with any other."""
        value = headers.get("Authorization")
        if value is None:
            return False
        if not hmac.compare_digest(value.encode(), f"Bearer {self.token}".encode()):
            raise HubError(401, INVALID_CREDENTIALS)
        return True

    def _repo(self, repo_type: str, repo_id: str, authed: bool, write: bool = False) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None or (repo.private and not authed):
            raise HubError(404 if authed else 401, "Repository not found", "RepoNotFound")
        if write and not authed:
            raise HubError(401, "You must be authenticated to write to a repository")
        if write and repo_id.split("/")[0] != self.user:
            raise HubError(403, f"You don't have the rights to write to {repo_id}")
        return repo

    def _sign(self, sha256: str) -> str:
        return hmac.new(self._secret, sha256.encode(), "sha256").hexdigest()[:32]

    def _commit(self, repo: Repo, branch: str, files: dict[str, Blob], title: str, message: str = "") -> Commit:
        self._counter += 1
        parent = repo.branches.get(branch)
        seed = json.dumps([parent, title, sorted((p, b.oid) for p, b in files.items()), self._counter])
        commit = Commit(hashlib.sha1(seed.encode()).hexdigest(), title, message, _now(), files, parent)
        repo.commits[commit.oid] = commit
        repo.branches[branch] = commit.oid
        return commit

    def _repo_json(self, repo: Repo, commit: Commit, blobs: bool) -> dict:
        siblings = []
        for path, blob in sorted(commit.files.items()):
            siblings.append({"rfilename": path})
            if blobs:  # ?blobs=1 (files_metadata=True)
                siblings[-1].update(size=blob.size, blobId=blob.oid)
                if blob.sha256:
                    pointer_size = len(lfs_pointer(blob.sha256, blob.size))
                    siblings[-1]["lfs"] = {"size": blob.size, "sha256": blob.sha256, "pointerSize": pointer_size}
        return {"id": repo.repo_id, "author": repo.repo_id.split("/")[0], "sha": commit.oid,
                "private": repo.private, "gated": False, "disabled": False, "createdAt": repo.created,
                "lastModified": commit.date, "tags": [], "downloads": 0, "likes": 0, "siblings": siblings}

    @staticmethod
    def _tree(commit: Commit, path: str, recursive: bool) -> list[dict]:
        prefix = f"{path.strip('/')}/" if path.strip("/") else ""
        files, dirs = {}, set()
        for name, blob in commit.files.items():
            if not name.startswith(prefix):
                continue
            parts = name[len(prefix):].split("/")
            if recursive or len(parts) == 1:
                files[name] = blob
            depth = len(parts) if recursive else min(2, len(parts))  # folders above the file
            dirs.update(prefix + "/".join(parts[:i]) for i in range(1, depth))
        if prefix and not files and not dirs:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound")
        folders = [{"type": "directory", "oid": hashlib.sha1(f"{commit.oid}:{d}".encode()).hexdigest(), "path": d}
                   for d in sorted(dirs)]
        return folders + [blob.info(name) for name, blob in sorted(files.items())]

    # ------------------------------------------------------------------ routes
    def _route(self, method: str, raw_path: str, headers, body: bytes):
        url = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        seg = [unquote(s) for s in url.path.strip("/").split("/")]
        authed = self._auth(headers)
        with self._lock:
            if seg[0] == "api":
                return self._api(method, seg[1:], query, authed, body)
            repo_type = "model"
            if seg[0] in ("datasets", "spaces") and len(seg) > 3:
                repo_type, seg = REPO_TYPES[seg[0]], seg[1:]
            if len(seg) >= 5 and seg[2] == "resolve" and method in ("GET", "HEAD"):
                return self._resolve(repo_type, "/".join(seg[:2]), seg[3], "/".join(seg[4:]), authed, headers)
            if len(seg) == 6 and seg[1].endswith(".git") and seg[2:5] == ["info", "lfs", "objects"]:
                repo = self._repo(repo_type, f"{seg[0]}/{seg[1][:-4]}", authed, write=True)
                if seg[5] == "batch":
                    return self._lfs_batch(repo, json.loads(body))
                if seg[5] == "verify":
                    return self._lfs_verify(json.loads(body))
        raise HubError(404, f"test hub server: no route for {method} {url.path}")

    def _api(self, method: str, seg: list[str], query: dict, authed: bool, body: bytes):
        if seg == ["whoami-v2"] and method == "GET":
            if not authed:
                raise HubError(401, INVALID_CREDENTIALS)
            token = {"displayName": "test", "role": "write"}
            return 200, {}, {"type": "user", "name": self.user, "fullname": self.user, "orgs": [],
                             "auth": {"type": "access_token", "accessToken": token}}
        if seg == ["validate-yaml"] and method == "POST":
            return self._validate_yaml(json.loads(body).get("content", ""))
        if seg == ["repos", "create"] and method == "POST":
            return self._create_repo(json.loads(body), authed)
        if len(seg) < 3 or seg[0] not in REPO_TYPES:
            raise HubError(404, f"test hub server: no route for /api/{'/'.join(seg)}")
        repo_type, repo_id, rest = REPO_TYPES[seg[0]], f"{seg[1]}/{seg[2]}", seg[3:]
        write = method == "POST" and rest[:1] != ["paths-info"]
        repo = self._repo(repo_type, repo_id, authed, write=write)
        action, rev = (rest + [None, None])[:2]
        if method == "GET" and action in (None, "revision"):
            blobs = query.get("blobs", "").lower() in ("1", "true")
            return 200, {}, self._repo_json(repo, repo.resolve(rev or "main"), blobs)
        if method == "GET" and action == "tree":
            recursive = query.get("recursive", "false").lower() in ("1", "true")
            return 200, {}, self._tree(repo.resolve(rev), "/".join(rest[2:]), recursive)
        if method == "GET" and action == "refs":
            refs = [{"name": b, "ref": f"refs/heads/{b}", "targetCommit": oid}
                    for b, oid in sorted(repo.branches.items())]
            return 200, {}, {"branches": refs, "converts": [], "tags": [], "pullRequests": []}
        if method == "GET" and action == "commits":
            history, commit = [], repo.resolve(rev)
            while commit:
                history.append({"id": commit.oid, "authors": [{"user": self.user}], "date": commit.date,
                                "title": commit.title, "message": commit.message})
                commit = repo.commits.get(commit.parent)
            return 200, {}, history
        if method == "POST" and action == "paths-info":
            commit = repo.resolve(rev)
            paths = [p.strip("/") for p in parse_qs(body.decode()).get("paths", [])]
            folders = [e for e in self._tree(commit, "", True) if e["type"] == "directory" and e["path"] in paths]
            return 200, {}, [commit.files[p].info(p) for p in paths if p in commit.files] + folders
        if method == "POST" and action == "preupload":
            return self._preupload(repo, rev, json.loads(body))
        if method == "POST" and action == "commit":
            if query.get("create_pr"):
                raise HubError(400, "The test hub server does not support pull requests")
            return self._commit_ndjson(repo, rev, body)
        if method == "POST" and action == "branch":
            if rev in repo.branches:
                raise HubError(409, f"Reference already exists: refs/heads/{rev}")
            start = (json.loads(body) if body else {}).get("startingPoint") or "main"
            repo.branches[rev] = repo.resolve(start).oid
            return 200, {}, {}
        raise HubError(404, f"test hub server: no route for {method} /api/{'/'.join(seg)}")

    @staticmethod
    def _validate_yaml(content: str):
        try:
            yaml.safe_load(content[3:].split("\n---", 1)[0] if content.startswith("---") else "")
        except yaml.YAMLError as e:
            return 400, {}, {"errors": [{"message": f"Invalid YAML in README.md header: {e}"}], "warnings": []}
        return 200, {}, {"errors": [], "warnings": []}

    def _create_repo(self, payload: dict, authed: bool):
        if not authed:
            raise HubError(401, "You must be authenticated to create a repository")
        namespace = payload.get("organization") or self.user
        if namespace != self.user:
            raise HubError(403, f"You don't have the rights to create a repository under '{namespace}'")
        repo_type = payload.get("type") or "model"
        repo_id = f"{namespace}/{payload['name']}"
        url = f"{self.url}/{URL_PREFIX[repo_type]}{repo_id}"
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, f"You already created this {repo_type} repo", url=url)  # the client reads url
        private = payload.get("visibility") == "private" or bool(payload.get("private"))
        repo = self.repos[(repo_type, repo_id)] = Repo(repo_type, repo_id, private)
        self._commit(repo, "main", {".gitattributes": _regular(GITATTRIBUTES)}, "initial commit")
        return 200, {}, {"url": url, "name": repo_id, "id": repo_id}

    def _preupload(self, repo: Repo, rev: str, payload: dict):
        if rev not in repo.branches:
            raise HubError(404, f"Invalid rev id: {rev}", "RevisionNotFound")
        files = repo.resolve(rev).files
        out = []
        for f in payload["files"]:
            sample = base64.b64decode(f.get("sample", ""))
            lfs = f["size"] > 0 and (f["size"] >= LFS_THRESHOLD or b"\0" in sample
                                     or any(fnmatch.fnmatch(f["path"].rsplit("/", 1)[-1], p) for p in LFS_PATTERNS))
            old = files.get(f["path"])
            oid = None if old is None else (old.sha256 if lfs else (None if old.sha256 else old.oid))
            out.append({"path": f["path"], "uploadMode": "lfs" if lfs else "regular", "shouldIgnore": False,
                        "oid": oid})  # the client skips files whose oid did not change
        return 200, {}, {"files": out, "commitOid": repo.branches[rev]}

    def _lfs_batch(self, repo: Repo, payload: dict):
        if payload.get("operation") != "upload" or "basic" not in payload.get("transfers", ["basic"]):
            raise HubError(400, "The test hub server only supports basic LFS uploads")
        objects = []
        for obj in payload["objects"]:
            oid, size = obj["oid"], obj["size"]
            entry = {"oid": oid, "size": size, "authenticated": True}
            if self.lfs_store.get(oid) is None or len(self.lfs_store[oid]) != size:
                self._pending[oid] = size
                prefix = f"{self.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}.git/info/lfs/objects"
                entry["actions"] = {"upload": {"href": f"{self.storage_url}/_storage/{oid}?sig={self._sign(oid)}"},
                                    "verify": {"href": f"{prefix}/verify"}}
            objects.append(entry)
        return 200, {"Content-Type": "application/vnd.git-lfs+json"}, {"transfer": "basic", "objects": objects}

    def _lfs_verify(self, obj: dict):
        if len(self.lfs_store.get(obj["oid"], b"-")) != obj["size"]:
            raise HubError(404, f"LFS object {obj['oid']} was not uploaded")
        return 200, {}, {}

    def _commit_ndjson(self, repo: Repo, rev: str, body: bytes):
        if rev not in repo.branches:
            code = None if rev in repo.commits else "RevisionNotFound"
            raise HubError(400 if code is None else 404, f"Can only commit to a branch, not {rev}", code)
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise HubError(400, "The commit payload must start with a header line")
        header = lines[0]["value"]
        if header.get("parentCommit") not in (None, repo.branches[rev]):
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        files = dict(repo.resolve(rev).files)
        for line in lines[1:]:
            key, value = line["key"], line["value"]
            path = value["path"].strip("/")
            if key == "file":
                data = base64.b64decode(value["content"])
                if len(data) >= LFS_THRESHOLD:
                    raise HubError(400, f"Your push was rejected: {path} is larger than 10 MiB and must go via LFS")
                files[path] = _regular(data)
            elif key == "lfsFile":
                data = self.lfs_store.get(value["oid"])
                if data is None or value.get("size", len(data)) != len(data):
                    raise HubError(400, f"LFS object {value['oid']} for {path} was not uploaded")
                files[path] = _lfs(value["oid"], len(data))
            elif key == "deletedFile":
                if files.pop(path, None) is None:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", "EntryNotFound")
            elif key == "deletedFolder":
                files = {p: b for p, b in files.items() if not p.startswith(path + "/")}
            else:
                raise HubError(400, f"Unknown commit operation: {key}")
        commit = self._commit(repo, rev, files, header.get("summary") or "commit", header.get("description", ""))
        commit_url = f"{self.url}/{URL_PREFIX[repo.repo_type]}{repo.repo_id}/commit/{commit.oid}"
        return 200, {}, {"success": True, "commitOid": commit.oid, "commitUrl": commit_url, "pullRequestUrl": None}

    def _resolve(self, repo_type: str, repo_id: str, rev: str, path: str, authed: bool, headers):
        repo = self._repo(repo_type, repo_id, authed)
        commit = repo.resolve(rev)
        blob = commit.files.get(path)
        if blob is None:
            raise HubError(404, f"Entry not found: {path}", "EntryNotFound", {"X-Repo-Commit": commit.oid})
        out = {"X-Repo-Commit": commit.oid, "ETag": f'"{blob.oid}"'}
        if blob.sha256:  # LFS: redirect to the storage port, like the Hub redirects to its CDN
            out.update({"X-Linked-Etag": f'"{blob.sha256}"', "X-Linked-Size": str(blob.size),
                        "Location": f"{self.storage_url}/_storage/{blob.sha256}?sig={self._sign(blob.sha256)}"})
            return 302, out, b""
        return _ranged(blob.data, headers.get("Range"), out)

    def _storage(self, method: str, raw_path: str, headers, body: bytes):
        """The CDN/S3 stand-in: signed URLs only, and no Authorization header allowed."""
        if headers.get("Authorization") is not None:
            raise HubError(400, "Only one auth mechanism allowed: the storage URL is signed, "
                                "the client must not send its Authorization header here")
        url = urlsplit(raw_path)
        oid = url.path.removeprefix("/_storage/")
        if not hmac.compare_digest(parse_qs(url.query).get("sig", [""])[0], self._sign(oid)):
            raise HubError(403, "Bad signature")
        with self._lock:
            if method == "PUT":
                if oid not in self._pending:
                    raise HubError(400, f"No upload announced for {oid}")
                if len(body) != self._pending[oid] or hashlib.sha256(body).hexdigest() != oid:
                    raise HubError(400, f"Uploaded bytes do not match sha256 {oid} / size {self._pending[oid]}")
                self.lfs_store[oid] = body
                del self._pending[oid]
                return 200, {"ETag": f'"{oid}"'}, b""
            data = self.lfs_store.get(oid) if method in ("GET", "HEAD") else None
        if data is None:
            raise HubError(404, "No such object")
        return _ranged(data, headers.get("Range"), {"ETag": f'"{oid}"'})


# ---------------------------------------------------------------- client side
def client_env(hub: HubServer, home, token: str | None = "default") -> dict:
    """Environment for a client process talking to `hub` (token=None: anonymous)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HUGGINGFACE_CO_STAGING",
                        "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_HUB_CACHE", "HF_XET_CACHE",
                        "HUGGINGFACE_HUB_CACHE", "TRANSFORMERS_CACHE", "HF_DATASETS_CACHE")}
    env.update(HF_ENDPOINT=hub.url, HF_HOME=str(home), HF_HUB_DISABLE_XET="1", HF_HUB_DISABLE_TELEMETRY="1",
               HF_HUB_DISABLE_PROGRESS_BARS="1", HF_HUB_ETAG_TIMEOUT="30", TOKENIZERS_PARALLELISM="false")
    if token is not None:
        env["HF_TOKEN"] = hub.token if token == "default" else token
    return env


def run_client(hub: HubServer, home, code: str, token: str | None = "default", check: bool = True,
               timeout: float = 180) -> subprocess.CompletedProcess:
    """Run `code` (dedented) in a fresh Python process pointed at `hub`."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=client_env(hub, home, token),
                          capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"client failed (rc={proc.returncode})\n--- stdout\n{proc.stdout}\n"
                             f"--- stderr\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def hub_server():
    with HubServer() as hub:
        yield hub
