"""The test Hub server against the real huggingface_hub / transformers clients.

The client side of every test runs in a subprocess (see tests/hub_server.py for why): it prints one
JSON line of results, which the test checks, together with what the server recorded.
"""

from __future__ import annotations

import hashlib
import json
import os
import textwrap
import urllib.error
import urllib.request

from hub_server import HubServer, hub_server, run_client  # noqa: F401  (hub_server is a fixture)

PRELUDE = """
import json, hashlib
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
api = HfApi()

def catch(fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except Exception as e:
        response = getattr(e, "response", None)
        return [type(e).__name__, getattr(response, "status_code", None), str(e), [c.__name__ for c in type(e).__mro__]]
    return None

def sha(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()
"""


def client(hub: HubServer, tmp_path, code: str, token: str | None = "default", home: str = "hf_home") -> dict:
    """Run PRELUDE + code in a client process; `code` must end by printing one JSON line."""
    home = tmp_path / home  # HF_HOME: a fresh cache per test (and per identity)
    proc = run_client(hub, home, PRELUDE + textwrap.dedent(code), token=token)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def assert_no_secret(hub: HubServer) -> None:
    for method, path, headers in hub.requests_log:
        assert hub.token not in path and hub.token not in json.dumps(headers), (method, path)
        assert "authorization" not in {k.lower() for k in headers}


def test_create_repo_exist_ok_and_whoami(hub_server, tmp_path):
    out = client(hub_server, tmp_path, """
        first = api.create_repo("tester/created")
        again = catch(api.create_repo, "tester/created")
        ok = api.create_repo("tester/created", exist_ok=True)
        info = api.model_info("tester/created")
        print(json.dumps({"url": str(first), "repo_id": ok.repo_id, "again": again, "sha": info.sha,
                          "files": api.list_repo_files("tester/created"), "me": api.whoami()["name"]}))
    """)
    assert out["url"] == f"{hub_server.url}/tester/created" and out["repo_id"] == "tester/created"
    assert out["again"][:2] == ["HfHubHTTPError", 409]
    assert len(out["sha"]) == 40 and out["files"] == [".gitattributes"] and out["me"] == "tester"


def test_upload_folder_lfs_snapshot_download(hub_server, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    big = os.urandom(11 * 1024 * 1024)  # > 10 MiB: must go through LFS
    (src / "weights.dat").write_bytes(big)
    (src / "notes.txt").write_text("hello hub\n")
    (src / "sub" / "config.json").write_text('{"a": 1}')
    out = client(hub_server, tmp_path, f"""
        api.create_repo("tester/folder")
        commit = api.upload_folder(folder_path={str(src)!r}, repo_id="tester/folder", commit_message="add files")
        files = api.list_repo_files("tester/folder")
        info = api.model_info("tester/folder", files_metadata=True)
        lfs = sorted(s.rfilename for s in info.siblings if s.lfs is not None)
        local = snapshot_download("tester/folder")
        digests = {{f: sha(local + "/" + f) for f in files}}
        print(json.dumps({{"oid": commit.oid, "sha": info.sha, "files": files, "lfs": lfs, "digests": digests}}))
    """)
    assert out["files"] == [".gitattributes", "notes.txt", "sub/config.json", "weights.dat"]
    assert out["lfs"] == ["weights.dat"] and out["oid"] == out["sha"]
    for name in ("weights.dat", "notes.txt", "sub/config.json"):
        assert out["digests"][name] == hashlib.sha256((src / name).read_bytes()).hexdigest()
    assert hashlib.sha256(big).hexdigest() in hub_server.lfs_store  # the bytes went via the LFS PUT
    assert any(m == "PUT" and p.startswith("/_storage/") for m, p, _ in hub_server.requests_log)
    assert_no_secret(hub_server)


def test_pinned_revision_after_second_commit(hub_server, tmp_path):
    out = client(hub_server, tmp_path, """
        api.create_repo("tester/pinned")
        first = api.upload_file(path_or_fileobj=b"version 1", path_in_repo="data/file.txt", repo_id="tester/pinned")
        api.upload_file(path_or_fileobj=b"version 2", path_in_repo="data/file.txt", repo_id="tester/pinned")
        old = open(hf_hub_download("tester/pinned", "data/file.txt", revision=first.oid)).read()
        new = open(hf_hub_download("tester/pinned", "data/file.txt")).read()
        tree = [f.path for f in api.list_repo_tree("tester/pinned", "data", revision=first.oid)]
        history = [c.commit_id for c in api.list_repo_commits("tester/pinned")]
        print(json.dumps({"old": old, "new": new, "tree": tree, "history": history, "first": first.oid}))
    """)
    assert (out["old"], out["new"], out["tree"]) == ("version 1", "version 2", ["data/file.txt"])
    assert len(out["history"]) == 3 and out["history"][1] == out["first"]  # newest first, then initial commit


def test_branch_and_not_found_errors(hub_server, tmp_path):
    out = client(hub_server, tmp_path, """
        api.create_repo("tester/branchy")
        api.create_branch("tester/branchy", branch="dev")
        api.create_branch("tester/branchy", branch="dev", exist_ok=True)
        api.upload_file(path_or_fileobj=b"dev only", path_in_repo="dev.txt", repo_id="tester/branchy", revision="dev")
        print(json.dumps({
            "dev": api.list_repo_files("tester/branchy", revision="dev"),
            "main": api.list_repo_files("tester/branchy"),
            "content": open(hf_hub_download("tester/branchy", "dev.txt", revision="dev")).read(),
            "branches": sorted(b.name for b in api.list_repo_refs("tester/branchy").branches),
            "no_revision": catch(hf_hub_download, "tester/branchy", "dev.txt", revision="nope"),
            "no_file": catch(hf_hub_download, "tester/branchy", "dev.txt"),
            "no_repo": catch(api.model_info, "tester/does-not-exist"),
            "no_repo_download": catch(hf_hub_download, "tester/does-not-exist", "config.json"),
        }))
    """)
    assert out["dev"] == [".gitattributes", "dev.txt"] and out["main"] == [".gitattributes"]
    assert out["content"] == "dev only" and out["branches"] == ["dev", "main"]
    assert out["no_revision"][:2] == ["RevisionNotFoundError", 404]
    assert out["no_file"][:2] == ["RemoteEntryNotFoundError", 404] and "EntryNotFoundError" in out["no_file"][3]
    assert out["no_repo"][:2] == ["RepositoryNotFoundError", 404]
    assert out["no_repo_download"][:2] == ["RepositoryNotFoundError", 404]


def test_private_repo_needs_token(hub_server, tmp_path):
    owner = client(hub_server, tmp_path, """
        api.create_repo("tester/secret", private=True)
        api.upload_file(path_or_fileobj=b"classified", path_in_repo="s.txt", repo_id="tester/secret")
        print(json.dumps({"private": api.model_info("tester/secret").private,
                          "read": open(hf_hub_download("tester/secret", "s.txt")).read()}))
    """)
    assert owner == {"private": True, "read": "classified"}
    anonymous = client(hub_server, tmp_path, """
        print(json.dumps({"info": catch(api.model_info, "tester/secret"),
                          "download": catch(hf_hub_download, "tester/secret", "s.txt"),
                          "files": catch(api.list_repo_files, "tester/secret")}))
    """, token=None, home="anonymous")  # own cache: a cached copy would be served otherwise
    for result in anonymous.values():
        assert result[:2] == ["RepositoryNotFoundError", 401]


def test_wrong_token_is_a_clear_401(hub_server, tmp_path):
    out = client(hub_server, tmp_path, """
        print(json.dumps({"whoami": catch(api.whoami), "create": catch(api.create_repo, "tester/never"),
                          "read": catch(api.model_info, "tester/created")}))
    """, token="hf_wrong_token")
    assert out["whoami"][:2] == ["HfHubHTTPError", 401] and "Invalid user token" in out["whoami"][2]
    for key in ("create", "read"):
        assert out[key][:2] == ["HfHubHTTPError", 401]
        assert "Invalid credentials in Authorization header" in out[key][2]
    assert ("model", "tester/never") not in hub_server.repos


def test_storage_rejects_authorization_header(hub_server):
    # Like S3 behind a signed URL: a client that forwards its token to the CDN must fail loudly.
    request = urllib.request.Request(f"{hub_server.storage_url}/_storage/{'0' * 64}?sig=x",
                                     headers={"Authorization": f"Bearer {hub_server.token}"})
    try:
        urllib.request.urlopen(request)
    except urllib.error.HTTPError as e:
        assert e.code == 400 and "auth" in e.read().decode()
    else:
        raise AssertionError("storage accepted an Authorization header")


def test_transformers_from_pretrained_and_push_to_hub(hub_server, tmp_path):
    out = client(hub_server, tmp_path, f"""
        import torch
        from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                             intermediate_size=64, vocab_size=100))
        model.save_pretrained({str(tmp_path / "tiny")!r})
        api.create_repo("tester/tiny")
        api.upload_folder(folder_path={str(tmp_path / "tiny")!r}, repo_id="tester/tiny")

        def same(other):
            a, b = model.state_dict(), other.state_dict()
            return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)

        loaded = AutoModelForCausalLM.from_pretrained("tester/tiny")
        model.push_to_hub("tester/tiny2")
        pushed = AutoModelForCausalLM.from_pretrained("tester/tiny2")
        print(json.dumps({{"loaded": same(loaded), "pushed": same(pushed),
                          "files": api.list_repo_files("tester/tiny2")}}))
    """)
    assert out["loaded"] and out["pushed"]
    assert {"README.md", "config.json", "model.safetensors"} <= set(out["files"])
    assert any(p == "/api/validate-yaml" for _, p, _ in hub_server.requests_log)
    assert_no_secret(hub_server)
