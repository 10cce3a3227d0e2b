"""The REST API locally: a small HTTP server that turns each request into an API Gateway REST
(v1) proxy event for the same api handler that runs in AWS, and writes its response back.

    python -m cloud.local.apigw --port 8080 --endpoint-url http://127.0.0.1:5000

There is no iot-data locally: while the server runs, the api handler's commands go to the local
broker (cloud/local/publish.py, as the API's service identity) of MOTORGUARD_LOCAL_BROKER_DIR
(cloud/local/core.py sets it), which ApiServer puts in the handler module's `publisher`.

The dashboard's routes (/api/...) are what API Gateway serves with its Cognito user pool
authorizer: here the server plays that authorizer. A request under /api reaches the handler only
with an ID token in its Authorization header that the verifier accepts (cloud/local/cognito.py),
and then with the token's claims in requestContext.authorizer.claims, where API Gateway puts them;
anything else is answered 401 {"message": "Unauthorized"}, as API Gateway answers, and never
reaches the handler. Without a verifier every /api request is refused. The other routes are
served as before (in AWS they need SigV4, which the local API does not check).
"""

from __future__ import annotations

import argparse
import base64
import os
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

from cloud import resources


class LambdaContext:
    """The fields of AWS's context object that handlers and Powertools read. One of our functions
    gets the memory and timeout of its row in cloud/resources.py FUNCTION_SETTINGS, as in AWS."""

    def __init__(self, name, memory_mb=None, timeout_s=None):
        logical = resources.logical_name(name)  # None: not one of ours: 256 MB and 30 s then
        if memory_mb is None:
            memory_mb = resources.MEMORY_MB[logical] if logical else 256
        if timeout_s is None:
            timeout_s = resources.TIMEOUT_S[logical] if logical else 30
        self.function_name = name
        self.function_version = "$LATEST"
        self.memory_limit_in_mb = memory_mb
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:000000000000:function:%s" % name
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = "/aws/lambda/%s" % name
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def proxy_event(method, raw_path, headers, body: bytes) -> dict:
    url = urlsplit(raw_path)
    query = dict(parse_qsl(url.query, keep_blank_values=True))
    multi = {}
    for k, v in parse_qsl(url.query, keep_blank_values=True):
        multi.setdefault(k, []).append(v)
    text = None
    b64 = False
    if body:
        try:
            text = body.decode()
        except UnicodeDecodeError:
            text, b64 = base64.b64encode(body).decode(), True
    return {
        "resource": "/{proxy+}",
        "path": url.path,
        "httpMethod": method,
        "headers": dict(headers),
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": multi or None,
        "pathParameters": {"proxy": url.path.lstrip("/")},
        "stageVariables": None,
        "requestContext": {"resourcePath": "/{proxy+}", "httpMethod": method, "path": "/prod" + url.path,
                           "stage": "prod", "requestId": str(uuid.uuid4()), "identity": {"sourceIp": "127.0.0.1"},
                           "requestTimeEpoch": int(time.time() * 1000)},
        "body": text,
        "isBase64Encoded": b64,
    }


DASHBOARD_PREFIX = "/api"  # the routes behind the Cognito authorizer (cloud/lambdas/api.py DASHBOARD_PREFIX)
UNAUTHORIZED = {"statusCode": 401, "body": '{"message": "Unauthorized"}', "headers": {"Content-Type": "application/json"}}


def authorize(event: dict, verifier) -> bool:
    """The Cognito authorizer's part: True when the event may reach the handler (and then it holds
    the token's claims). Only the /api routes are checked."""
    path = event["path"]
    if not (path == DASHBOARD_PREFIX or path.startswith(DASHBOARD_PREFIX + "/")):
        return True
    if verifier is None:
        return False
    token = next((v for k, v in event["headers"].items() if k.lower() == "authorization"), "")
    if token.lower().startswith("bearer "):
        token = token[7:]
    from cloud.local.cognito import InvalidToken

    try:
        claims = verifier.claims(token.strip())
    except (InvalidToken, OSError, ValueError):  # OSError: the key set could not be read
        return False
    event["requestContext"]["authorizer"] = {"claims": claims}
    return True


def make_handler_class(handler, verifier=None):
    class Handler(BaseHTTPRequestHandler):
        def _serve(self):
            n = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(n) if n else b""
            event = proxy_event(self.command, self.path, {k: v for k, v in self.headers.items()}, body)
            try:
                resp = handler(event, LambdaContext(resources.function_name("api"))) if authorize(event, verifier) \
                    else dict(UNAUTHORIZED)
            except Exception as e:  # noqa: BLE001 - API Gateway answers 502 when the Lambda fails
                resp = {"statusCode": 502, "body": '{"message": "Internal server error"}',
                        "headers": {"Content-Type": "application/json"}}
                self.log_error("handler failed: %s", type(e).__name__)
            out = resp.get("body") or ""
            data = base64.b64decode(out) if resp.get("isBase64Encoded") else out.encode()
            self.send_response(int(resp.get("statusCode", 200)))
            headers = dict(resp.get("headers") or {})
            for k, vs in (resp.get("multiValueHeaders") or {}).items():
                headers[k] = vs[-1]
            headers.setdefault("Content-Type", "application/json")
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

        def log_message(self, fmt, *args):  # quiet: the demo owns the terminal
            pass

    return Handler


BROKER_DIR_ENV = "MOTORGUARD_LOCAL_BROKER_DIR"  # the local broker's state dir, where commands go


class ApiServer:
    def __init__(self, port: int = 0, handler=None, broker_dir: str | None = None, verifier=None):
        """handler: the api handler by default, whose commands then go to the broker of broker_dir
        (default: $MOTORGUARD_LOCAL_BROKER_DIR; neither: the handler's own publisher, iot-data);
        verifier: checks the dashboard's tokens (cloud/local/cognito.py TokenVerifier; None refuses
        every /api request)."""
        self._module = self._publisher = self._saved = None
        if handler is None:
            from cloud.lambdas import api

            handler = api.handler
            broker_dir = broker_dir or os.environ.get(BROKER_DIR_ENV)
            if broker_dir:
                from cloud.local.publish import publisher

                self._module, self._publisher = api, publisher(str(broker_dir))
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), make_handler_class(handler, verifier))
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="apigw", daemon=True)

    def start(self) -> "ApiServer":
        if self._module is not None:
            self._saved, self._module.publisher = self._module.publisher, self._publisher
        self._thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._module is not None and self._module.publisher is self._publisher:
            self._module.publisher = self._saved


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m cloud.local.apigw", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, default=8080)
    ap.add_argument("--endpoint-url", help="moto server URL (AWS_ENDPOINT_URL)")
    a = ap.parse_args(argv)
    if a.endpoint_url:
        from cloud.local.moto_env import use_endpoint

        use_endpoint(a.endpoint_url)
    srv = ApiServer(a.port).start()
    print("API on %s (Ctrl-C stops)" % srv.url)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
