"""The hardened HTTP server around kserve's ``ModelServer`` (``mlengine serve``).

- ``limits.py``: constants and :class:`ServerLimits` (no heavy imports);
- ``protocol.py``: uvicorn's httptools protocol with the head and body read deadlines;
- ``middleware.py``: the ASGI middlewares (request guard, request decoding, fast path);
- ``errors.py``: the JSON problem bodies ``{error, field, index}`` and the exception handlers;
- ``routes.py``: kserve's handlers with ``model_version`` and the route table;
- ``server.py``: building and running the servers (:func:`serve`).
"""
