"""The API key and the page's session: the key travels only in a header or a POSTed form, the cookie
holds a token the server signed (never the key), keys with `;`, `"` or non-ASCII characters work."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from urllib.parse import quote

import pytest

with warnings.catch_warnings():  # starlette suggests httpx2; httpx is what FastAPI documents
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from collabkit.recommend import Recommender
from collabkit.service import create_app
from collabkit.service.auth import SESSION_COOKIE, SESSION_SECONDS, Sessions, key_forms
from tests.test_service import train_tiny_model

KEYS = ["s3cret", 'semi;colon "quoted" key', "clé-ü-日本", "100%-sure"]


@pytest.fixture(scope="module")
def rec(tmp_path_factory: pytest.TempPathFactory) -> Recommender:
    folder, _ = train_tiny_model(tmp_path_factory.mktemp("auth"))
    return Recommender.load(folder)


@pytest.fixture(scope="module", params=KEYS, ids=["plain", "semicolon-quotes", "non-ascii", "percent"])
def keyed(request: pytest.FixtureRequest, rec: Recommender) -> Iterator[tuple[TestClient, str]]:
    with TestClient(create_app(rec, api_key=request.param)) as c:
        yield c, request.param


def test_the_page_logs_in_with_a_posted_form_and_a_signed_session(keyed: tuple[TestClient, str]) -> None:
    c, key = keyed
    c.cookies.clear()
    form = c.get("/")
    assert form.status_code == 401 and 'method="post" action="login"' in form.text
    assert "api_key=" not in form.text and key not in form.text  # no key, and no key-in-URL advice
    assert c.get("/static/style.css").status_code == 200  # the form's look, without the key
    wrong = c.post("/login", data={"api_key": key + "x"})
    assert wrong.status_code == 401 and "not the key" in wrong.text and SESSION_COOKIE not in wrong.cookies
    done = c.post("/login", data={"api_key": key}, follow_redirects=False)  # httpx form-encodes as UTF-8
    assert done.status_code == 303 and done.headers["location"] == "./"
    cookie = done.headers["set-cookie"]
    assert re.match(rf"{SESSION_COOKIE}=\d+\.[0-9a-f]{{64}};", cookie), cookie  # a token, not the key
    assert quote(key) not in cookie and key not in cookie
    flags = cookie.lower()
    assert "httponly" in flags and "samesite=strict" in flags and f"max-age={SESSION_SECONDS}" in flags
    assert "path=" not in flags  # the folder of /login: the service's root, under a proxy's sub-path too
    page = c.get("/")
    assert page.status_code == 200 and 'id="model-line"' in page.text
    assert c.get("/static/app.js").status_code == 200 and c.get("/items?q=film").status_code == 200
    assert c.get("/docs").status_code == 200 and c.get("/openapi.json").status_code == 200
    token = cookie.split(";")[0].split("=", 1)[1]
    c.cookies.set(SESSION_COOKIE, token[:-1] + ("1" if token[-1] == "0" else "0"))  # a forged signature
    assert c.get("/items").status_code == 401
    c.cookies.clear()


def test_the_key_in_a_header_as_is_or_percent_encoded(keyed: tuple[TestClient, str]) -> None:
    c, key = keyed
    c.cookies.clear()
    encoded = quote(key, safe="")
    assert c.get("/items", headers={"X-API-Key": encoded}).status_code == 200
    assert c.get("/items", headers={"Authorization": f"Bearer {encoded}"}).status_code == 200
    if key.isascii():
        assert c.get("/items", headers={"X-API-Key": key}).status_code == 200
    else:  # a client that sends the UTF-8 bytes unencoded is read back too
        assert c.get("/items", headers=[(b"X-API-Key", key.encode("utf-8"))]).status_code == 200
    assert c.get("/items", headers={"X-API-Key": quote(key + "!", safe="")}).status_code == 401
    assert c.get("/items", params={"api_key": key}).status_code == 401  # never in a URL
    assert c.get("/", params={"api_key": key}).status_code == 401


def test_openapi_documents_the_security_schemes(keyed: tuple[TestClient, str]) -> None:
    c, key = keyed
    doc = c.get("/openapi.json", headers={"X-API-Key": quote(key, safe="")}).json()
    schemes = doc["components"]["securitySchemes"]
    header = schemes["APIKeyHeader"]
    assert (header["type"], header["in"], header["name"]) == ("apiKey", "header", "X-API-Key")
    assert schemes["APIKeyCookie"]["in"] == "cookie" and schemes["APIKeyCookie"]["name"] == SESSION_COOKIE
    assert schemes["HTTPBearer"]["scheme"] == "bearer"
    ops = {(m, p): op for p, ms in doc["paths"].items() for m, op in ms.items()}
    assert "security" not in ops[("get", "/health")] and "401" not in ops[("get", "/health")]["responses"]
    for (method, path), op in ops.items():
        if path != "/health":
            assert {next(iter(s)) for s in op["security"]} == set(schemes), (method, path)
            assert "401" in op["responses"], (method, path)


def test_a_session_token_is_signed_expires_and_dies_with_the_secret() -> None:
    sessions = Sessions("k", secret=b"x" * 32)
    token = sessions.issue(now=1_000_000)
    assert sessions.token_valid(token, now=1_000_000 + SESSION_SECONDS - 1)
    assert not sessions.token_valid(token, now=1_000_000 + SESSION_SECONDS)
    assert not sessions.token_valid(token, now=999_000)  # issued in the future
    assert not Sessions("k", secret=b"y" * 32).token_valid(token, now=1_000_001)  # restarted: a new secret
    assert not Sessions("k").token_valid(token, now=1_000_001)  # a random secret by default
    assert Sessions("k", secret=b"x" * 32).token_valid(token, now=1_000_001)  # workers share one
    for forged in ("", "k", "1000000.", "1000000.k", "abc." + token.split(".")[1], token + "0"):
        assert not sessions.token_valid(forged, now=1_000_001), forged
    assert key_forms("a%3Bb") == {"a%3Bb", "a;b"} and key_forms("%ff") == {"%ff"}
    with pytest.raises(ValueError, match="empty"):
        Sessions("")


def test_sessions_from_one_worker_are_good_on_another(rec: Recommender) -> None:
    secret = b"s" * 32
    with (
        TestClient(create_app(rec, api_key="k", session_secret=secret)) as one,
        TestClient(create_app(rec, api_key="k", session_secret=secret)) as two,
        TestClient(create_app(rec, api_key="k")) as other,
    ):
        token = one.post("/login", data={"api_key": "k"}, follow_redirects=False).cookies[SESSION_COOKIE]
        two.cookies.set(SESSION_COOKIE, token)
        other.cookies.set(SESSION_COOKIE, token)
        assert two.get("/items").status_code == 200
        assert other.get("/items").status_code == 401
