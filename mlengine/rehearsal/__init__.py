"""`mlengine rehearse`: the cluster run rehearsed on the local Docker engine."""

import logging


class _Rehearsal(logging.LoggerAdapter):
    """The rehearsal's progress lines, each marked ``rehearse:`` on the console."""

    def process(self, msg, kwargs):
        return f"rehearse: {msg}", kwargs


log = _Rehearsal(logging.getLogger("mlengine.rehearsal"), {})
