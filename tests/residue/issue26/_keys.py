"""Shared by the load_cert_chain scenarios: a private key whose secret
part is the scenario's secret (32 bytes: an Ed25519 seed, a P-256
scalar), as PKCS#8 PEM, and a self-signed certificate for it."""

import base64
import os
import ssl
import subprocess
import tempfile

# PKCS#8 DER up to the secret: the seed (Ed25519, RFC 8410) or the
# scalar d of an ECPrivateKey without its optional public key (P-256,
# RFC 5915; OpenSSL derives the public key).
PREFIX = {
    "ed25519": bytes.fromhex("302e020100300506032b657004220420"),
    "p256": bytes.fromhex("3041020100301306072a8648ce3d020106082a8648ce3d"
                          "030107042730250201010420"),
}


def write_key(ctx, kind, d):
    """The key file (from the secret, read now) and its certificate, in d.
    The certificate is made by the openssl command (another process)."""
    der = PREFIX[kind] + ctx.read_secret()
    pem = (b"-----BEGIN PRIVATE KEY-----\n" + base64.b64encode(der)
           + b"\n-----END PRIVATE KEY-----\n")
    key = os.path.join(d, "key.pem")
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
    finally:
        os.close(fd)
    cert = os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-new", "-x509", "-key", key,
                    "-out", cert, "-subj", "/CN=localhost", "-days", "1"],
                   check=True, capture_output=True)
    return cert, key


def load(ctx, kind):
    """What a service does: a server context loads its certificate chain.
    The context is dropped with the result."""
    with tempfile.TemporaryDirectory() as d:
        cert, key = write_key(ctx, kind, d)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(cert, key)
        return server.cert_store_stats()["x509"]
