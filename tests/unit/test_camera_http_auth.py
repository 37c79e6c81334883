"""Answering a camera's HTTP Digest challenge (pure)."""

from __future__ import annotations

from adapters.onvif.http import digest_authorization


def _fields(header: str) -> dict[str, str]:
    scheme, _, rest = header.partition(" ")
    assert scheme == "Digest"
    out = {}
    for part in rest.split(", "):
        name, _, value = part.partition("=")
        out[name] = value.strip('"')
    return out


def test_the_rfc_2617_example_gives_its_published_response() -> None:
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    header = digest_authorization(
        challenge, "Mufasa", "Circle Of Life", "GET", "/dir/index.html", cnonce="0a4f113b"
    )
    assert header is not None
    fields = _fields(header)
    assert fields["response"] == "6629fae49393a05397450978507c4ef1"
    assert fields["qop"] == "auth" and fields["nc"] == "00000001"
    assert fields["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert "Circle Of Life" not in header  # the password itself never goes out


def test_sha_256_and_challenges_it_cannot_answer() -> None:
    sha = digest_authorization(
        'Digest realm="cam", nonce="abc", algorithm=SHA-256, qop="auth"',
        "admin",
        "pw",
        "GET",
        "/snap.jpg",
        cnonce="c1",
    )
    assert sha is not None and len(_fields(sha)["response"]) == 64
    assert digest_authorization('Basic realm="cam"', "admin", "pw", "GET", "/", cnonce="c") is None
    assert (
        digest_authorization(
            'Digest realm="cam", nonce="n", algorithm=SHA-512-256', "a", "p", "GET", "/", cnonce="c"
        )
        is None
    )
    assert digest_authorization('Digest realm="cam"', "a", "p", "GET", "/", cnonce="c") is None
    # Only auth-int offered: answering would need the body hashed too.
    only_int = 'Digest realm="cam", nonce="n", qop="auth-int"'
    assert digest_authorization(only_int, "a", "p", "GET", "/", cnonce="c") is None
