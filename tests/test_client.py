"""The HTTP client's retry, envelope and download rules, on a transport-level fake (httpx.MockTransport)."""

from __future__ import annotations

import email.utils
import json
from pathlib import Path

import httpx
import pytest

from a2v_cli import client as client_mod
from a2v_cli.client import A2VClient, retry_delay, same_origin
from a2v_cli.errors import (
    APIAuthError,
    APIBadRequestError,
    APIConnectionError,
    APIError,
    APINotFoundError,
    APIServerError,
    APITimeoutError,
    ExitCode,
)
from a2v_cli.schema import Video

BASE = "http://a2v.test"


def ok(data: object, **extra: object) -> httpx.Response:
    return httpx.Response(200, json={"code": 0, "data": data, "message": "success", **extra})


def make(handler, retries: int = 3) -> tuple[A2VClient, list[float]]:  # type: ignore[no-untyped-def]
    slept: list[float] = []
    c = A2VClient(BASE, "secret-token", transport=httpx.MockTransport(handler), max_retries=retries,
                  sleep=slept.append)
    return c, slept


@pytest.mark.parametrize(
    ("attempt", "retry_after", "low", "high"),
    [
        (0, None, 0.375, 0.5),
        (1, None, 0.75, 1.0),
        (3, None, 3.0, 4.0),
        (10, None, 6.0, 8.0),  # capped at MAX_RETRY_DELAY
        (0, "2", 2.0, 2.0),
        (5, "0", 0.0, 0.0),
        (0, "3600", 60.0, 60.0),  # capped at MAX_RETRY_AFTER
        (0, "garbage", 0.375, 0.5),
        (0, "-5", 0.375, 0.5),
    ],
)
def test_retry_delay_table(attempt: int, retry_after: str | None, low: float, high: float) -> None:
    for _ in range(20):
        assert low <= retry_delay(attempt, retry_after) <= high


def test_retry_after_http_date() -> None:
    now = 1_000_000.0
    date = email.utils.formatdate(now + 5, usegmt=True)
    assert 4.0 <= retry_delay(0, date, now=now) <= 5.0


def test_get_retries_503_then_succeeds_honouring_retry_after() -> None:
    calls = []

    def handler(req: httpx.Request) -> httpx.Response:
        calls.append(req)
        if len(calls) < 3:
            return httpx.Response(503, headers={"Retry-After": "1"}, json={"code": 50300, "message": "busy"})
        return ok([{"avatar_id": "a", "name": "A", "brand_new_field": 1}])

    c, slept = make(handler)
    data = c.request("GET", "avatar.list")
    assert data[0]["avatar_id"] == "a" and len(calls) == 3 and slept == [1.0, 1.0]
    assert calls[0].headers["Authorization"] == "Bearer secret-token"


def test_429_retried_then_gives_up_with_exit_5() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": "0"}, json={"code": 42900, "message": "slow down"})

    c, slept = make(handler, retries=2)
    with pytest.raises(APIServerError) as err:
        c.request("GET", "video.list")
    assert len(slept) == 2 and err.value.exit_code == ExitCode.UNAVAILABLE and "slow down" in str(err.value)


def test_connection_errors_retry_for_reads_only() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=req)

    c, slept = make(handler, retries=2)
    with pytest.raises(APIConnectionError) as err:
        c.request("GET", "avatar.list")
    assert len(slept) == 2 and err.value.exit_code == ExitCode.UNAVAILABLE
    c, slept = make(handler)
    with pytest.raises(APIConnectionError):
        c.request("POST", "video.generate", json={})  # no idempotency key: never retried
    assert slept == []


def test_timeout_is_its_own_error() -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=req)

    c, _ = make(handler, retries=0)
    with pytest.raises(APITimeoutError):
        c.request("GET", "avatar.list")


def test_generate_retried_with_the_same_idempotency_key() -> None:
    keys = []

    def handler(req: httpx.Request) -> httpx.Response:
        keys.append(req.headers.get("Idempotency-Key"))
        if len(keys) == 1:
            return httpx.Response(502)
        return ok({"video_id": "vid_1", "status": "pending"})

    c, _ = make(handler)
    data = c.request("POST", "video.generate", json={"pose_id": "p", "audio_url": "http://x/a.wav"},
                     idempotency_key="key-1")
    assert data["video_id"] == "vid_1" and keys == ["key-1", "key-1"]


def test_a_409_with_retry_after_is_retried_with_the_same_key_and_one_without_is_not() -> None:
    """avatar.create answers 409 + Retry-After while the first request with its Idempotency-Key still builds
    (e.g. after a dropped connection): the retry gets the avatar. A plain 409 (the id exists) is final."""
    keys = []

    def busy_then_done(req: httpx.Request) -> httpx.Response:
        keys.append(req.headers.get("Idempotency-Key"))
        if len(keys) < 3:
            return httpx.Response(409, headers={"Retry-After": "5"},
                                  json={"code": 40900, "data": None, "message": "still being created"})
        return ok({"avatar_id": "me"})

    c, slept = make(busy_then_done)
    assert c.request("POST", "avatar.create", data={"size": "256"}, idempotency_key="k")["avatar_id"] == "me"
    assert keys == ["k"] * 3 and slept == [5, 5]

    def exists(req: httpx.Request) -> httpx.Response:
        keys.append("again")
        return httpx.Response(409, json={"code": 40900, "data": None, "message": "avatar 'me' already exists"})

    keys.clear()
    c, slept = make(exists)
    with pytest.raises(APIBadRequestError, match="already exists"):
        c.request("POST", "avatar.create", data={"size": "256"}, idempotency_key="k")
    assert keys == ["again"] and slept == []


def test_busy_answers_are_waited_out_within_the_works_deadline_not_max_retries() -> None:
    """Another avatar build of the same token (409 or 503 with Retry-After) clears by itself: the client waits
    for it up to the request's own work deadline (``work_s``), then gives up with the server's answer."""
    answers = [0]

    def busy_six_times(req: httpx.Request) -> httpx.Response:
        answers[0] += 1
        if answers[0] <= 6:
            status, code = (409, 40900) if answers[0] % 2 else (503, 50300)
            return httpx.Response(status, headers={"Retry-After": "3"},
                                  json={"code": code, "data": None, "message": "still running"})
        return ok({"avatar_id": "me"})

    c, slept = make(busy_six_times)  # 3 retries by default: the old rule gave up after the fourth answer
    assert c.request("POST", "avatar.create", data={}, idempotency_key="k", work_s=20)["avatar_id"] == "me"
    assert slept == [3] * 6 and answers[0] == 7

    answers[0] = -100  # busy for good: 3 + 3 + 3 s fit in 10 s, a fourth wait would not
    c, slept = make(busy_six_times)
    with pytest.raises(APIError, match="still running"):
        c.request("POST", "avatar.create", data={}, idempotency_key="k", work_s=10)
    assert slept == [3, 3, 3]


@pytest.mark.parametrize(
    ("status", "code", "cls", "exit_code"),
    [
        (401, 40100, APIAuthError, ExitCode.AUTH),
        (403, 40300, APIAuthError, ExitCode.AUTH),
        (404, 40400, APINotFoundError, ExitCode.NOT_FOUND),
        (400, 40000, APIBadRequestError, ExitCode.USAGE),
        (500, 50000, APIServerError, ExitCode.UNAVAILABLE),
        (200, 40400, APINotFoundError, ExitCode.NOT_FOUND),  # envelope error on HTTP 200
        (200, 40100, APIAuthError, ExitCode.AUTH),
    ],
)
def test_errors_map_to_exit_codes(status: int, code: int, cls: type, exit_code: int) -> None:
    def handler(req: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"code": code, "data": None, "message": "nope"})

    c, _ = make(handler, retries=0)
    with pytest.raises(cls) as err:
        c.request("GET", "video.get", params={"video_id": "v"})
    assert err.value.exit_code == exit_code and err.value.api_code == code and "nope" in str(err.value)


def test_non_envelope_answer_is_an_error() -> None:
    c, _ = make(lambda req: httpx.Response(200, text="<html>proxy login</html>"), retries=0)
    with pytest.raises(client_mod.APIStatusError):
        c.request("GET", "avatar.list")


def test_unknown_fields_tolerated_in_objects() -> None:
    v = Video.from_dict({"video_id": "v", "status": "finished", "vendor_extra": {"x": 1}})
    assert v.video_id == "v" and v.status == "finished"


def test_same_origin() -> None:
    assert same_origin("http://h:80/a", "http://h/b")
    assert not same_origin("http://h:8000/a", "http://h:8001/a")
    assert not same_origin("https://h/a", "http://h/a")
    assert not same_origin("http://evil.test/a", "http://h/a")


def flaky_file(body: bytes, etag: str | None, seen: list) -> object:
    """A file host whose first full answer breaks off after 5000 bytes; it honours Range and If-Range."""

    def handler(req: httpx.Request) -> httpx.Response:
        rng, if_range = req.headers.get("Range"), req.headers.get("If-Range")
        seen.append((str(req.url), rng, req.headers.get("Authorization"), if_range))
        tag = {"ETag": etag} if etag else {}
        if rng is None or (if_range is not None and if_range != etag):
            cut = body[:5000] if len(seen) == 1 else body
            return httpx.Response(200, headers={"Content-Length": str(len(body)), **tag}, content=cut)
        start = int(rng.split("=")[1].rstrip("-"))
        return httpx.Response(206, headers={"Content-Range": f"bytes {start}-{len(body) - 1}/{len(body)}", **tag},
                              content=body[start:])

    return handler


def test_download_resumes_with_range_and_keeps_token_home(tmp_path: Path) -> None:
    body = bytes(range(256)) * 400
    seen: list = []
    c, _ = make(flaky_file(body, '"v1"', seen))
    dest = tmp_path / "v.mp4"
    c.download("http://cdn.test/v.mp4?sig=abc", dest)
    assert dest.read_bytes() == body
    assert [(s[1], s[3]) for s in seen] == [(None, None), ("bytes=5000-", '"v1"')]
    assert all(s[2] is None for s in seen)  # the bearer token never goes to another host
    assert not list(tmp_path.glob(".*.part*"))
    c.download(f"{BASE}/files/v.mp4", tmp_path / "w.mp4")
    assert seen[-1][2] == "Bearer secret-token"  # but it does go to the server itself


def test_download_without_a_validator_starts_over(tmp_path: Path) -> None:
    """No ETag: nothing proves the part is the start of this file, so the retry asks for all of it."""
    body = bytes(range(256)) * 400
    seen: list = []
    c, _ = make(flaky_file(body, None, seen))
    c.download("http://cdn.test/v.mp4", tmp_path / "v.mp4")
    assert (tmp_path / "v.mp4").read_bytes() == body
    assert [s[1] for s in seen] == [None, None]


def test_download_never_resumes_another_files_part(tmp_path: Path) -> None:
    """A part (and its record) left by another file: If-Range does not match, the server sends it all."""
    body = bytes(range(256)) * 400
    (tmp_path / ".v.mp4.part").write_bytes(b"x" * 7000)
    (tmp_path / ".v.mp4.part.json").write_text(json.dumps({"url": "http://cdn.test/v.mp4", "etag": '"old"',
                                                            "total": 9000}))
    seen: list = []
    c, _ = make(flaky_file(body, '"v2"', [("first",)]))  # never breaks off
    c._http._transport = httpx.MockTransport(lambda r: (seen.append(r.headers.get("If-Range")),
                                                         flaky_file(body, '"v2"', [1])(r))[1])
    c.download("http://cdn.test/v.mp4?sig=new", tmp_path / "v.mp4")
    assert (tmp_path / "v.mp4").read_bytes() == body and seen == ['"old"']
    assert not list(tmp_path.glob(".*.part*"))


def test_download_http_error_is_typed(tmp_path: Path) -> None:
    c, _ = make(lambda req: httpx.Response(403, json={"code": 40300, "message": "signature expired"}), retries=0)
    with pytest.raises(APIAuthError):
        c.download("http://cdn.test/v.mp4", tmp_path / "v.mp4")
    assert not (tmp_path / "v.mp4").exists()


def test_envelope_json_roundtrip() -> None:
    c, _ = make(lambda req: ok({"video_id": "v", "status": "pending"}, next_cursor="abc"))
    env = c.request_envelope("GET", "video.list")
    assert env["next_cursor"] == "abc" and json.dumps(env["data"])
