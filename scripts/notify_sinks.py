#!/usr/bin/env python3
"""Local stand-ins for the notification providers, for development and the tests.

- SMTP (aiosmtpd, `pip install aiosmtpd`): every message is written to DIR/mail-<n>.eml, and
  its envelope, headers and decoded text and HTML parts to DIR/mail-<n>.json.
  Recipients whose local part starts with `bounce` are refused for good (550), `busy` for now
  (451). With --smtp-user/--smtp-password, AUTH (PLAIN/LOGIN, no TLS) is required.
- SMS: Twilio's Messages API shape, `POST /2010-04-01/Accounts/<sid>/Messages.json` with basic
  auth `<sid>:<token>` and a form body (To, From, Body); each message is written to
  DIR/sms-<n>.json and answered 201 `{"sid": "SM…", "status": "queued", …}`. While the file
  DIR/sms-fail exists the API answers with the status code it contains (an outage).
- Push: a gateway at `POST /push` on the SMS port taking `{user, title, body}`; each is
  written to DIR/push-<n>.json and answered `{"id": …}`.

    python3 scripts/notify_sinks.py --dir /tmp/airbar-sinks   # SMTP :1025, SMS :8026
"""

import argparse
import base64
import email
import email.policy
import itertools
import json
import os
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

COUNTER = itertools.count(1)
LOCK = threading.Lock()


def write_atomically(directory, name, data):
    tmp = os.path.join(directory, "." + name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.rename(tmp, os.path.join(directory, name))


def next_number():
    with LOCK:
        return next(COUNTER)


class Mailbox:
    def __init__(self, directory):
        self.directory = directory

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("bounce"):
            return "550 5.1.1 mailbox unavailable"
        if local.startswith("busy"):
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        n = next_number()
        write_atomically(self.directory, f"mail-{n:06d}.eml", envelope.original_content)
        msg = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        part = lambda kind: (lambda p: p.get_content() if p is not None else None)(
            msg.get_body((kind,)))
        parsed = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": envelope.rcpt_tos,
            "from": str(msg["From"]),
            "to": str(msg["To"]),
            "subject": str(msg["Subject"]),
            "message_id": str(msg["Message-ID"]),
            "text": part("plain"),
            "html": part("html"),
        }
        write_atomically(self.directory, f"mail-{n:06d}.json", json.dumps(parsed).encode())
        return f"250 OK queued as mail-{n:06d}"


def sms_handler(directory, sid, token):
    expected = "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def answer(self, status, body):
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path == "/push":
                message = json.loads(raw)
                message["id"] = "push-" + uuid.uuid4().hex
                n = next_number()
                write_atomically(directory, f"push-{n:06d}.json", json.dumps(message).encode())
                return self.answer(200, {"id": message["id"]})
            form = parse_qs(raw.decode())
            if self.path != f"/2010-04-01/Accounts/{sid}/Messages.json":
                return self.answer(404, {"code": 20404, "message": "not found"})
            if self.headers.get("Authorization") != expected:
                return self.answer(401, {"code": 20003, "message": "authenticate"})
            fail = os.path.join(directory, "sms-fail")
            if os.path.exists(fail):
                with open(fail) as f:
                    status = int(f.read().strip() or 503)
                return self.answer(status, {"code": 20500, "message": "unavailable"})
            to = (form.get("To") or [""])[0]
            body = (form.get("Body") or [""])[0]
            if not to or not body:
                return self.answer(400, {"code": 21604, "message": "To and Body are required"})
            message = {
                "sid": "SM" + uuid.uuid4().hex,
                "account_sid": sid,
                "to": to,
                "from": (form.get("From") or [""])[0],
                "body": body,
                "status": "queued",
            }
            n = next_number()
            write_atomically(directory, f"sms-{n:06d}.json", json.dumps(message).encode())
            return self.answer(201, message)

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", default="/tmp/airbar-sinks")
    parser.add_argument("--smtp-port", type=int, default=1025)
    parser.add_argument("--sms-port", type=int, default=8026)
    parser.add_argument("--sms-sid", default="ACairbarlocal")
    parser.add_argument("--sms-token", default="airbar-local-token")
    parser.add_argument("--smtp-user", help="require AUTH with this user")
    parser.add_argument("--smtp-password", default="")
    parser.add_argument("--exit-with-parent", action="store_true",
                        help="stop when the process that started this one ends")
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)

    auth = {}
    if args.smtp_user:
        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword)
                  and auth_data.login.decode() == args.smtp_user
                  and auth_data.password.decode() == args.smtp_password)
            # handled=False: aiosmtpd answers 535 itself (its default, True, answers nothing).
            return AuthResult(success=ok, handled=False, auth_data=auth_data)
        auth = {"authenticator": authenticator, "auth_required": True,
                "auth_require_tls": False}
    import warnings
    warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
    smtp = Controller(Mailbox(args.dir), hostname="127.0.0.1", port=args.smtp_port, **auth)
    smtp.start()
    http = ThreadingHTTPServer(("127.0.0.1", args.sms_port),
                               sms_handler(args.dir, args.sms_sid, args.sms_token))
    threading.Thread(target=http.serve_forever, daemon=True).start()
    print(f"SMTP on 127.0.0.1:{args.smtp_port}, SMS API on http://127.0.0.1:{args.sms_port}, "
          f"messages in {args.dir}", flush=True)
    parent = os.getppid()
    try:
        while not args.exit_with_parent or os.getppid() == parent:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    smtp.stop()
    http.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
