"""Every workaround for kserve internals, in one place (written against kserve 0.21, FastAPI 0.165).

- :func:`kserve_argv` / :func:`hide_argv_from_kserve`: ``kserve.model_server`` parses ``sys.argv``
  with its own argparse when it is imported, so our own command line (``mlengine serve --model
  ...``) would be read as kserve's (unknown options exit the process). Imports of kserve run with
  ``sys.argv`` cut to the program name; the CLI cuts it for good, because spawned workers
  re-import kserve with the parent's ``sys.argv``.
- :func:`kserve_routes`: calls the private ``RESTServer._register_endpoints`` on a scratch app to
  get kserve's route table as a list, because FastAPI 0.165 keeps included routers nested with
  cached views that cannot be edited in place (we drop the repository extension and ``:explain``).
- :class:`PatientRESTServerMultiProcess`: overrides ``keep_subprocess_alive`` (reading the
  private ``RESTServerProcess._process``): kserve kills a worker that does not answer its ping
  within 5 s, which a worker still importing TensorFlow on 2 busy cores cannot do.
- :func:`attach_worker_server`: sets the private ``RESTServerMultiProcess._rest_server``, the server
  each spawned worker runs, so that workers run our hardened server class.

``http/server.py`` also overrides kserve's private ``RESTServer._add_middlewares`` /
``_register_endpoints`` and mirrors ``ModelServer.start`` (calling ``_serve`` and
``_register_and_check_atleast_one_model_is_ready``): re-check those when kserve is upgraded.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


def hide_argv_from_kserve() -> list[str]:
    """Cut ``sys.argv`` to the program name (kserve parses it on import); returns the old one."""
    argv, sys.argv = sys.argv, sys.argv[:1]
    return argv


@contextmanager
def kserve_argv() -> Iterator[None]:
    """Import kserve (or anything importing it) inside this block: ``sys.argv`` is hidden, then restored."""
    argv = hide_argv_from_kserve()
    try:
        yield
    finally:
        sys.argv = argv


with kserve_argv():
    from fastapi.routing import APIRoute
    from kserve.logging import logger
    from kserve.protocol.rest.multiprocess.server import RESTServerMultiProcess, RESTServerProcess
    from kserve.protocol.rest.server import RESTServer


def kserve_routes(server: RESTServer) -> list[APIRoute]:
    """kserve's own route table (``RESTServer._register_endpoints``), collected on a scratch app.

    FastAPI 0.165 keeps included routers nested (``_IncludedRouter``) with cached views, so the
    table is edited as a list here and registered on the real app once, instead of in place.
    """
    from fastapi import FastAPI

    scratch = FastAPI()
    RESTServer._register_endpoints(server, scratch)
    routes: list[APIRoute] = []

    def walk(router) -> None:
        for route in router.routes:
            if isinstance(route, APIRoute):
                routes.append(route)
            elif hasattr(route, "original_router"):
                walk(route.original_router)

    walk(scratch.router)
    return routes


def attach_worker_server(multi: RESTServerMultiProcess, rest_server: RESTServer) -> None:
    """Make every worker of ``multi`` run ``rest_server`` (kserve 0.21 attribute)."""
    multi._rest_server = rest_server


class PatientRESTServerMultiProcess(RESTServerMultiProcess):
    """kserve's multi-worker REST server with a startup grace before the liveness pings.

    kserve pings every worker each 0.5 s and kills one that does not answer within 5 s, but a
    spawned worker only starts answering after it has imported kserve and unpickled the model
    registry; on a busy 2-core machine that alone can take longer, and the worker is then killed
    and respawned forever. Workers younger than ``startup_grace_s`` are only checked for being
    alive at all; after that kserve's ping applies as before.
    """

    startup_grace_s = 180.0

    async def keep_subprocess_alive(self, sockets) -> None:
        if self.should_exit.is_set():
            return
        for index, process in enumerate(self._processes):
            if _age_s(process.pid) < self.startup_grace_s and process._process.is_alive():
                continue
            if not process.is_alive():
                process.kill()
                await process.wait_for_termination()
                if self.should_exit.is_set():
                    return
                logger.info("Child process [%s] died", process.pid)
                process = RESTServerProcess(sockets, self._rest_server.run)
                process.start()
                self._processes[index] = process
                logger.info("Started new child process [%s]", process.pid)


def _age_s(pid: int | None) -> float:
    import time

    import psutil

    try:
        return time.time() - psutil.Process(pid).create_time()
    except (psutil.NoSuchProcess, ValueError, TypeError):
        return float("inf")
