"""Schemathesis hooks: sign every generated request as the dev cluster's
admin client (HTTP Message Signatures, RFC 9421) with the PyPI package
`http-message-signatures`, an implementation we did not write.

Loaded through SCHEMATHESIS_HOOKS; reads KEYQUORUM_KEY_FILE and
KEYQUORUM_KEY_ID. Schemathesis sends through `requests.Session.send`; the
prepared request (final URL, headers and body bytes) is signed there.
"""

import atexit
import os
import secrets

import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

with open(os.environ["KEYQUORUM_KEY_FILE"], "rb") as f:
    _KEY = load_pem_private_key(f.read(), password=None)
_KEY_ID = os.environ.get("KEYQUORUM_KEY_ID", "admin")


class _Keys(HTTPSignatureKeyResolver):
    def resolve_private_key(self, key_id):
        return _KEY

    def resolve_public_key(self, key_id):
        return _KEY.public_key()


_SIGNER = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_Keys())
_SEND = requests.Session.send


def _signed_send(self, request, **kwargs):
    body = request.body
    if isinstance(body, str):
        body = body.encode()
        request.body = body
    if body is None or isinstance(body, bytes):
        covered = ["@method", "@target-uri"]
        if "content-type" in request.headers:
            covered.append("content-type")
        _SIGNER.sign(
            request,
            key_id=_KEY_ID,
            nonce=secrets.token_hex(16),
            label="schemathesis",
            covered_component_ids=covered,
            body=body or None,
        )
    response = _SEND(self, request, **kwargs)
    _SEEN["sent"] += 1
    if response.status_code == 401:
        _SEEN["401"].append(f"{request.method} {request.url}: {response.text[:300]}")
    return response


_SEEN = {"sent": 0, "401": []}


@atexit.register
def _report():
    # A signed request answered 401 means the two implementations disagree
    # (or the request was refused for a reason worth reading): say so.
    print(f"httpsig hook: {_SEEN['sent']} signed requests, {len(_SEEN['401'])} answered 401")
    for line in _SEEN["401"][:5]:
        print("  " + line)


requests.Session.send = _signed_send
