"""An HTTP service and a web page over a trained model: `create_app(model)` and `collabkit serve MODEL`."""

from collabkit.service.app import MAX_BODY_BYTES, MAX_N, MAX_RATINGS, create_app

__all__ = ["MAX_BODY_BYTES", "MAX_N", "MAX_RATINGS", "create_app"]
