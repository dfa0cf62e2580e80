"""``mlengine serve``'s server with a model that misbehaves on marked rows (tests only).

    python -m tests.components.deploy.faulty_server --model DIR --port P --name N [--delay S]
        [--workers N] [--request-timeout S] [--serving-log DIR] [--model-thread]

Rows with ``passenger_count == RAISE_PASSENGERS`` make the model raise (a server fault whose
message must not reach the client); rows with ``passenger_count == SLOW_PASSENGERS`` make each
model call sleep ``--delay`` seconds first (in-flight requests for the shutdown and request
timeout tests). Every other row is predicted by the real SavedModel.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from mlengine.components.deploy.predictor import RawFeaturePredictor  # cuts sys.argv around its kserve import

RAISE_PASSENGERS = 6
SLOW_PASSENGERS = 5
SECRET = "secret-internal-detail /opt/model/weights"  # must never appear in a response
ENV_DELAY = "MLENGINE_TEST_DELAY_S"


class FaultyPredictor(RawFeaturePredictor):
    """The real predictor with a model call that raises or stalls on marked rows (module level: picklable)."""

    def load(self) -> bool:
        ready = super().load()
        real, delay = self._runner, float(os.environ.get(ENV_DELAY, "2"))  # read here: also in spawned workers

        def run(columns):
            passengers = columns["passenger_count"]
            if (passengers == RAISE_PASSENGERS).any():
                raise RuntimeError(SECRET)
            if (passengers == SLOW_PASSENGERS).any():
                time.sleep(delay)
            return real(columns)

        run.spec = real.spec
        self._runner = run
        return ready


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--delay", type=float, default=2.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--request-timeout", type=float, default=None)
    parser.add_argument("--serving-log", default=None)
    parser.add_argument("--model-thread", action="store_true")
    args = parser.parse_args()
    os.environ[ENV_DELAY] = str(args.delay)  # spawned workers inherit it
    if args.serving_log:
        from mlengine.components.shared.serving_log import ENV_SERVING_LOG_DIR

        os.environ[ENV_SERVING_LOG_DIR] = args.serving_log
    from mlengine.components.deploy.kserve_compat import hide_argv_from_kserve

    hide_argv_from_kserve()
    from mlengine.components.deploy.http.server import ServerLimits, serve

    limits = ServerLimits(**({"request_timeout_s": args.request_timeout} if args.request_timeout else {}))
    serve(args.model, name=args.name, port=args.port, limits=limits, workers=args.workers,
          model_thread=args.model_thread, model_class=FaultyPredictor)
    return 0


if __name__ == "__main__":
    sys.exit(main())
