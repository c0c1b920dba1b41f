"""`pid serve`: start (or join) a Ray cluster, run the application, serve until interrupted."""

from __future__ import annotations

import os
import time
from typing import Optional


def start(checkpoint: str, host: str = "127.0.0.1", port: int = 8000, num_cpus: Optional[int] = None, **app_options) -> str:
    """Run the `pid` application on the Ray cluster at RAY_ADDRESS, or on a new local one
    (`num_cpus` CPUs) whose services bind to 127.0.0.1; HTTP on host:port. Returns the URL."""
    import ray
    from ray import serve

    from pid.serve.app import build_app

    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(address=os.environ["RAY_ADDRESS"])
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1", log_to_driver=False)
    serve.start(http_options={"host": host, "port": port})
    serve.run(build_app(checkpoint, **app_options), name="pid", route_prefix="/")
    return f"http://{host}:{port}"


def serve_forever(checkpoint: str, host: str, port: int, **app_options) -> None:
    from ray import serve

    url = start(checkpoint, host, port, **app_options)
    print(f"pid serve: POST {url}/decode, GET {url}/health (Ctrl-C stops)")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        serve.shutdown()
