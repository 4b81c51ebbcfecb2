"""The FastAPI app over a trained model: `create_app`, the API-key and body-size guard, error
handlers, the page, its login and `/docs`. The routes are in `routes.py`, their bodies in
`schemas.py`, what they receive in `deps.py`, the key and the page's session in `auth.py`.

`create_app(path_or_recommender)` loads the model once and answers JSON: recommendations for a known
user or for a new user's ratings, similar items, predictions, explained predictions, title search,
the embedding map, the biases and the model's own settings and training history. `GET /` is the web
page in `static/`, served by the same process. Every answer is deterministic: the same request gives
the same bytes. Any family serves: a route its capabilities cannot answer is refused with 422.

Every error is JSON in one documented shape (`schemas.ErrorResponse`: a one-line `detail`, plus
`errors` for a bad field or `candidates` for an ambiguous title): 404 for an unknown user or item,
422 for bad parameters or body (a body that is not UTF-8 JSON of finite numbers included), a
question the family cannot answer or any other `CollabkitError`, 413 for a body over
`MAX_BODY_BYTES`, 401 for a missing or wrong API key, 405 with every method of the path in `Allow`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request, Security
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Mount

from collabkit.errors import AmbiguousIdError, CollabkitError, UnknownIdError
from collabkit.recommend import Recommender
from collabkit.service.auth import (
    CHALLENGE,
    KEY_HEADER,
    REFUSED,
    SESSION_COOKIE,
    SESSION_SECONDS,
    Sessions,
    authenticated,
    login_page,
)
from collabkit.service.deps import VERSION, build_state, plain
from collabkit.service.routes import public, router
from collabkit.service.schemas import MAX_BODY_BYTES, MAX_BODY_RATINGS, UNAUTHORIZED

STATIC = Path(__file__).with_name("static")
OPEN_PATHS = ("/health", "/login", "/static/style.css")  # no key: liveness, the login form, its look
# /docs runs Swagger UI 5.35.0 (npm swagger-ui-dist@5.35.0, Apache-2.0; licences in
# static/swagger-ui-bundle.js.LICENSE.txt), shipped in static/: Swagger UI 4 cannot read the
# OpenAPI 3.1 that FastAPI writes ("Unable to render this definition"), and a CDN is not offline.
SWAGGER_JS = "static/swagger-ui-bundle.js"
SWAGGER_CSS = "static/swagger-ui.css"
PAGE_HEADERS = {  # the page loads only its own files and talks only to this service
    "cache-control": "no-cache",
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")

Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


def _credentials(scope: MutableMapping[str, Any]) -> tuple[str | None, str | None, str | None]:
    """The request's key header, bearer token and session cookie (each None when absent)."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    auth = headers.get("authorization", "")
    token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
    cookie = None
    for part in headers.get("cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name == SESSION_COOKIE:
            cookie = value
    return headers.get(KEY_HEADER.lower()), token, cookie


class _Guard:
    """ASGI middleware: the API key or session (every path but `OPEN_PATHS`) and the body-size cap,
    before routing, so a refused request reaches no route, no body parser and no static file."""

    def __init__(self, app: ASGIApp, sessions: Sessions | None, max_body: int) -> None:
        self.app, self.sessions, self.max_body = app, sessions, max_body

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path")
        if self.sessions and path not in OPEN_PATHS and not self.sessions.accepts(*_credentials(scope)):
            if path == "/" and scope.get("method") in ("GET", "HEAD"):  # the page: its login form
                await _send(send, 401, login_page().encode(), b"text/html; charset=utf-8", PAGE_HEADERS)
            else:
                body = json.dumps({"detail": REFUSED}).encode()
                await _send(send, 401, body, b"application/json", CHALLENGE)
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = self.max_body + 1
                if size > self.max_body:
                    body = json.dumps({"detail": _too_large(self.max_body)}).encode()
                    await _send(send, 413, body, b"application/json")
                    return
        seen = 0
        max_body = self.max_body

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > max_body:
                    raise HTTPException(413, _too_large(max_body))
            return message

        await self.app(scope, limited, send)


def _too_large(limit: int) -> str:
    return f"request body over {limit:,} bytes; send at most {MAX_BODY_RATINGS} ratings"


async def _send(
    send: Send, status: int, data: bytes, content_type: bytes, extra: Mapping[str, str] | None = None
) -> None:
    headers = [(b"content-type", content_type), (b"content-length", str(len(data)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})


async def _ambiguous(_: Request, e: Exception) -> JSONResponse:
    candidates = e.candidates if isinstance(e, AmbiguousIdError) else []
    return JSONResponse({"detail": str(e), "candidates": plain(candidates)}, status_code=404)


async def _unknown(_: Request, e: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(e)}, status_code=404)


async def _bad_input(_: Request, e: Exception) -> JSONResponse:
    return JSONResponse({"detail": str(e)}, status_code=422)


async def _failed(_: Request, e: Exception) -> JSONResponse:  # logged by uvicorn; the service stays up
    return JSONResponse({"detail": f"internal error ({type(e).__name__}); see the server's log"}, 500)


def _message(err: Mapping[str, Any]) -> str:
    """A validation error's message; for a body that is not JSON, what was wrong with it."""
    msg = str(err.get("msg", ""))
    ctx = err.get("ctx")
    if err.get("type") == "json_invalid" and isinstance(ctx, Mapping) and ctx.get("error"):
        msg = f"{msg}: {ctx['error']}"
    return msg


async def _invalid(_: Request, e: Exception) -> JSONResponse:
    """422 in the documented `ErrorResponse` shape: a one-line `detail`, and each field in `errors`."""
    found = e.errors() if isinstance(e, RequestValidationError) else []
    errors = [
        {"loc": [p if isinstance(p, int) else str(p) for p in err.get("loc", ())], "msg": _message(err),
         "type": str(err.get("type", ""))}
        for err in found
    ]  # fmt: skip
    summary = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in errors)
    return JSONResponse({"detail": summary or "invalid request", "errors": errors}, status_code=422)


def allowed_methods(request: Request) -> list[str]:
    """Every method some route of the app answers at the request's path (for a 405's `Allow`).

    Asked of the router itself, method by method: one route knows only its own methods, so Starlette's
    405 for `OPTIONS /recommend` named GET and not POST. Static files (a mount) keep their own rule.
    """
    allowed = []
    for method in HTTP_METHODS:
        scope = {**request.scope, "method": method}
        routes = (r for r in request.app.router.routes if not isinstance(r, Mount))
        if any(r.matches(scope)[0] == Match.FULL for r in routes):
            allowed.append(method)
    return allowed


async def _http_error(request: Request, e: Exception) -> Response:
    """Starlette's errors in the one error shape; a 405 lists every method of the path, not one route's."""
    if not isinstance(e, StarletteHTTPException):
        raise e
    headers = dict(e.headers or {})
    allowed = allowed_methods(request) if e.status_code == 405 else []
    if allowed:  # (static files answer their own 405)
        headers["Allow"] = ", ".join(allowed)
    return await http_exception_handler(request, StarletteHTTPException(e.status_code, e.detail, headers))


def create_app(
    model: str | Path | Recommender,
    *,
    api_key: str | None = None,
    genres: Mapping[Any, str] | None = None,
    max_body: int = MAX_BODY_BYTES,
    title: str = "collabkit",
    session_secret: bytes | None = None,
) -> FastAPI:
    """A FastAPI app answering for one trained model, loaded once (a folder, or a Recommender).

    Args:
        api_key: when given, every path but /health needs it: header `X-API-Key` (percent-encoded
            as UTF-8 if it has characters other than ASCII) or `Authorization: Bearer`; the page
            logs in with a form that POSTs it to /login and gets a signed session cookie.
        genres: raw item id -> "Genre|Genre", to colour the map (saved models keep no genres).
        max_body: the largest request body in bytes; larger ones get 413.
        session_secret: signs the page's session tokens; by default random per app. Worker
            processes serving one port share one, so a session from one is good on the others.
    """
    rec = model if isinstance(model, Recommender) else Recommender.load(model)
    app = FastAPI(
        title=f"{title}: {rec.trained.name} model",
        version=VERSION,
        description="Recommendations, similar items, predictions and explanations from a trained model. "
        "A route the model's family cannot answer (`x-requires` names what it needs) answers 422. "
        "Every error is an `ErrorResponse`.",
        docs_url=None,  # FastAPI's own /docs loads Swagger UI from a CDN; ours serves it from the package
        redoc_url=None,
    )
    sessions = Sessions(api_key, session_secret) if api_key else None
    app.state.service = build_state(rec, genres)
    app.state.sessions = sessions
    app.add_middleware(_Guard, sessions=sessions, max_body=max_body)  # type: ignore[arg-type]
    app.add_exception_handler(AmbiguousIdError, _ambiguous)
    app.add_exception_handler(UnknownIdError, _unknown)
    app.add_exception_handler(CollabkitError, _bad_input)
    app.add_exception_handler(Exception, _failed)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.include_router(public)
    if sessions is None:
        app.include_router(router)
    else:  # the guard refuses first; the dependency documents the schemes (and checks again)
        app.include_router(router, dependencies=[Security(authenticated)], responses=UNAUTHORIZED)

        @app.post("/login", include_in_schema=False)
        async def login(request: Request) -> Response:
            """The page's login form: the key in a POST body, answered with a signed session cookie."""
            try:
                fields = parse_qs((await request.body()).decode("ascii"), errors="strict")
            except UnicodeError:  # a form body is ASCII, its key percent-encoded as UTF-8
                fields = {}
            if not sessions.key_matches((fields.get("api_key") or [""])[0]):
                page = login_page("That is not the key this service was started with.")
                return HTMLResponse(page, status_code=401, headers=PAGE_HEADERS)
            response = RedirectResponse("./", status_code=303)  # relative: works under a proxy's sub-path
            response.set_cookie(
                SESSION_COOKIE,
                sessions.issue(),
                max_age=SESSION_SECONDS,
                path=None,  # the folder of /login: the service's root, also under a proxy's sub-path
                secure=request.url.scheme == "https",
                httponly=True,
                samesite="strict",
            )
            return response

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        """Swagger UI from the package's own files (nothing from a CDN: works offline)."""
        return get_swagger_ui_html(
            openapi_url="openapi.json",
            title=app.title,
            swagger_js_url=SWAGGER_JS,
            swagger_css_url=SWAGGER_CSS,
            swagger_favicon_url="data:,",  # no icon rather than one from the internet
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app
