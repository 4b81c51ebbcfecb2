"""`collabkit serve MODEL`: the HTTP service and the web page for a trained model, on uvicorn."""

from __future__ import annotations

import errno
import ipaddress
import os
import secrets
import socket
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


def check_port(host: str, port: int) -> None:
    """Refuse, in one line, a HOST:PORT this machine cannot listen on (in use, not ours, not allowed).

    A trial bind with uvicorn's own SO_REUSEADDR, before the model loads and the banner prints, so a
    port in use is one clear error rather than a banner followed by uvicorn's traceback.
    """
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise CollabkitError(f"--host {host}: not an address this machine can resolve ({e.strerror})") from e
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise CollabkitError(
                    f"port {port} on {host} is in use (another `collabkit serve`?); stop it or pick "
                    "another with --port"
                ) from e
            if e.errno == errno.EACCES:
                raise CollabkitError(
                    f"port {port} on {host}: permission denied (ports below 1024 need privileges; "
                    "pick another with --port)"
                ) from e
            raise CollabkitError(f"cannot listen on {host} port {port}: {e.strerror}") from e


def load_genres(spec: str, data_name: str | None) -> tuple[dict[Any, str], str]:
    """Item genres for the map: from a table with `item` and `genres` columns, or the MovieLens release.

    `spec` is a file path, "auto" (the release the model was trained on, when it is a MovieLens
    name; none otherwise) or "none". Returns the genres and a line saying where they came from.
    """
    if spec == "none":
        return {}, "no genres (--genres none)"
    if spec != "auto":
        # lazy: the table reader (pandas, pyarrow) only when a genres file is given
        from collabkit.data.tables import read_item_genres

        path = Path(spec)
        if not path.is_file():
            raise CollabkitError(f"--genres {spec}: file not found (expected a CSV/TSV with item and genres)")
        genres = read_item_genres(path)  # a bad file is one DataError line with its line and column
        return genres, f"genres of {len(genres):,} items from {path}"
    # lazy: the MovieLens loaders only when genres are asked for by release name
    from collabkit.data.datasets import MOVIELENS, load_movielens

    if not data_name or data_name not in MOVIELENS:
        return {}, "no genres: the model's data is not a MovieLens release (give --genres FILE)"
    try:
        table = load_movielens(data_name, progress=False)
    except Exception as e:  # genres only colour the map: serve without them rather than not at all
        return {}, f"no genres: {data_name} could not be loaded ({e})"
    pairs = table[["item", "genres"]].drop_duplicates("item").dropna()
    genres = dict(zip(pairs["item"].tolist(), pairs["genres"].astype(str).tolist(), strict=True))
    return genres, f"genres of {len(genres):,} items from {data_name}"


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
            help="Key every request but /health must carry: X-API-Key header (percent-encoded as UTF-8 if "
            "not ASCII) or Authorization: Bearer; the page logs in with a form. Env COLLABKIT_API_KEY.",
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
    threads: Annotated[
        int,
        typer.Option(
            "--threads",
            help="PyTorch threads: 1 is fastest for one request's small products (more only contend).",
        ),
    ] = 1,
    workers: Annotated[
        int, typer.Option("--workers", help="Worker processes, each with its own copy of the model.")
    ] = 1,
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
        if threads < 1:
            raise CollabkitError(f"--threads must be at least 1, got {threads}")
        if workers < 1:
            raise CollabkitError(f"--workers must be at least 1, got {workers}")
        check_port(host, port)  # before the model loads and the banner prints
        import uvicorn

        secret = secrets.token_hex(32)  # signs the page's sessions; one for every worker process
        service, name, note = build_app(model_dir, api_key, genres, threads, secret)  # errors show here
        shown = f"[{host}]" if ":" in host else host
        typer.echo(f"collabkit: {note}", err=True)
        typer.echo(
            f"collabkit: serving the {name} model from {model_dir} at http://{shown}:{port}/ "
            f"(API at /docs{', key required' if api_key else ''}; {workers} worker"
            f"{'s' if workers > 1 else ''}); Ctrl-C stops",
            err=True,
        )
    options: dict[str, Any] = {"host": host, "port": port, "log_level": log_level, "access_log": False}
    if workers == 1:
        uvicorn.run(service, **options)
        return
    del service  # each worker process loads its own copy
    os.environ.update(
        {
            "COLLABKIT_SERVE_MODEL": str(model_dir),
            "COLLABKIT_SERVE_GENRES": genres,
            "COLLABKIT_SERVE_THREADS": str(threads),
            "COLLABKIT_API_KEY": api_key or "",
            "COLLABKIT_SERVE_SECRET": secret,
        }
    )
    uvicorn.run("collabkit.cli.serve:app_from_env", factory=True, workers=workers, **options)


def build_app(
    model_dir: Path, api_key: str | None, genres: str, threads: int, secret: str | None = None
) -> tuple[Any, str, str]:
    """The service for a model folder: (the app, the model's name, where its genres came from).

    Any family serves: the routes its capabilities cannot answer are refused one by one (422).
    """
    import torch

    # lazy: torch, the model and FastAPI load only when the command serves, not for `collabkit --help`
    from collabkit.recommend import Recommender
    from collabkit.service import create_app

    torch.set_num_threads(threads)
    rec = Recommender.load(model_dir)
    trained = rec.trained
    item_genres, note = load_genres(genres, None if trained.data is None else trained.data.name)
    sessions = bytes.fromhex(secret) if secret else None
    service = create_app(rec, api_key=api_key, genres=item_genres, session_secret=sessions)
    return service, trained.name, note


def app_from_env() -> Any:
    """The app each worker process builds under --workers, from the COLLABKIT_SERVE_* variables."""
    env = os.environ
    app, _, _ = build_app(
        Path(env["COLLABKIT_SERVE_MODEL"]),
        env.get("COLLABKIT_API_KEY") or None,
        env.get("COLLABKIT_SERVE_GENRES", "auto"),
        int(env.get("COLLABKIT_SERVE_THREADS", "1")),
        env.get("COLLABKIT_SERVE_SECRET") or None,
    )
    return app
