"""The API key and the page's session: who may ask, and how the key never lands in a URL or a cookie.

A client sends the key in the `X-API-Key` header (or `Authorization: Bearer KEY`). A header carries
only ASCII safely, so a key with other characters is sent percent-encoded as UTF-8
(`urllib.parse.quote(key, safe="")`); the service accepts the key as sent or percent-decoded. The web
page logs in with a form that POSTs the key to `/login` (so it is in no URL, history or proxy log);
the answer is a session cookie holding a token signed by the server (HMAC-SHA256 over its issue
time, with a secret made per process, or shared by `collabkit serve`'s workers), never the key. A
token is good for `SESSION_SECONDS` and dies with the secret when the service restarts.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import html
import secrets
import time
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote

from fastapi import HTTPException, Request, Security
from fastapi.security import APIKeyCookie, APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

KEY_HEADER = "X-API-Key"
SESSION_COOKIE = "collabkit_session"
SESSION_SECONDS = 12 * 3600
LOGIN_PAGE = Path(__file__).with_name("static") / "login.html"
REFUSED = (
    f"missing or wrong API key: send it in the {KEY_HEADER!r} header (percent-encoded as UTF-8 if it "
    "has characters other than ASCII) or as 'Authorization: Bearer KEY'; on the page, log in at /"
)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="collabkit"'}

# The schemes as OpenAPI documents them (Swagger UI's "Authorize"); the guard in app.py checks the
# same credentials for every path before routing, the `authenticated` dependency again per route.
key_header = APIKeyHeader(
    name=KEY_HEADER,
    auto_error=False,
    description="The API key; percent-encoded (UTF-8) when it has characters other than ASCII.",
)
session_cookie = APIKeyCookie(
    name=SESSION_COOKIE,
    auto_error=False,
    description="The page's session: a token signed by the server, set by POST /login (not the key).",
)
bearer = HTTPBearer(auto_error=False, description="The API key as a bearer token (same rule as the header).")


def key_forms(value: str) -> set[str]:
    """The keys a header value may stand for: as sent, percent-decoded, and raw UTF-8 bytes read back.

    Starlette reads header bytes as Latin-1, so a client that sent the key's UTF-8 bytes unencoded
    is read back too.
    """
    forms = {value}
    with contextlib.suppress(UnicodeDecodeError):  # a % sequence that is not UTF-8: no encoded key
        forms.add(unquote(value, errors="strict"))
    with contextlib.suppress(UnicodeError):
        forms.add(value.encode("latin-1").decode("utf-8"))
    return forms


class Sessions:
    """The service's key and the secret that signs the page's session tokens."""

    def __init__(self, api_key: str, secret: bytes | None = None) -> None:
        if not api_key:
            raise ValueError("an empty API key protects nothing; give none to serve without one")
        self._key = api_key.encode("utf-8")
        self._secret = secret or secrets.token_bytes(32)

    def key_matches(self, given: str | None) -> bool:
        """Whether `given` (a header's value, or a form field) is the key, in constant time per form."""
        if not given:
            return False
        return any(hmac.compare_digest(f.encode("utf-8"), self._key) for f in key_forms(given))

    def _sign(self, issued: str) -> str:
        return hmac.new(self._secret, f"collabkit-session:{issued}".encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        """A new session token: `issued.signature`, ASCII only (no key, nothing a cookie must quote)."""
        issued = str(int(time.time() if now is None else now))
        return f"{issued}.{self._sign(issued)}"

    def token_valid(self, token: str | None, now: float | None = None) -> bool:
        """Whether `token` was signed by this service and is younger than `SESSION_SECONDS`."""
        issued, _, signature = (token or "").partition(".")
        if not issued.isdigit() or len(issued) > 12 or not hmac.compare_digest(signature, self._sign(issued)):
            return False
        age = (time.time() if now is None else now) - int(issued)
        return 0 <= age < SESSION_SECONDS

    def accepts(self, header: str | None, bearer_token: str | None, cookie: str | None) -> bool:
        """Whether any of the request's credentials holds: the key (header or bearer), or a session."""
        return self.key_matches(header) or self.key_matches(bearer_token) or self.token_valid(cookie)


async def authenticated(
    request: Request,
    header: Annotated[str | None, Security(key_header)],
    cookie: Annotated[str | None, Security(session_cookie)],
    token: Annotated[HTTPAuthorizationCredentials | None, Security(bearer)],
) -> None:
    """Dependency of every route when the service has a key: 401 unless a credential holds."""
    sessions: Sessions = request.app.state.sessions
    if not sessions.accepts(header, None if token is None else token.credentials, cookie):
        raise HTTPException(401, REFUSED, headers=CHALLENGE)


def login_page(message: str = "") -> str:
    """The login form, with `message` (escaped) above it: why the last try failed, if it did."""
    text = LOGIN_PAGE.read_text(encoding="utf-8")
    shown = f'<p class="error" role="alert">{html.escape(message)}</p>' if message else ""
    return text.replace("<!-- message -->", shown)
