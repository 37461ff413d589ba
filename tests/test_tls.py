"""TLS (issue 26, patch 0028): every connection cleanses the plaintext it
received once read (the residue scenarios tls_receive and
tls_receive_in_do scrape for it); the contexts read as upstream's."""

import subprocess

from conftest import interpreter

OPTIONS = ("import ssl; "
           "print(int(ssl.create_default_context().options), "
           "int(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).options))")


def test_context_options_are_upstreams():
    out = {v: subprocess.run([interpreter(v), "-c", OPTIONS], check=True,
                             capture_output=True, text=True).stdout
           for v in ("pristine", "experiment")}
    assert out["pristine"] == out["experiment"]
