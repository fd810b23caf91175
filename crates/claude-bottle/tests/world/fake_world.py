#!/usr/bin/env python3
"""The tests' "internet": one container on a TEST-NET-3 network that plays
every public server a bottle may reach, and records what it receives.

  fake_world.py OUT NAME...

Makes a CA and one leaf for the NAMEs with openssl (written to OUT/ca.pem;
the test hands it to the bottle as `upstream_ca`), then serves on :80 and
:443 until killed:

- POST /v1/messages: a fake model API, answering a short event stream the
  way api.anthropic.com does;
- /git/<repo>.git/...: bare repos under OUT/git through `git http-backend`
  (push enabled), so the gate has a real upstream;
- GET /esc-config: OUT/esc-config.json once the test has written it (the
  escape suite's attacker fetches its instructions there), else 404;
- GET /redirect?to=URL: a 302 to URL;
- GET /ws/...: a WebSocket (RFC 6455) that records each message it
  receives as a request of method `WS` (its payload as the body) and sends
  each text message back;
- anything else: 200 "world ok HOST PATH".

Every request is appended to OUT/requests.jsonl (method, host, path, the
client's address, every header, the credential headers apart, the body's
size and its first 64 KiB): the tests assert on what really arrived, e.g.
that the model API got the real token, or that a secret never did.

It is also a public DNS resolver on :53 (UDP and TCP) that answers NXDOMAIN
to everything and appends each query's name to OUT/dns.jsonl, so a test
sees any query that leaked out of a bottle.
"""
import base64, hashlib, json, os, socket, socketserver, ssl, struct, subprocess, sys, threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

OUT = sys.argv[1]
NAMES = sys.argv[2:]
LOCK = threading.Lock()


def make_certs():
    ca_key, ca = f"{OUT}/ca.key", f"{OUT}/ca.pem"
    key, csr, crt = f"{OUT}/leaf.key", f"{OUT}/leaf.csr", f"{OUT}/leaf.pem"
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
        "-nodes", "-keyout", ca_key, "-out", ca, "-days", "2", "-subj", "/CN=fake world CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    run("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-keyout", key, "-out", csr, "-subj", "/CN=" + NAMES[0])
    ext = f"{OUT}/leaf.ext"
    with open(ext, "w") as f:
        # Wildcards for the escape suite's `*.wild.test` route and its
        # exfiltration labels.
        sans = NAMES + ["*.wild.test", "*.pass.test"]
        f.write("subjectAltName=" + ",".join("DNS:" + n for n in sans) + "\n")
        f.write("extendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
        "-out", crt, "-days", "2", "-extfile", ext)
    return crt, key


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def body(self):
        """The body, and whether it arrived whole (a cut connection leaves
        a truncated one, which a real server would discard)."""
        self.complete = True
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline()
                if not line:
                    self.complete = False
                    return out
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                chunk = self.rfile.read(size)
                out += chunk
                if len(chunk) < size:
                    self.complete = False
                    return out
                self.rfile.readline()
        n = int(self.headers.get("content-length") or 0)
        out = self.rfile.read(n) if n else b""
        self.complete = len(out) == n
        return out

    def record(self, body, method=None):
        entry = {
            "method": method or self.command,
            "host": self.headers.get("host", ""),
            "path": self.path,
            "tls": isinstance(self.connection, ssl.SSLSocket),
            "authorization": self.headers.get("authorization"),
            "x_api_key": self.headers.get("x-api-key"),
            "anthropic_beta": self.headers.get("anthropic-beta"),
            "body_len": len(body),
            "complete": self.complete,
            "client": self.client_address[0],
            "headers": [[k, v] for k, v in self.headers.items()],
            "body": body[:65536].decode("latin-1"),
        }
        with LOCK, open(f"{OUT}/requests.jsonl", "a") as f:
            f.write(json.dumps(entry) + "\n")

    def reply(self, status, ctype, data, extra=()):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(data)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def handle_any(self):
        body = self.body()
        self.record(body)
        path = self.path.split("?")[0]
        if path.startswith("/git/"):
            return self.git(body)
        if path == "/esc-config":
            try:
                with open(f"{OUT}/esc-config.json", "rb") as f:
                    return self.reply(200, "application/json", f.read())
            except FileNotFoundError:
                return self.reply(404, "text/plain", b"not yet\n")
        if path.startswith("/ws/") and self.headers.get("upgrade", "").lower() == "websocket":
            return self.websocket()
        if self.headers.get("x-echo"):
            # A debug endpoint: the request's fields back, in the body and
            # in response fields (the escape suite's echo attacks).
            text = "".join(f"{k}: {v}\n" for k, v in self.headers.items()).encode()
            extra = [("x-echo-authorization", self.headers.get("authorization") or "-"),
                     ("x-echo-api-key", self.headers.get("x-api-key") or "-")]
            return self.reply(200, "text/plain", text, extra)
        if path == "/redirect":
            to = urllib.parse.parse_qs(self.path.partition("?")[2]).get("to", ["/"])[0]
            return self.reply(302, "text/plain", b"moved\n", [("location", to)])
        if self.command == "POST" and path == "/v1/messages":
            events = [
                ("message_start", {"type": "message_start", "message": {"id": "msg_fake", "role": "assistant", "content": []}}),
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "fake model reply"}}),
                ("message_stop", {"type": "message_stop"}),
            ]
            data = "".join(f"event: {e}\ndata: {json.dumps(d)}\n\n" for e, d in events).encode()
            return self.reply(200, "text/event-stream", data)
        host = self.headers.get("host", "")
        self.reply(200, "text/plain", f"world ok {host} {path}\n".encode())

    def websocket(self):
        key = self.headers.get("sec-websocket-key", "")
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        self.send_response(101)
        self.send_header("upgrade", "websocket")
        self.send_header("connection", "Upgrade")
        self.send_header("sec-websocket-accept", accept)
        self.end_headers()
        self.wfile.flush()
        self.close_connection = True
        message, opcode = b"", None
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                break
            fin, op, n = head[0] & 0x80, head[0] & 0x0F, head[1] & 0x7F
            if n == 126:
                n = struct.unpack(">H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4) if head[1] & 0x80 else b"\0\0\0\0"
            data = self.rfile.read(n)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            self.complete = True
            if op == 0x8:
                self.record(data, "WS-CLOSE")
                break
            if op in (0x9, 0xA):
                self.record(data, "WS-PING")
                continue
            if op != 0:
                opcode = op
            message += data
            if not fin:
                continue
            self.record(message, "WS")
            if opcode == 0x1 and len(message) < 126:
                self.wfile.write(bytes([0x81, len(message)]) + message)
                self.wfile.flush()
            message = b""

    def git(self, body):
        path, _, query = self.path.partition("?")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_PROJECT_ROOT": f"{OUT}/git",
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": "world",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path[len("/git"):],
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "GIT_PROTOCOL": self.headers.get("git-protocol", ""),
        }
        p = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
        head, _, data = p.stdout.partition(b"\r\n\r\n")
        status, extra, ctype = 200, [], "text/plain"
        for line in head.decode("latin-1").split("\r\n"):
            k, _, v = line.partition(":")
            k, v = k.strip().lower(), v.strip()
            if k == "status":
                status = int(v.split()[0])
            elif k == "content-type":
                ctype = v
            elif k:
                extra.append((k, v))
        self.reply(status, ctype, data, extra)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_any


def dns_name(packet):
    """The first question's name of a DNS query, or None."""
    labels, i = [], 12
    try:
        while packet[i]:
            n = packet[i]
            labels.append(packet[i + 1:i + 1 + n].decode("latin-1"))
            i += 1 + n
        return ".".join(labels)
    except IndexError:
        return None


def dns_answer(packet, proto, client):
    with LOCK, open(f"{OUT}/dns.jsonl", "a") as f:
        f.write(json.dumps({"proto": proto, "client": client, "name": dns_name(packet),
                            "raw": packet.hex()}) + "\n")
    if len(packet) < 12:
        return b""
    # Same id and question, QR set, RCODE 3 (NXDOMAIN), no answers.
    return packet[:2] + b"\x81\x83" + packet[4:6] + b"\x00\x00\x00\x00\x00\x00" + packet[12:]


class DnsUdp(socketserver.BaseRequestHandler):
    def handle(self):
        data, sock = self.request
        sock.sendto(dns_answer(data, "udp", self.client_address[0]), self.client_address)


class DnsTcp(socketserver.BaseRequestHandler):
    def handle(self):
        head = self.request.recv(2)
        if len(head) < 2:
            return
        n = struct.unpack("!H", head)[0]
        data = b""
        while len(data) < n:
            more = self.request.recv(n - len(data))
            if not more:
                break
            data += more
        out = dns_answer(data, "tcp", self.client_address[0])
        self.request.sendall(struct.pack("!H", len(out)) + out)


def main():
    os.makedirs(f"{OUT}/git", exist_ok=True)
    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    for server in (socketserver.ThreadingUDPServer(("0.0.0.0", 53), DnsUdp),
                   socketserver.ThreadingTCPServer(("0.0.0.0", 53), DnsTcp)):
        threading.Thread(target=server.serve_forever, daemon=True).start()
    crt, key = make_certs()
    plain = ThreadingHTTPServer(("0.0.0.0", 80), Handler)
    tls = ThreadingHTTPServer(("0.0.0.0", 443), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
    threading.Thread(target=plain.serve_forever, daemon=True).start()
    open(f"{OUT}/ready", "w").close()
    tls.serve_forever()


if __name__ == "__main__":
    main()
