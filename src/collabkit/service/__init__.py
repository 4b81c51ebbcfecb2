"""An HTTP service and a web page over a trained model: `create_app(model)` and `collabkit serve MODEL`.

app.py (the app, its guard and error handlers), routes.py (the routes, on two module-level routers:
`public` for /health, `router` for the rest), schemas.py (request and response bodies, the
per-request caps), deps.py (what the routes receive), auth.py (the API key and the page's session).
"""

from collabkit.service.app import create_app
from collabkit.service.routes import public, router
from collabkit.service.schemas import MAX_BODY_BYTES, MAX_BODY_RATINGS, MAX_RESULTS

__all__ = ["MAX_BODY_BYTES", "MAX_BODY_RATINGS", "MAX_RESULTS", "create_app", "public", "router"]
