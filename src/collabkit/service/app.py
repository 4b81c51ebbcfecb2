"""The FastAPI app over a trained model: `create_app`, the API-key and body-size guard, error
handlers, the page and `/docs`. The routes are in `routes.py`, their bodies in `schemas.py`, what
they receive in `deps.py`.

`create_app(path_or_recommender)` loads the model once and answers JSON: recommendations for a known
user or for a new user's ratings, similar items, predictions, explained predictions, title search,
the embedding map, the biases and the model's own settings and training history. `GET /` is the web
page in `static/`, served by the same process. Every answer is deterministic: the same request gives
the same bytes. Any family serves: a route its capabilities cannot answer is refused with 422.

Errors are JSON with a `detail`: 404 for an unknown user or item (and for a title naming several
items, with the `candidates`), 422 for bad parameters, a question the family cannot answer or any
other `CollabkitError`, 413 for a body over `MAX_BODY_BYTES`, 401 for a missing or wrong API key.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from collabkit.errors import AmbiguousIdError, CollabkitError, UnknownIdError
from collabkit.recommend import Recommender
from collabkit.service.deps import VERSION, build_state, plain
from collabkit.service.routes import router
from collabkit.service.schemas import MAX_BODY_BYTES, MAX_BODY_RATINGS

STATIC = Path(__file__).with_name("static")
KEY_HEADER = "x-api-key"
KEY_COOKIE = "collabkit_key"
# /docs runs Swagger UI 5.35.0 (npm swagger-ui-dist@5.35.0, Apache-2.0; licences in
# static/swagger-ui-bundle.js.LICENSE.txt), shipped in static/: Swagger UI 4 cannot read the
# OpenAPI 3.1 that FastAPI writes ("Unable to render this definition"), and a CDN is not offline.
SWAGGER_JS = "static/swagger-ui-bundle.js"
SWAGGER_CSS = "static/swagger-ui.css"
PAGE_HEADERS = {  # the page loads only its own files and talks only to this service
    "cache-control": "no-cache",
    "content-security-policy": "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}

Receive = Callable[[], Awaitable[Any]]
Send = Callable[[Any], Awaitable[None]]
ASGIApp = Callable[[MutableMapping[str, Any], Receive, Send], Awaitable[None]]


def _check_key(scope: MutableMapping[str, Any], api_key: str) -> bool:
    """Whether the request carries `api_key`: header, bearer token, cookie, or `/?api_key=` for the page."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
    given = headers.get(KEY_HEADER)
    auth = headers.get("authorization", "")
    if given is None and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if given is None:
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == KEY_COOKIE:
                given = value
    if given is None and scope.get("path") == "/":
        given = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("api_key") or [None])[0]
    return given is not None and hmac.compare_digest(given.encode(), api_key.encode())


class _Guard:
    """ASGI middleware: the API key (every path but /health) and the body-size cap, before routing."""

    def __init__(self, app: ASGIApp, api_key: str | None, max_body: int) -> None:
        self.app, self.api_key, self.max_body = app, api_key, max_body

    async def __call__(self, scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.api_key and scope.get("path") != "/health" and not _check_key(scope, self.api_key):
            await _send_json(
                send, 401, {"detail": f"missing or wrong API key: send it in the {KEY_HEADER!r} header "
                            "(or 'Authorization: Bearer KEY'); for the page, open /?api_key=KEY once"},
                [(b"www-authenticate", b'Bearer realm="collabkit"')],
            )  # fmt: skip
            return
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    size = self.max_body + 1
                if size > self.max_body:
                    await _send_json(send, 413, {"detail": _too_large(self.max_body)})
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


async def _send_json(
    send: Send, status: int, body: Any, extra: list[tuple[bytes, bytes]] | None = None
) -> None:
    data = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers + (extra or [])})
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


async def _invalid(_: Request, e: Exception) -> JSONResponse:
    found = e.errors() if isinstance(e, RequestValidationError) else []
    errors = [
        {"loc": list(err.get("loc", ())), "msg": str(err.get("msg", "")), "type": str(err.get("type", ""))}
        for err in found
    ]
    summary = "; ".join(f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in errors)
    return JSONResponse({"detail": summary or "invalid request", "errors": errors}, status_code=422)


def create_app(
    model: str | Path | Recommender,
    *,
    api_key: str | None = None,
    genres: Mapping[Any, str] | None = None,
    max_body: int = MAX_BODY_BYTES,
    title: str = "collabkit",
) -> FastAPI:
    """A FastAPI app answering for one trained model, loaded once (a folder, or a Recommender).

    Args:
        api_key: when given, every path but /health needs it (header `X-API-Key`, `Authorization:
            Bearer`, or for the page `/?api_key=KEY` once, which sets a cookie).
        genres: raw item id -> "Genre|Genre", to colour the map (saved models keep no genres).
        max_body: the largest request body in bytes; larger ones get 413.
    """
    rec = model if isinstance(model, Recommender) else Recommender.load(model)
    app = FastAPI(
        title=f"{title}: {rec.trained.name} model",
        version=VERSION,
        description="Recommendations, similar items, predictions and explanations from a trained model. "
        "A route the model's family cannot answer (`x-requires` names what it needs) answers 422.",
        docs_url=None,  # FastAPI's own /docs loads Swagger UI from a CDN; ours serves it from the package
        redoc_url=None,
    )
    app.state.service = build_state(rec, genres)
    app.add_middleware(_Guard, api_key=api_key or None, max_body=max_body)  # type: ignore[arg-type]
    app.add_exception_handler(AmbiguousIdError, _ambiguous)
    app.add_exception_handler(UnknownIdError, _unknown)
    app.add_exception_handler(CollabkitError, _bad_input)
    app.add_exception_handler(Exception, _failed)
    app.add_exception_handler(RequestValidationError, _invalid)
    app.include_router(router)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        response = FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)
        if api_key:  # the page's own requests then carry the key
            response.set_cookie(KEY_COOKIE, api_key, httponly=True, samesite="strict")
        return response

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
