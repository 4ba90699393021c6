"""The extension mechanism of opsctl's moto test server (see README.md).

``Ext`` wraps moto's WSGI application. For every AWS request it

1. names the API operation (REST services: botocore's ``requestUri`` table; query
   services such as RDS: the ``Action`` parameter; JSON services: ``X-Amz-Target``),
2. counts it (``GET /_opsctl/calls``),
3. answers a real ``ThrottlingException`` / ``Throttling`` error in the service's
   protocol while a throttle configured with ``POST /_opsctl/behaviour`` lasts,
4. runs the extensions' ``before`` handlers (an answer of their own: new operations,
   validation moto lacks), else moto, then their ``after`` hooks (rewrite moto's answer,
   start a delayed status transition).

Delayed transitions (``Ext.start``) move a resource through intermediate statuses
(``UPDATING``, ``modifying`` ...) held for the seconds configured per service / kind / id,
then call the extension's ``finish`` with the injected failure, if any. They advance on
every request and on a 0.1 s background tick, so a waiter sees them over the real protocol.

Extensions are modules with ``install(ext)``; ``server.py`` installs ``eks_ext`` and
``rds_ext``.
"""

import io
import json
import re
import threading
import time
import uuid
from collections import Counter
from typing import Any, Callable, Optional

DEFAULT_ACCOUNT_ID = "123456789012"

# (status code, headers as a list of pairs, body bytes)
Response = tuple[int, list[tuple[str, str]], bytes]


def json_response(status: int, doc: Any, headers=None) -> Response:
    body = json.dumps(doc, default=str).encode()
    hs = [("Content-Type", "application/json"), ("x-amzn-RequestId", str(uuid.uuid4()))]
    return status, hs + list(headers or []), body


class Req:
    """One AWS request as the extensions see it."""

    def __init__(self, environ: dict, body: bytes):
        from urllib.parse import parse_qs

        self.environ = environ
        self.method: str = environ.get("REQUEST_METHOD", "GET")
        self.path: str = environ.get("PATH_INFO", "")
        self.query: dict[str, list[str]] = parse_qs(environ.get("QUERY_STRING", ""))
        self.body = body
        self.service: Optional[str] = None
        self.region: str = "us-east-1"
        self.account: str = DEFAULT_ACCOUNT_ID
        auth = environ.get("HTTP_AUTHORIZATION", "")
        m = re.search(r"Credential=[^/]+/\d+/([^/]+)/([^/]+)/aws4_request", auth)
        if m:
            self.region, self.service = m.group(1), m.group(2).lower()
        self.operation: Optional[str] = None
        # Path parameters of a REST operation, e.g. {"name": "prod"}.
        self.params: dict[str, str] = {}

    def json(self) -> dict:
        """The body as JSON (``{}`` when empty or not JSON)."""
        try:
            doc = json.loads(self.body or b"{}")
            return doc if isinstance(doc, dict) else {}
        except ValueError:
            return {}

    def arg(self, name: str) -> Optional[str]:
        """A query-string parameter (first value), else a form-body parameter (query protocol)."""
        if name in self.query:
            return self.query[name][0]
        from urllib.parse import parse_qs

        ct = self.environ.get("CONTENT_TYPE", "")
        if "x-www-form-urlencoded" in ct or (self.body and b"Action=" in self.body):
            form = parse_qs(self.body.decode("utf-8", "replace"))
            if name in form:
                return form[name][0]
        return None


class _RestTable:
    """Operation names of a REST service from botocore's model (method + requestUri)."""

    def __init__(self, service: str):
        import botocore.session

        model = botocore.session.get_session().get_service_model(service)
        self.protocol = model.protocol
        self.routes: list[tuple[int, str, re.Pattern, list[str], str]] = []
        for name in model.operation_names:
            http = model.operation_model(name).http
            uri = http.get("requestUri", "/")
            path, _, query = uri.partition("?")
            rx = ""
            literal = 0
            for part in re.split(r"(\{[^}]+\})", path):
                if part.startswith("{"):
                    key = part[1:-1]
                    greedy = key.endswith("+")
                    key = key.rstrip("+")
                    rx += f"(?P<{key}>.+)" if greedy else f"(?P<{key}>[^/]+)"
                else:
                    rx += re.escape(part)
                    literal += len(part)
            required = [q.split("=")[0] for q in query.split("&") if q]
            self.routes.append(
                (literal + 10 * len(required), http["method"], re.compile(f"^{rx}/?$"), required, name)
            )
        self.routes.sort(key=lambda r: -r[0])

    def match(self, req: Req) -> Optional[tuple[str, dict[str, str]]]:
        from urllib.parse import unquote

        for _, method, rx, required, name in self.routes:
            if method != req.method:
                continue
            m = rx.match(req.path)
            if m and all(q in req.query for q in required):
                return name, {k: unquote(v) for k, v in m.groupdict().items()}
        return None


class Ext:
    """moto's WSGI app plus counting, throttling, behaviours and extension hooks."""

    def __init__(self, app: Callable):
        self.app = app
        self.lock = threading.RLock()
        self.calls: Counter = Counter()
        # (service, kind, id) -> {"hold": {status: seconds}, "fail": {...}}
        self.behaviours: dict[tuple[str, str, str], dict] = {}
        # list of {"operation", "service" (optional), "count", "code" (optional)}
        self.throttles: list[dict] = []
        self._transitions: list[dict] = []
        self._before: dict[tuple[str, str], list[Callable]] = {}
        self._after: dict[tuple[str, str], list[Callable]] = {}
        self._reset_hooks: list[Callable] = []
        self._tables: dict[str, Optional[_RestTable]] = {}
        t = threading.Thread(target=self._ticker, daemon=True)
        t.start()

    # ---- the API extensions use ---------------------------------------------------------

    def before(self, service: str, operation: str, fn: Callable[[Req], Optional[Response]]):
        """Run ``fn(req)`` before moto for ``operation``; a non-None answer replaces moto's.
        The operation may be one moto does not implement (botocore names it)."""
        self._before.setdefault((service, operation), []).append(fn)

    def after(self, service: str, operation: str, fn: Callable[[Req, int, bytes], Optional[bytes]]):
        """Run ``fn(req, status, body)`` after moto answered ``operation``; a non-None result
        replaces the body (status and headers are kept)."""
        self._after.setdefault((service, operation), []).append(fn)

    def on_reset(self, fn: Callable[[], None]):
        """Run ``fn()`` on ``POST /moto-api/reset`` (clear the extension's own state)."""
        self._reset_hooks.append(fn)

    def behaviour(self, service: str, kind: str, *ids: str) -> dict:
        """The configured behaviour of the first of ``ids`` that has one, else of id ``*``,
        else ``{}``. Keys: ``hold`` ({status: seconds}), ``fail`` ({"status", "errors", ...})."""
        for i in list(ids) + ["*"]:
            b = self.behaviours.get((service, kind, i))
            if b is not None:
                return b
        return {}

    def busy(self, service: str, kind: str, id: str) -> bool:
        """True while a transition started with ``start`` on this resource is not finished."""
        return any(t["key"] == (service, kind, id) for t in self._transitions)

    def start(
        self,
        service: str,
        kind: str,
        id: str,
        phases: list[tuple[str, float]],
        enter: Callable[[str], None],
        finish: Callable[[Optional[dict]], None],
        ids: tuple = (),
    ):
        """Start a delayed transition of resource ``(service, kind, id)``.

        ``phases``: intermediate statuses with their default hold in seconds; the
        behaviour's ``hold`` overrides them per status. ``enter(status)`` is called when a
        phase begins (at once for the first), ``finish(failure)`` when the last hold ends,
        with the behaviour's ``fail`` dict or None. ``ids``: more ids to look the behaviour
        up by (e.g. ``cluster/nodegroup`` before ``nodegroup``). Call with the lock held
        (hooks are)."""
        b = self.behaviour(service, kind, *((id,) + tuple(ids)))
        hold = b.get("hold", {})
        plan = [(status, float(hold.get(status, default))) for status, default in phases]
        t = {
            "key": (service, kind, id),
            "phases": plan,
            "enter": enter,
            "finish": finish,
            "fail": b.get("fail"),
            "deadline": 0.0,
        }
        # Enter the first phase now; the next tick (request or background) moves on.
        status, seconds = t["phases"].pop(0)
        enter(status)
        t["deadline"] = time.monotonic() + seconds
        self._transitions.append(t)

    def error(self, req: Req, code: str, message: str, status: int = 400, extra=None) -> Response:
        """An AWS error answer in ``req``'s service protocol."""
        protocol = self._protocol(req.service)
        if protocol == "query" or protocol == "rest-xml":
            body = (
                "<ErrorResponse><Error><Type>Sender</Type>"
                f"<Code>{code}</Code><Message>{_xml_escape(message)}</Message></Error>"
                f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
            ).encode()
            return status, [("Content-Type", "text/xml")], body
        doc = {"message": message, **(extra or {})}
        if protocol == "json":
            doc["__type"] = code
        return json_response(status, doc, [("x-amzn-ErrorType", code)])

    # ---- transitions ----------------------------------------------------------------------

    def _advance(self, t: dict, now: float):
        while now >= t["deadline"]:
            if t["phases"]:
                status, seconds = t["phases"].pop(0)
                t["enter"](status)
                t["deadline"] = now + seconds
            else:
                t["phases"] = None
                t["finish"](t["fail"])
                return

    def tick(self):
        with self.lock:
            now = time.monotonic()
            for t in list(self._transitions):
                try:
                    self._advance(t, now)
                finally:
                    if t["phases"] is None:
                        self._transitions.remove(t)

    def _ticker(self):
        while True:
            time.sleep(0.1)
            try:
                self.tick()
            except Exception as e:  # keep ticking; the log shows what went wrong
                print(f"moto_ext: transition failed: {e!r}", flush=True)

    # ---- state ----------------------------------------------------------------------------

    def reset(self):
        with self.lock:
            self.calls.clear()
            self.behaviours.clear()
            self.throttles.clear()
            self._transitions.clear()
            for fn in self._reset_hooks:
                fn()

    def configure(self, doc: Any):
        """Apply one behaviour entry or a list of them (see README.md)."""
        with self.lock:
            for entry in doc if isinstance(doc, list) else [doc]:
                if not isinstance(entry, dict):
                    raise ValueError(f"a behaviour is a JSON object, got {entry!r}")
                if "throttle" in entry:
                    th = dict(entry["throttle"])
                    if "operation" not in th:
                        raise ValueError("throttle needs `operation`")
                    th["count"] = int(th.get("count", 1))
                    self.throttles.append(th)
                if "hold" in entry or "fail" in entry:
                    for k in ("service", "kind", "id"):
                        if k not in entry:
                            raise ValueError(f"a hold/fail behaviour needs `{k}`")
                    key = (entry["service"], entry["kind"], str(entry["id"]))
                    b = self.behaviours.setdefault(key, {})
                    if "hold" in entry:
                        b["hold"] = {k: float(v) for k, v in entry["hold"].items()}
                    if "fail" in entry:
                        if entry["fail"] is None:
                            b.pop("fail", None)
                        else:
                            b["fail"] = dict(entry["fail"])

    def _protocol(self, service: Optional[str]) -> Optional[str]:
        table = self._table(service)
        return table.protocol if table else None

    def _table(self, service: Optional[str]) -> Optional[_RestTable]:
        if not service:
            return None
        if service not in self._tables:
            try:
                self._tables[service] = _RestTable(service)
            except Exception:
                self._tables[service] = None
        return self._tables[service]

    def _name(self, req: Req):
        table = self._table(req.service)
        if table is None:
            return
        if table.protocol in ("rest-json", "rest-xml"):
            hit = table.match(req)
            if hit:
                req.operation, req.params = hit
        elif table.protocol == "json":
            target = req.environ.get("HTTP_X_AMZ_TARGET", "")
            req.operation = target.rsplit(".", 1)[-1] or None
        else:
            req.operation = req.arg("Action")

    # ---- WSGI -----------------------------------------------------------------------------

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path.startswith("/_opsctl/"):
            return self._admin(environ, start_response)
        if path.rstrip("/") == "/moto-api/reset" and method == "POST":
            self.reset()
            return self.app(environ, start_response)
        if path.startswith("/moto-api"):
            return self.app(environ, start_response)

        body = _read_body(environ)
        req = Req(environ, body)
        self._name(req)
        key = (req.service or "", req.operation or "")
        with self.lock:
            self.tick()
            if req.operation:
                self.calls[req.operation] += 1
                for th in self.throttles:
                    if th["count"] > 0 and th["operation"] == req.operation and th.get(
                        "service", req.service
                    ) == req.service:
                        th["count"] -= 1
                        code = th.get("code") or (
                            "Throttling" if self._protocol(req.service) == "query" else "ThrottlingException"
                        )
                        return _send(start_response, self.error(req, code, "Rate exceeded", 400))
            for fn in self._before.get(key, []):
                answer = fn(req)
                if answer is not None:
                    return _send(start_response, answer)
        hooks = self._after.get(key)
        if not hooks:
            return self.app(environ, start_response)
        captured: dict = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        chunks = self.app(environ, capture)
        try:
            out = b"".join(chunks)
        finally:
            if hasattr(chunks, "close"):
                chunks.close()
        code = int(captured["status"].split()[0])
        with self.lock:
            for fn in hooks:
                new = fn(req, code, out)
                if new is not None:
                    out = new
        headers = [(k, v) for k, v in captured["headers"] if k.lower() != "content-length"]
        headers.append(("Content-Length", str(len(out))))
        start_response(captured["status"], headers)
        return [out]

    def _admin(self, environ, start_response):
        path = environ.get("PATH_INFO", "").rstrip("/")
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            if path == "/_opsctl/calls" and method == "GET":
                with self.lock:
                    return _send(start_response, json_response(200, dict(self.calls)))
            if path == "/_opsctl/calls/reset" and method == "POST":
                with self.lock:
                    self.calls.clear()
                return _send(start_response, json_response(200, {}))
            if path == "/_opsctl/behaviour" and method == "POST":
                self.configure(json.loads(_read_body(environ) or b"{}"))
                return _send(start_response, json_response(200, self._behaviour_doc()))
            if path == "/_opsctl/behaviour" and method == "GET":
                return _send(start_response, json_response(200, self._behaviour_doc()))
            if path == "/_opsctl/behaviour" and method == "DELETE":
                with self.lock:
                    self.behaviours.clear()
                    self.throttles.clear()
                return _send(start_response, json_response(200, self._behaviour_doc()))
            return _send(start_response, json_response(404, {"message": f"no {method} {path}"}))
        except (ValueError, TypeError, KeyError) as e:
            return _send(start_response, json_response(400, {"message": str(e)}))

    def _behaviour_doc(self):
        with self.lock:
            return {
                "behaviours": [
                    {"service": s, "kind": k, "id": i, **b} for (s, k, i), b in self.behaviours.items()
                ],
                "throttles": list(self.throttles),
            }


def _read_body(environ) -> bytes:
    """Reads the request body and puts it back for moto."""
    from werkzeug.wsgi import get_input_stream

    data = get_input_stream(environ).read()
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)
    environ["wsgi.input_terminated"] = True
    return data


def _send(start_response, resp: Response):
    status, headers, body = resp
    from http import HTTPStatus

    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    start_response(f"{status} {reason}", list(headers) + [("Content-Length", str(len(body)))])
    return [body]


def _xml_escape(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
