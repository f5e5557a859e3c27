"""SSRF rules of the fetcher, against real local HTTP servers (the webhook sink serves files)."""

import http.server
import ipaddress
import socket
import ssl
import threading
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from falbridge.worker.download.connections import default_tls
from falbridge.worker.download.safe_get import FetchPolicy, FetchRefused, check_url, fetch_bytes

LOOPBACK_OK = FetchPolicy(allow_private=True)
STRICT = FetchPolicy(allow_private=False)


@pytest.mark.parametrize(
    "url,why",
    [
        ("file:///etc/passwd", "only http and https"),
        ("ftp://example.com/x", "only http and https"),
        ("gopher://127.0.0.1:6379/_INFO", "only http and https"),
        ("/etc/passwd", "only http and https"),
        ("http://user:pw@example.com/", "credentials"),
        ("http://127.0.0.1:8000/x", "non-public"),
        ("http://localhost/x", "non-public"),
        ("http://10.0.0.1/x", "non-public"),
        ("http://172.16.5.4/x", "non-public"),
        ("http://192.168.1.1/x", "non-public"),
        ("http://169.254.169.254/latest/meta-data/", "non-public"),
        ("http://100.64.0.1/x", "non-public"),
        ("http://0.0.0.0/x", "non-public"),
        ("http://[::1]/x", "non-public"),
        ("http://[fd00::1]/x", "non-public"),
        ("http://[fe80::1]/x", "non-public"),
        ("http://[::ffff:127.0.0.1]/x", "non-public"),
        ("http://224.0.0.1/x", "non-public"),
        # IPv6 forms that embed an IPv4 address, reached through a translator or tunnel:
        ("http://[64:ff9b::127.0.0.1]/x", "non-public"),  # NAT64
        ("http://[64:ff9b::169.254.169.254]/x", "non-public"),
        ("http://[64:ff9b::10.0.0.1]/x", "non-public"),
        ("http://[64:ff9b:1::808:808]/x", "non-public"),  # local-use NAT64: refused whatever it holds
        ("http://[2002:7f00:1::1]/x", "non-public"),  # 6to4 of 127.0.0.1
        ("http://[2002:a9fe:a9fe::]/x", "non-public"),  # 6to4 of 169.254.169.254
        ("http://[::127.0.0.1]/x", "non-public"),  # IPv4-compatible
        ("http://[::10.1.2.3]/x", "non-public"),
        ("http://[::ffff:0:127.0.0.1]/x", "non-public"),  # IPv4-translated (SIIT)
        ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x", "non-public"),  # Teredo
        ("http:///nohost", "no host"),
    ],
)
def test_refused_urls(url, why):
    with pytest.raises(FetchRefused, match=why):
        check_url(url, STRICT)


def test_public_literal_address_passes_the_check():
    check_url("http://93.184.216.34/x", STRICT)  # resolution only; nothing is fetched


@pytest.mark.parametrize(
    "host", ["[64:ff9b::93.184.216.34]", "[2002:5db8:d822::1]", "[::93.184.216.34]", "[2606:4700::1111]"]
)
def test_ipv6_forms_embedding_a_public_ipv4_pass_the_check(host):
    assert check_url(f"http://{host}/x", STRICT) == ipaddress.ip_address(host.strip("[]"))


def test_fetch_with_loopback_allowed(webhook_sink):
    url = webhook_sink.serve_file("/mask.png", b"\x89PNG" + b"\x00" * 10, "image/png")
    body, content_type = fetch_bytes(url, LOOPBACK_OK)
    assert body.startswith(b"\x89PNG") and content_type == "image/png"


def test_loopback_refused_by_default(webhook_sink):
    url = webhook_sink.serve_file("/mask.png", b"x", "image/png")
    with pytest.raises(FetchRefused, match="non-public"):
        fetch_bytes(url, STRICT)


def test_size_cap(webhook_sink):
    url = webhook_sink.serve_file("/big.bin", b"x" * 5000)
    with pytest.raises(FetchRefused, match="limit"):
        fetch_bytes(url, FetchPolicy(allow_private=True, max_bytes=1000))


def test_download_result_files_names_are_safe(tmp_path, webhook_sink):
    import uuid

    from falbridge.worker.download.files import download_result_files, local_name

    assert local_name("images[0]", "../../etc/passwd") == "images_0_-.._.._etc_passwd"
    assert "/" not in local_name("a/b", "c/d")
    url = webhook_sink.serve_file("/m.png", b"\x89PNGmask", "image/png")
    job = SimpleNamespace(
        id=uuid.uuid4(), files=[SimpleNamespace(url=url, path="image", file_name="mask.png")]
    )
    [result] = download_result_files(job, tmp_path, LOOPBACK_OK)
    saved = result.saved
    assert result.error is None and saved.read_bytes() == b"\x89PNGmask" and saved.parent.parent == tmp_path


# -- pinning: the address checked is the address connected to ------------------------


class Origin:
    """A local HTTP(S) server on one address. GET answers its name, or a redirect set in
    `redirects`; it records each request's Host header and, over TLS, the SNI name."""

    def __init__(self, address: str, name: str, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.name, self.redirects = name, {}
        self.hosts: list[str] = []
        self.sni: list[str | None] = []
        origin = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keeps connections open, as real servers do

            def do_GET(self) -> None:
                origin.hosts.append(self.headers["Host"])
                target = origin.redirects.get(self.path)
                self.send_response(302 if target else 200)
                if target:
                    self.send_header("Location", target)
                body = b"" if target else origin.name.encode()
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in address else socket.AF_INET

        self._server = Server((address, port), Handler)
        if tls is not None:
            tls.sni_callback = lambda _sock, name, _ctx: self.sni.append(name)
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        ).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def origins():
    started: list[Origin] = []

    def start(address: str, name: str, tls: ssl.SSLContext | None = None, port: int = 0) -> Origin:
        started.append(Origin(address, name, tls, port))
        return started[-1]

    yield start
    for origin in started:
        origin.close()


@pytest.fixture
def rebinding_dns(monkeypatch):
    """The system resolver, except for names given answers: each lookup of such a name
    gets the next answer in its list (the last one repeats), as a rebinding DNS would."""
    real = socket.getaddrinfo
    answers: dict[str, list[str]] = {}
    lookups: list[str] = []

    def getaddrinfo(host, port, *args, **kwargs):
        if host not in answers:
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = answers[host].pop(0) if len(answers[host]) > 1 else answers[host][0]
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return SimpleNamespace(answers=answers, lookups=lookups)


def test_the_address_checked_is_the_address_connected_to(origins, rebinding_dns):
    checked = origins("127.0.0.1", "checked")
    internal = origins("127.0.0.2", "internal", port=checked.port)  # where a second lookup goes
    rebinding_dns.answers["files.test"] = ["127.0.0.1", "127.0.0.2"]
    body, _ = fetch_bytes(f"http://files.test:{checked.port}/f", LOOPBACK_OK)
    assert body == b"checked"
    assert checked.hosts == [f"files.test:{checked.port}"] and internal.hosts == []
    assert rebinding_dns.lookups == ["files.test"]  # resolved once, for the check


def test_every_redirect_hop_is_checked_and_pinned(origins, rebinding_dns):
    first = origins("127.0.0.1", "first")
    second = origins("127.0.0.1", "second")
    internal = origins("127.0.0.2", "internal", port=second.port)
    rebinding_dns.answers["hop.test"] = ["127.0.0.1", "127.0.0.2"]
    first.redirects["/f"] = f"http://hop.test:{second.port}/g"
    body, _ = fetch_bytes(f"http://127.0.0.1:{first.port}/f", LOOPBACK_OK)
    assert body == b"second" and second.hosts == [f"hop.test:{second.port}"] and internal.hosts == []
    assert rebinding_dns.lookups == ["hop.test"]


def test_an_ipv6_address_is_connected_to_in_brackets(origins, rebinding_dns):
    server = origins("::1", "v6")
    rebinding_dns.answers["v6.test"] = ["::1"]
    assert fetch_bytes(f"http://v6.test:{server.port}/f", LOOPBACK_OK)[0] == b"v6"
    assert fetch_bytes(f"http://[::1]:{server.port}/f", LOOPBACK_OK)[0] == b"v6"
    assert server.hosts == [f"v6.test:{server.port}", f"[::1]:{server.port}"]


def test_a_malformed_url_is_refused_not_a_crash():
    with pytest.raises(FetchRefused, match="not a valid URL"):
        fetch_bytes("http://a:80:80/x", LOOPBACK_OK)


# -- https: pinned to the address, verified against the host name -----------------------


def _certificate(ca_key, ca_name, names: list[str]):
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


@pytest.fixture
def tls(tmp_path):
    """`server(names)`: a server context with a certificate for those DNS names, issued by
    a throwaway CA; `client`: a client context trusting only that CA."""
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "falbridge test CA")])
    now = datetime.now(UTC)
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    def server(names: list[str]) -> ssl.SSLContext:
        key, cert = _certificate(ca_key, ca_name, names)
        pem = tmp_path / f"{names[0]}.pem"
        pem.write_bytes(
            cert.public_bytes(serialization.Encoding.PEM)
            + key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pem)
        return context

    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return SimpleNamespace(server=server, client=client)


def test_https_is_pinned_and_verified_against_the_host_name(origins, rebinding_dns, tls):
    # The certificate names files.test only, not 127.0.0.1: it verifies only if the
    # name, not the address connected to, is what TLS checks (and sends as SNI).
    server = origins("127.0.0.1", "secure", tls=tls.server(["files.test"]))
    internal = origins("127.0.0.2", "internal", tls=tls.server(["files.test"]), port=server.port)
    rebinding_dns.answers["files.test"] = ["127.0.0.1", "127.0.0.2"]
    policy = FetchPolicy(allow_private=True, verify=tls.client)
    body, _ = fetch_bytes(f"https://files.test:{server.port}/f", policy)
    assert body == b"secure" and server.sni == ["files.test"] and internal.sni == []
    assert server.hosts == [f"files.test:{server.port}"]


def test_downloads_from_one_host_share_a_kept_alive_connection(origins, rebinding_dns, tls):
    server = origins("127.0.0.1", "secure", tls=tls.server(["files.test"]))
    rebinding_dns.answers["files.test"] = ["127.0.0.1"]
    policy = FetchPolicy(allow_private=True, verify=tls.client)
    for _ in range(3):
        assert fetch_bytes(f"https://files.test:{server.port}/f", policy)[0] == b"secure"
    assert len(server.hosts) == 3 and server.sni == ["files.test"]  # one handshake


def test_https_with_a_certificate_for_another_name_fails(origins, rebinding_dns, tls):
    server = origins("127.0.0.1", "impostor", tls=tls.server(["other.test"]))
    rebinding_dns.answers["files.test"] = ["127.0.0.1"]
    with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
        fetch_bytes(f"https://files.test:{server.port}/f", FetchPolicy(allow_private=True, verify=tls.client))
    assert server.hosts == []


def test_no_tls_connection_is_reused_for_another_host(origins, rebinding_dns, tls):
    # Same address and port, certificate for a.test only: the hop to b.test must make (and
    # verify) its own connection rather than reuse the one verified for a.test.
    server = origins("127.0.0.1", "a", tls=tls.server(["a.test"]))
    rebinding_dns.answers.update({"a.test": ["127.0.0.1"], "b.test": ["127.0.0.1"]})
    server.redirects["/f"] = f"https://b.test:{server.port}/g"
    with pytest.raises(httpx.ConnectError, match="certificate verify failed"):
        fetch_bytes(f"https://a.test:{server.port}/f", FetchPolicy(allow_private=True, verify=tls.client))
    assert server.sni == ["a.test", "b.test"] and server.hosts == [f"a.test:{server.port}"]


def test_download_result_files_reports_each_failure_and_tries_every_file(tmp_path, webhook_sink):
    import uuid

    from falbridge.worker.download.files import download_result_files

    url = webhook_sink.serve_file("/m.png", b"mask", "image/png")
    files = [
        SimpleNamespace(url=url, path="a", file_name=None),
        SimpleNamespace(url="http://a:80:80/x", path="b", file_name=None),
        SimpleNamespace(url=url, path="c", file_name=None),
    ]
    job = SimpleNamespace(id=uuid.uuid4(), files=files)
    results = download_result_files(job, tmp_path, LOOPBACK_OK)
    assert [(r.file.path, r.saved is not None) for r in results] == [("a", True), ("b", False), ("c", True)]
    assert results[1].error == "not a valid URL: Invalid port: '80:80'"
    (tmp_path / "blocked").write_text("a file where the directory would go")
    unwritable = download_result_files(job, tmp_path / "blocked", LOOPBACK_OK)
    assert [r.saved for r in unwritable] == [None] * 3 and "Not a directory" in unwritable[0].error


def test_downloads_share_one_trust_store_per_process_and_it_verifies():
    """Built once (loading the CA bundle is most of a small download's CPU), and still the
    strict default: certificates and host names checked."""
    context = default_tls()
    assert default_tls() is context
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
