"""The app under development: edit this file and the dev server restarts it (see the log).
GET / records the visit in PostgreSQL and lists the last ones; GET /healthz checks the DB."""

from __future__ import annotations

import json
import os
import signal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

GREETING = "Hello from the dev environment"  # change me, save, reload the page


def connect():
    return psycopg2.connect(os.environ.get("DATABASE_URL", "postgresql://app:app@db/app"),
                            connect_timeout=3)


def record_visit(path: str) -> list[tuple[int, str]]:
    with connect() as db, db.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS visits (id serial PRIMARY KEY, "
                    "path text NOT NULL, at timestamptz NOT NULL DEFAULT now())")
        cur.execute("INSERT INTO visits (path) VALUES (%s)", (path,))
        cur.execute("SELECT id, to_char(at, 'YYYY-MM-DD HH24:MI:SS') FROM visits "
                    "ORDER BY id DESC LIMIT 5")
        return cur.fetchall()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        try:
            if self.path == "/healthz":
                with connect() as db, db.cursor() as cur:
                    cur.execute("SELECT 1")
                return self._send(200, {"db": "ok"})
            if self.path != "/":
                return self._send(404, {"error": f"no such page: {self.path}"})
            visits = record_visit(self.path)
        except psycopg2.Error as error:
            return self._send(503, {"error": str(error).strip()})
        self._send(200, {"greeting": GREETING, "last_visits": visits})

    def _send(self, status: int, body: dict) -> None:
        data = (json.dumps(body) + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    server = ThreadingHTTPServer(("0.0.0.0", 8000), Handler)
    print("app: listening on :8000", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        server.server_close()
