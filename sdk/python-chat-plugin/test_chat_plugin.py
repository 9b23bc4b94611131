"""Unit tests of the chat plugin: signatures (with the reference library),
repeats, the chat line. Paved's side is a stand-in here; the end-to-end test
(tests/tests/e2e/python_plugin.rs) runs the plugin against a real Paved.

    python generate.py && python -m unittest -v
"""

import base64
import json
import os
import threading
import time
import unittest
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook

import chat_plugin
from paved.v1 import delivery_pb2, eventlog_pb2, events_pb2

SECRET = "whsec_" + base64.b64encode(os.urandom(32)).decode()


class Deliveries:
    """Answers GetDeployment as Paved would, and remembers what was asked."""

    def __init__(self):
        self.asked = []

    def GetDeployment(self, request, metadata, timeout):  # noqa: N802 - gRPC's name
        self.asked.append((request, dict(metadata)))
        return delivery_pb2.GetDeploymentResponse(
            deployment=delivery_pb2.Deployment(
                id=request.id,
                target=events_pb2.DeploymentTarget(
                    service="payments-api", environment="production", revision="abc123"
                ),
                status="succeeded",
            )
        )


class Chat:
    """A chat incoming webhook that keeps what it is sent."""

    def __init__(self):
        self.lines = []
        chat = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["content-length"]))
                chat.lines.append(json.loads(body)["text"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"


def post_of(event_type: str, webhook_id: str, secret: str = SECRET):
    record = eventlog_pb2.EventRecord(sequence=42, aggregate_id="dep-1", event_type=event_type)
    body = json.dumps(
        {
            "type": event_type,
            "timestamp": "2026-12-07T10:00:00.000Z",
            "data": json.loads(chat_plugin.json_format.MessageToJson(record)),
        }
    ).encode()
    now = int(time.time())
    signature = Webhook(secret).sign(webhook_id, chat_plugin_timestamp(now), body.decode())
    headers = {"webhook-id": webhook_id, "webhook-timestamp": str(now), "webhook-signature": signature}
    return body, headers


def chat_plugin_timestamp(now: int):
    import datetime

    return datetime.datetime.fromtimestamp(now, tz=datetime.timezone.utc)


class ChatPluginTest(unittest.TestCase):
    def setUp(self):
        self.chat = Chat()
        self.deliveries = Deliveries()
        self.plugin = chat_plugin.Plugin(SECRET, self.deliveries, self.chat.url, "pvp_test")

    def tearDown(self):
        self.chat.server.shutdown()

    def test_a_signed_deployment_event_becomes_one_chat_line(self):
        body, headers = post_of("DeploymentSucceeded", "chat-42-0")
        self.assertEqual(self.plugin.handle(body, headers), 204)
        self.assertEqual(self.chat.lines, ["✅ payments-api abc123 → production: succeeded"])
        request, metadata = self.deliveries.asked[0]
        self.assertEqual((request.id, request.min_sequence), ("dep-1", 42))
        self.assertEqual(metadata["authorization"], "Bearer pvp_test")

    def test_a_repeat_is_dropped_by_its_webhook_id(self):
        body, headers = post_of("DeploymentSucceeded", "chat-42-0")
        self.plugin.handle(body, headers)
        self.assertEqual(self.plugin.handle(body, headers), 204)
        self.assertEqual(len(self.chat.lines), 1)

    def test_a_bad_signature_is_refused_and_nothing_is_posted(self):
        other = "whsec_" + base64.b64encode(os.urandom(32)).decode()
        body, headers = post_of("DeploymentSucceeded", "chat-42-0", secret=other)
        self.assertEqual(self.plugin.handle(body, headers), 401)
        tampered = body.replace(b"dep-1", b"dep-2")
        _, good = post_of("DeploymentSucceeded", "chat-42-0")
        self.assertEqual(self.plugin.handle(tampered, good), 401)
        self.assertEqual(self.chat.lines, [])

    def test_other_events_are_taken_without_a_line(self):
        body, headers = post_of("ServiceRegistered", "chat-43-0")
        self.assertEqual(self.plugin.handle(body, headers), 204)
        self.assertEqual(self.chat.lines, [])


if __name__ == "__main__":
    unittest.main()
