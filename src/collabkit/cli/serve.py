"""`collabkit serve MODEL`: the HTTP service and the web page for a trained model, on uvicorn."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

import typer

from collabkit.cli.app import app, clean_errors
from collabkit.errors import CollabkitError


def is_loopback(host: str) -> bool:
    """Whether `host` only reaches this machine (127.0.0.0/8, ::1 or localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_genres(spec: str, data_name: str | None) -> tuple[dict[Any, str], str]:
    """Item genres for the map: from a table with `item` and `genres` columns, or the MovieLens release.

    `spec` is a file path, "auto" (the release the model was trained on, when it is a MovieLens
    name; none otherwise) or "none". Returns the genres and a line saying where they came from.
    """
    if spec == "none":
        return {}, "no genres (--genres none)"
    if spec == "auto":
        from collabkit.data.datasets import MOVIELENS, load_movielens

        if not data_name or data_name not in MOVIELENS:
            return {}, "no genres: the model's data is not a MovieLens release (give --genres FILE)"
        try:
            table = load_movielens(data_name, progress=False)
        except Exception as e:  # genres only colour the map: serve without them rather than not at all
            return {}, f"no genres: {data_name} could not be loaded ({e})"
        source = data_name
    else:
        import pandas as pd

        path = Path(spec)
        if not path.is_file():
            raise CollabkitError(f"--genres {spec}: file not found (expected a CSV/TSV with item and genres)")
        sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
        table = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, sep=sep)
        source = str(path)
    missing = {"item", "genres"} - set(table.columns)
    if missing:
        raise CollabkitError(f"--genres {spec}: no column {sorted(missing)[0]!r} (expected item and genres)")
    pairs = table[["item", "genres"]].drop_duplicates("item").dropna()
    genres = dict(zip(pairs["item"].tolist(), pairs["genres"].astype(str).tolist(), strict=True))
    return genres, f"genres of {len(genres):,} items from {source}"


@app.command()
def serve(
    model_dir: Annotated[Path, typer.Argument(help="A model folder written by `collabkit train`.")],
    host: Annotated[
        str, typer.Option("--host", help="Address to bind; anything but loopback needs --api-key.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="COLLABKIT_API_KEY",
            help="Key every request but /health must carry (X-API-Key header); env COLLABKIT_API_KEY.",
            show_default=False,
        ),
    ] = None,
    insecure: Annotated[
        bool, typer.Option("--insecure", help="Allow a non-loopback --host without an API key.")
    ] = False,
    genres: Annotated[
        str,
        typer.Option(
            "--genres",
            help="Colour the map by genre: auto (the MovieLens release the model was trained on), "
            "none, or a CSV/TSV/Parquet file with item and genres columns.",
        ),
    ] = "auto",
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level.")] = "warning",
) -> None:
    """Serve MODEL over HTTP: JSON endpoints (see /docs) and a web page to explore it at /."""
    with clean_errors():
        if not 0 < port < 65536:
            raise CollabkitError(f"--port must be between 1 and 65535, got {port}")
        if not is_loopback(host) and not api_key and not insecure:
            raise CollabkitError(
                f"--host {host} is reachable from other machines: give --api-key (or COLLABKIT_API_KEY), "
                "or --insecure to serve without one"
            )
        import uvicorn

        from collabkit.recommend import Recommender
        from collabkit.service import create_app
        from collabkit.service.app import bundle_of

        rec = Recommender.load(model_dir)
        data = getattr(bundle_of(rec), "data", None)
        item_genres, note = load_genres(genres, getattr(data, "name", None))
        service = create_app(rec, api_key=api_key, genres=item_genres)
        shown = f"[{host}]" if ":" in host else host
        typer.echo(f"collabkit: {note}", err=True)
        typer.echo(
            f"collabkit: serving the {bundle_of(rec).name} model from {model_dir} at http://{shown}:{port}/ "
            f"(API at /docs{', key required' if api_key else ''}); Ctrl-C stops",
            err=True,
        )
    uvicorn.run(service, host=host, port=port, log_level=log_level, access_log=False)
