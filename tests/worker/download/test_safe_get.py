"""SSRF rules of the fetcher, against real local HTTP servers (the webhook sink serves files)."""

import pytest

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
        ("http:///nohost", "no host"),
    ],
)
def test_refused_urls(url, why):
    with pytest.raises(FetchRefused, match=why):
        check_url(url, STRICT)


def test_public_literal_address_passes_the_check():
    check_url("http://93.184.216.34/x", STRICT)  # resolution only; nothing is fetched


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
    from types import SimpleNamespace

    from falbridge.worker.download.files import download_result_files, local_name

    assert local_name("images[0]", "../../etc/passwd") == "images_0_-.._.._etc_passwd"
    assert "/" not in local_name("a/b", "c/d")
    url = webhook_sink.serve_file("/m.png", b"\x89PNGmask", "image/png")
    job = SimpleNamespace(
        id=uuid.uuid4(), files=[SimpleNamespace(url=url, path="image", file_name="mask.png")]
    )
    [saved] = download_result_files(job, tmp_path, LOOPBACK_OK)
    assert saved.read_bytes() == b"\x89PNGmask" and saved.parent.parent == tmp_path
