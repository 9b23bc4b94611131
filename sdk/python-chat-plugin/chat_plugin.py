"""An example Paved webhook plugin: posts deployment outcomes to a chat.

Paved posts each event the installation selects (here DeploymentRecorded,
DeploymentSucceeded and DeploymentFailed) to this program, signed as
Standard Webhooks specifies. The plugin

1. verifies the signature with the reference ``standardwebhooks`` library
   (a bad or stale signature is answered 401 and Paved tries again later);
2. drops a repeat by its ``webhook-id`` (delivery is at least once);
3. reads the event as the generated ``paved.v1.EventRecord``;
4. asks Paved, over gRPC with its installation's token, for the deployment
   (``DeliveryService.GetDeployment``, scope ``delivery:read``), waiting for
   the read model to reach the event's sequence;
5. posts a line to the chat's incoming webhook (Slack's ``{"text": ...}``).

Configuration (environment):

    PAVED_WEBHOOK_SECRET   whsec_... (from ``paved plugin install``)
    PAVED_TOKEN            pvp_...   (likewise)
    PAVED_SERVER           host:port of Paved's gRPC API (default 127.0.0.1:50051)
    CHAT_WEBHOOK_URL       where the lines go
    LISTEN                 host:port to listen on (default 127.0.0.1:8787)
    PAVED_PB               where generate.py put the modules (default paved_pb/)
"""

import json
import os
import pathlib
import sys
import threading
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# The generated modules (generate.py): $PAVED_PB, else paved_pb/ beside this file.
sys.path.insert(0, os.environ.get("PAVED_PB") or str(pathlib.Path(__file__).resolve().parent / "paved_pb"))

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from standardwebhooks.webhooks import Webhook, WebhookVerificationError  # noqa: E402

from paved.v1 import delivery_pb2, delivery_pb2_grpc, eventlog_pb2  # noqa: E402

DEPLOYMENT_EVENTS = {"DeploymentRecorded", "DeploymentSucceeded", "DeploymentFailed"}
# Most webhook ids remembered for dropping repeats.
SEEN_CAPACITY = 10_000
# Largest body read.
MAX_BODY = 1 << 20


class Plugin:
    """What the handler needs: the verifier, Paved's client, the chat."""

    def __init__(self, secret: str, deliveries, chat_url: str, token: str):
        self.webhook = Webhook(secret)
        self.deliveries = deliveries
        self.chat_url = chat_url
        self.metadata = (("authorization", f"Bearer {token}"),)
        self.seen: dict[str, None] = {}
        self.lock = threading.Lock()

    def first_time(self, webhook_id: str) -> bool:
        with self.lock:
            if webhook_id in self.seen:
                return False
            self.seen[webhook_id] = None
            while len(self.seen) > SEEN_CAPACITY:
                self.seen.pop(next(iter(self.seen)))
            return True

    def line(self, record) -> str | None:
        """The chat line for a deployment event, or None for anything else."""
        if record.event_type not in DEPLOYMENT_EVENTS:
            return None
        deployment = self.deliveries.GetDeployment(
            delivery_pb2.GetDeploymentRequest(id=record.aggregate_id, min_sequence=record.sequence),
            metadata=self.metadata,
            timeout=10,
        ).deployment
        t = deployment.target
        icon = "✅" if deployment.status == "succeeded" else "❌" if deployment.status == "failed" else "⏳"
        return f"{icon} {t.service} {t.revision} → {t.environment}: {deployment.status}"

    def post(self, text: str) -> None:
        body = json.dumps({"text": text}).encode()
        request = urllib.request.Request(
            self.chat_url, data=body, headers={"content-type": "application/json"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            answer.read()

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        """Handles one post; returns the HTTP status to answer."""
        try:
            self.webhook.verify(body, headers)
        except WebhookVerificationError:
            return 401
        if not self.first_time(headers.get("webhook-id", "")):
            return 204
        payload = json.loads(body)
        record = eventlog_pb2.EventRecord()
        json_format.ParseDict(payload["data"], record, ignore_unknown_fields=True)
        try:
            text = self.line(record)
            if text is not None:
                self.post(text)
        except Exception as e:  # noqa: BLE001 - any failure: Paved retries
            with self.lock:
                self.seen.pop(headers.get("webhook-id", ""), None)
            print(f"chat plugin: {record.event_type} {record.sequence}: {e}", file=sys.stderr)
            return 503
        return 204


def handler_for(plugin: Plugin):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            status = plugin.handle(body, headers)
            self.send_response(status)
            self.end_headers()

        def log_message(self, *args):
            pass

    return Handler


def main() -> None:
    server = os.environ.get("PAVED_SERVER", "127.0.0.1:50051")
    channel = grpc.insecure_channel(server)
    plugin = Plugin(
        os.environ["PAVED_WEBHOOK_SECRET"],
        delivery_pb2_grpc.DeliveryServiceStub(channel),
        os.environ["CHAT_WEBHOOK_URL"],
        os.environ["PAVED_TOKEN"],
    )
    host, port = os.environ.get("LISTEN", "127.0.0.1:8787").rsplit(":", 1)
    httpd = ThreadingHTTPServer((host, int(port)), handler_for(plugin))
    print(f"chat plugin listening on {host}:{httpd.server_address[1]}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
