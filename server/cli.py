"""The ``python -m server`` command line: one command that runs the HTTP service."""

import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from nets.cli_util import make_app

app = make_app("Serve encrypted inference.")


@app.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    models: Annotated[Path, typer.Option(help="Directory of checkpoints (*.pt) to serve.")] = Path(
        "runs/models"
    ),
    state: Annotated[Path, typer.Option(help="Where registered keys are kept.")] = Path(
        "runs/server-state"
    ),
    token: Annotated[str | None, typer.Option(envvar="CRYPTOROBUST_TOKEN")] = None,
    workers: int = 1,
    backend: Annotated[
        str, typer.Option(help="Where batch jobs run: process (local pool) or ray.")
    ] = "process",
    ray_address: Annotated[
        str | None, typer.Option(help="Ray cluster address (default: start a local Ray).")
    ] = None,
    bfv_bits: Annotated[
        int | None, typer.Option(help="Bits of NAME-bfv's weights and activations (default 4).")
    ] = None,
) -> None:
    """Run the HTTP service (uvicorn)."""
    import uvicorn

    from nets.errors import UserError
    from server.app import create_app
    from server.settings import Settings

    if backend not in ("process", "ray"):
        raise UserError(f"--backend {backend}: choose process or ray")
    settings = Settings(
        models_dir=models,
        state_dir=state,
        token=token,
        workers=workers,
        backend=backend,
        ray_address=ray_address,
        **({"bfv_bits": bfv_bits} if bfv_bits is not None else {}),
    )
    if token is None and not _loopback(host):
        print(
            f"warning: serving on {host} without --token: anyone who can reach this port can "
            "register keys and run inference (set --token or CRYPTOROBUST_TOKEN)",
            file=sys.stderr,
        )
    service = create_app(settings)
    handler = logging.StreamHandler()  # the server's own lines (uploads …) beside uvicorn's
    handler.setFormatter(logging.Formatter("%(levelname)s:     %(name)s: %(message)s"))
    logging.getLogger("server").addHandler(handler)
    logging.getLogger("server").setLevel(logging.INFO)
    shown = f"[{host}]" if ":" in host else host
    print(f"the browser client: http://{shown}:{port}/", flush=True)
    # uvicorn waits this long for in-flight requests on SIGTERM/SIGINT, then runs the
    # app's shutdown (jobs marked failed, workers stopped) and re-raises the signal
    uvicorn.run(
        service,
        host=host,
        port=port,
        log_level="info",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace_s)),
    )


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
