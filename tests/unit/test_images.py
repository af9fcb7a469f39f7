"""Images, pure parts: references, the registry client against an in-process fake, verification, audit."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from updraft.errors import ImageError, Unavailable, ValidationError
from updraft.images import (
    Credentials,
    ImageRef,
    PullRate,
    RegistryClient,
    Use,
    audit,
    carried_digest,
    check_digest,
    default_name,
    manifest_size,
    qualify,
)

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
MANIFEST = json.dumps(
    {"schemaVersion": 2, "config": {"size": 1000}, "layers": [{"size": 40_000_000}, {"size": 2_000_000}]}
).encode()
MDIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


# -- references ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest"),
    [
        ("python:3.11-slim", None, "python", "3.11-slim", None),
        ("updraft/base:bookworm", None, "updraft/base", "bookworm", None),
        ("127.0.0.1:5000/app", "127.0.0.1:5000", "app", None, None),
        ("localhost/team/app:1", "localhost", "team/app", "1", None),
        ("reg.example.com/app:1@" + D1, "reg.example.com", "app", "1", D1),
    ],
)
def test_parse(text: str, registry: str | None, repository: str, tag: str | None, digest: str | None) -> None:
    ref = ImageRef.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)
    assert str(ref) == text


def test_pinned_form_drops_the_tag() -> None:
    ref = ImageRef.parse("127.0.0.1:5000/app:1").with_digest(D1)
    assert str(ref) == f"127.0.0.1:5000/app@{D1}" and ref.pinned and ref.reference == D1


def test_bad_reference() -> None:
    with pytest.raises(ValidationError):
        ImageRef.parse("Not A Ref")


def test_qualify_and_default_name(tmp_path: object) -> None:
    assert str(qualify("app", "127.0.0.1:5000")) == "127.0.0.1:5000/app:latest"
    assert str(qualify("reg.io/app:2", "127.0.0.1:5000")) == "reg.io/app:2"
    with pytest.raises(ValidationError, match="UPDRAFT_REGISTRY"):
        qualify("app", None)
    assert default_name("/x/Task App") == "task-app:latest"


# -- the registry client ------------------------------------------------------------------------------
class FakeRegistry:
    """Answers the distribution API the way docker-registry does; optionally behind a token challenge."""

    def __init__(self, tags: dict[str, bytes], token_auth: bool = False, send_digest: bool = True) -> None:
        self.tags, self.token_auth, self.send_digest = tags, token_auth, send_digest
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        if request.url.path == "/token":
            ok = request.headers.get("Authorization") == Credentials("u", "s3cret").basic()
            return httpx.Response(200 if ok else 401, json={"token": "T0K"})
        if self.token_auth and request.headers.get("Authorization") != "Bearer T0K":
            challenge = 'Bearer realm="http://127.0.0.1:5000/token",service="registry"'
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        reference = request.url.path.rsplit("/", 1)[1]
        body = self.tags.get(reference)
        if body is None:
            by_digest = {"sha256:" + hashlib.sha256(b).hexdigest(): b for b in self.tags.values()}
            body = by_digest.get(reference)
        if body is None:
            return httpx.Response(404, json={"errors": [{"code": "MANIFEST_UNKNOWN"}]})
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        headers = {"Docker-Content-Digest": digest} if self.send_digest else {}
        return httpx.Response(200, headers=headers, content=b"" if request.method == "HEAD" else body)


def client(fake: FakeRegistry, creds: dict[str, Credentials] | None = None) -> RegistryClient:
    return RegistryClient(creds, transport=httpx.MockTransport(fake))


def test_resolve_a_tag_to_its_digest_and_size() -> None:
    fake = FakeRegistry({"1": MANIFEST})
    got = client(fake).resolve(ImageRef.parse("127.0.0.1:5000/app:1"))
    assert got.digest == MDIGEST and str(got.ref) == f"127.0.0.1:5000/app@{MDIGEST}"
    assert got.size == 42_001_000
    assert fake.seen[0].method == "HEAD" and str(fake.seen[0].url) == "http://127.0.0.1:5000/v2/app/manifests/1"
    assert "application/vnd.oci.image.manifest.v1+json" in fake.seen[0].headers["Accept"]


def test_a_registry_that_omits_the_digest_header_is_hashed() -> None:
    got = client(FakeRegistry({"1": MANIFEST}, send_digest=False)).resolve(ImageRef.parse("127.0.0.1:5000/app:1"))
    assert got.digest == MDIGEST and got.size == 42_001_000


def test_https_unless_loopback_or_insecure() -> None:
    rc = RegistryClient(insecure=["reg.lan:5000"])
    assert rc.base_url("reg.example.com") == "https://reg.example.com"
    assert rc.base_url("reg.lan:5000") == "http://reg.lan:5000"
    assert rc.base_url("localhost:5000") == "http://localhost:5000"


def test_unknown_tag_and_digest_are_image_errors() -> None:
    rc = client(FakeRegistry({"1": MANIFEST}))
    with pytest.raises(ImageError, match=r"127\.0\.0\.1:5000/app:nope: the image could not be resolved") as err:
        rc.resolve(ImageRef.parse("127.0.0.1:5000/app:nope"))
    assert err.value.details["reason"] == "unresolved"
    with pytest.raises(ImageError, match="the image could not be resolved"):
        rc.resolve(ImageRef.parse(f"127.0.0.1:5000/app@{D1}"))


def test_no_registry_host_cannot_be_resolved() -> None:
    with pytest.raises(ImageError, match="no registry host"):
        RegistryClient().resolve(ImageRef.parse("updraft/base:bookworm"))


def test_unreachable_and_5xx_are_unavailable_and_the_cause_is_only_logged(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    with pytest.raises(Unavailable, match="the image could not be resolved") as err:
        RegistryClient(transport=httpx.MockTransport(refuse)).resolve(ImageRef.parse("127.0.0.1:5000/app:1"))
    assert "refused" not in str(err.value.to_payload()) and "refused" in caplog.text
    broken = RegistryClient(transport=httpx.MockTransport(lambda r: httpx.Response(503)))
    with pytest.raises(Unavailable, match="the image could not be resolved") as err:
        broken.resolve(ImageRef.parse("127.0.0.1:5000/app:1"))
    assert "503" not in str(err.value.to_payload()) and "answered 503" in caplog.text


def test_token_auth_with_credentials_and_secrets_never_leak() -> None:
    fake = FakeRegistry({"1": MANIFEST}, token_auth=True)
    creds = Credentials("u", "s3cret")
    rc = client(fake, {"127.0.0.1:5000": creds})
    assert rc.resolve(ImageRef.parse("127.0.0.1:5000/app:1")).digest == MDIGEST
    token_request = next(r for r in fake.seen if r.url.path == "/token")
    assert token_request.url.params["scope"] == "repository:app:pull"
    assert "s3cret" not in repr(creds) and "s3cret" not in repr(rc)
    assert all("s3cret" not in str(r.url) for r in fake.seen)
    with pytest.raises(ImageError) as err:  # wrong password: a 401, not the secret
        client(FakeRegistry({"1": MANIFEST}, token_auth=True), {"127.0.0.1:5000": Credentials("u", "wrong")}).resolve(
            ImageRef.parse("127.0.0.1:5000/app:1")
        )
    assert err.value.details["reason"] == "unresolved" and "wrong" not in str(err.value.to_payload())


def test_manifest_size() -> None:
    assert manifest_size(MANIFEST) == 42_001_000
    assert manifest_size(json.dumps({"manifests": []}).encode()) is None
    assert manifest_size(b"not json") is None


# -- verification ---------------------------------------------------------------------------------------
def test_check_digest() -> None:
    image = f"127.0.0.1:5000/app@{D1}"
    assert check_digest(image, [f"127.0.0.1:5000/app@{D1}"]) is None
    assert check_digest("127.0.0.1:5000/app:1", []) is None  # unpinned: nothing to check
    why = check_digest(image, [f"127.0.0.1:5000/app@{D2}", f"other/app@{D1}"])
    assert why is not None and "verification failed" in why and D1[:19] in why and D2[:19] in why
    assert "no digest for" in (check_digest(image, []) or "")


def test_carried_digest() -> None:
    assert carried_digest(f"r.io/app@{D1}", []) == D1
    assert carried_digest("r.io/app:1", [f"x.io/app@{D1}", f"r.io/app@{D2}"]) == D2
    assert carried_digest("r.io/app:1", []) is None


def test_pull_rate_ignores_small_pulls_and_smooths() -> None:
    rate = PullRate(alpha=0.5)
    rate.add(1000, 0.01)
    assert rate.value is None
    rate.add(10_000_000, 1.0)
    rate.add(30_000_000, 1.0)
    assert rate.value == pytest.approx(20_000_000)


# -- audit ----------------------------------------------------------------------------------------------
def test_audit_flags_drift_and_unpinned() -> None:
    uses = [
        Use("t1", f"r.io/app@{D1}", "running", "edge", submitted="r.io/app:1"),
        Use("t2", f"r.io/app@{D2}", "scheduled", "cloud", submitted="r.io/app:1"),
        Use("t3", f"r.io/tool@{D1}", "running", "edge"),
        Use("t4", "python:3.11", "running", "edge", reported=D2),
        Use("t5", "python:3.11", "scheduled", "cloud"),
    ]
    report = audit(uses)
    assert [i.name for i in report.drifted] == ["r.io/app"]
    assert sorted(u.task_id for u in report.unpinned) == ["t4", "t5"]
    assert report.exit_code() == 1 and report.exit_code(strict=True) == 1
    text = report.render()
    assert "DRIFT" in text and "drift: r.io/app runs 2 digests" in text and "unpinned: t5" in text
    assert report.to_json()["drift"] == ["r.io/app"]


def test_audit_clean_and_strict() -> None:
    pinned = audit([Use("t1", f"r.io/app@{D1}", "running", "a"), Use("t2", f"r.io/app@{D1}", "running", "b")])
    assert pinned.exit_code(strict=True) == 0 and not pinned.drifted
    loose = audit([Use("t1", "r.io/app:1", "running", "a")])
    assert loose.exit_code() == 0 and loose.exit_code(strict=True) == 1
    assert "no running or assigned tasks" in audit([]).render()
