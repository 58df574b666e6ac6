"""A webhook receiver on 127.0.0.1 for the notification tests: keeps each POST's path and JSON body, and can be
told to answer with an error status or to answer late."""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class WebhookServer:
    def __init__(self, status: int = 200, delay_s: float = 0.0):
        self.status, self.delay_s = status, delay_s
        self.received: list[tuple[str, dict]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.received.append((self.path, json.loads(body)))
                time.sleep(receiver.delay_s)
                answer = b"ok" if receiver.status == 200 else b"invalid_token"
                self.send_response(receiver.status)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}"

    def url(self, path: str = "/services/T000/B000/webhook-token-in-path") -> str:
        return self.base + path

    @property
    def payloads(self) -> list[dict]:
        return [body for _, body in self.received]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
