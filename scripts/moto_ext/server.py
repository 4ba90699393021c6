#!/usr/bin/env python3
"""opsctl's moto test server: moto's whole app (as ``moto_server``) plus the extensions
of this folder (see README.md).

    $OPSCTL_CACHE/venv/bin/python scripts/moto_ext/server.py --port 5599 [--host 127.0.0.1]

Serves every moto service on one port, plus ``/_opsctl/calls`` (operation counts) and
``/_opsctl/behaviour`` (delayed status transitions, injected failures, throttling), and the
EKS operations moto lacks (``eks_ext.py``). Logs one line per request, and werkzeug's
"Running on http://HOST:PORT" once it holds the port.
"""

import argparse
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def build_app():
    """moto's dispatcher wrapped in ``ext.Ext`` with every extension installed."""
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    import eks_ext
    import ext
    import rds_ext

    moto_app = DomainDispatcherApplication(create_backend_app)
    app = ext.Ext(moto_app)
    eks_ext.install(app)
    rds_ext.install(app)
    return app


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, required=True)
    args = p.parse_args(argv)
    os.environ.setdefault("MOTO_PORT", str(args.port))

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import run_simple

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    run_simple(
        args.host,
        args.port,
        build_app(),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
