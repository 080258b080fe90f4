"""A visit counter behind nginx: GET / counts a visit in Redis and says how many there were;
GET /healthz answers 200 when Redis answers. Standard library HTTP server, Debian's redis."""

from __future__ import annotations

import json
import os
import signal
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import redis

store = redis.Redis(host=os.environ.get("REDIS_HOST", "redis"),
                    port=int(os.environ.get("REDIS_PORT", "6379")),
                    socket_timeout=2, socket_connect_timeout=2)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive with the proxy

    def do_GET(self) -> None:
        if self.path == "/healthz":
            try:
                store.ping()
            except redis.RedisError as error:
                return self._send(503, {"redis": str(error)})
            return self._send(200, {"redis": "ok"})
        if self.path != "/":
            return self._send(404, {"error": f"no such page: {self.path}"})
        try:
            visits = store.incr("visits")
        except redis.RedisError as error:
            return self._send(503, {"error": f"redis: {error}"})
        self._send(200, {"visits": visits, "served_by": socket.gethostname(),
                         "client": self.headers.get("X-Forwarded-For", self.client_address[0])})

    def _send(self, status: int, body: dict) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    # As the container's first process, SIGTERM would be ignored without a handler.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    port = int(os.environ.get("PORT", "8000"))
    server = ThreadingHTTPServer(("0.0.0.0", port), Handler)
    print(f"listening on :{port}, counting in {store.connection_pool.connection_kwargs['host']}",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
