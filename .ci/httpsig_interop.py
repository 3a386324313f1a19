"""RFC 9421 interoperability with an implementation we did not write.

The PyPI package `http-message-signatures` signs requests that a running
keyquorum cluster must accept (and refuse when tampered with, replayed or
signed by another key), and verifies the signature fields that
`keyquorum client sign` produces for a request.

Usage: python3 httpsig_interop.py URL CA_PEM KEY_FILE KEY_ID KEYQUORUM_BIN
"""

import datetime
import json
import os
import secrets
import subprocess
import sys

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import (
    HTTPMessageSigner,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
    algorithms,
)

url, ca, key_file, key_id, binary = sys.argv[1:6]
with open(key_file, "rb") as f:
    private = load_pem_private_key(f.read(), password=None)
stranger = Ed25519PrivateKey.generate()


class Keys(HTTPSignatureKeyResolver):
    def __init__(self, private_key):
        self.private_key = private_key

    def resolve_private_key(self, key_id):
        return self.private_key

    def resolve_public_key(self, key_id):
        return self.private_key.public_key()


signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=Keys(private))
impostor = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=Keys(stranger))
verifier = HTTPMessageVerifier(signature_algorithm=algorithms.ED25519, key_resolver=Keys(private))
session = requests.Session()
session.verify = ca
results = {"passed": 0, "failed": 0}


def check(what, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"))


def prepared(method, path, body=None):
    headers = {"content-type": "application/json"} if body is not None else {}
    data = json.dumps(body).encode() if body is not None else None
    return requests.Request(method, url + path, data=data, headers=headers).prepare()


def signed(method, path, body=None, who=signer, covered=("@method", "@authority", "@target-uri")):
    req = prepared(method, path, body)
    covered = list(covered) + (["content-type"] if body is not None else [])
    who.sign(
        req,
        key_id=key_id,
        nonce=secrets.token_hex(16),
        label="py",
        covered_component_ids=covered,
        body=req.body if body is not None else None,
    )
    return req


# 1. Signed by the independent implementation: accepted.
r = session.send(signed("GET", "/v1/keys"))
check("GET signed by http-message-signatures is accepted", r.status_code == 200, r.text)
name = "interop-" + secrets.token_hex(4)
req = signed("POST", "/v1/keys", {"name": name, "suite": "ed25519"})
check("it wrote Content-Digest", "Content-Digest" in req.headers, dict(req.headers))
r = session.send(req)
check("POST with a body (content-digest covered) is accepted", r.status_code == 200, r.text)
# 2. The same signed request again: a replay.
r = session.send(req)
check("the same request again is refused as a replay", r.status_code == 401 and "replay" in r.text, r.text)
# 3. Tampered body, other method, another key.
req = signed("POST", "/v1/keys", {"name": name + "x", "suite": "ed25519"})
req.body = req.body.replace(b"interop-", b"interoq-")  # same length
r = session.send(req)
check("a body changed after signing is refused", r.status_code == 401 and "Content-Digest" in r.text, r.text)
r = session.send(signed("GET", "/v1/keys", who=impostor))
check("a signature by another key is refused", r.status_code == 401, r.text)
r = session.send(signed("GET", "/v1/keys", covered=("@method", "@authority")))
check("a signature not covering @target-uri is refused", r.status_code == 401 and "@target-uri" in r.text, r.text)

# 4. Signed by keyquorum (`keyquorum client sign`), verified by the
#    independent implementation, then sent.
body = json.dumps({"message": "00ff"}).encode()
body_path = os.path.join(os.path.dirname(os.path.abspath(key_file)), "interop-body.json")
with open(body_path, "wb") as f:
    f.write(body)
target = f"{url}/v1/keys/{name}/sign"
env = dict(os.environ, KEYQUORUM_KEY_FILE=key_file, KEYQUORUM_KEY_ID=key_id)
out = subprocess.run(
    [binary, "client", "sign", target, "--method", "POST", "--body-file", body_path,
     "--content-type", "application/json", "--json"],
    env=env, check=True, capture_output=True, text=True,
).stdout
fields = json.loads(out)
req = requests.Request("POST", target, data=body, headers={"content-type": "application/json", **fields}).prepare()
try:
    result = verifier.verify(req, max_age=datetime.timedelta(seconds=300), body=body)
    covered = list(result[0].covered_components.keys())
    check("http-message-signatures verifies keyquorum's signature", True)
    check(
        "it covers @method, @target-uri, content-digest",
        all(c in " ".join(covered) for c in ("@method", "@target-uri", "content-digest")),
        covered,
    )
    check("its keyid is the client's name", result[0].parameters["keyid"] == key_id, result[0].parameters)
except Exception as e:  # noqa: BLE001 - any failure is the finding
    check("http-message-signatures verifies keyquorum's signature", False, repr(e))
other = body.replace(b"00ff", b"00fe")
tampered = requests.Request("POST", target, data=other,
                            headers={"content-type": "application/json", **fields}).prepare()
try:
    verifier.verify(tampered, body=other)
    check("http-message-signatures refuses it with another body", False, "verified")
except Exception:  # noqa: BLE001
    check("http-message-signatures refuses it with another body", True)
r = session.send(req)
check("the request signed by `keyquorum client sign` is accepted", r.status_code == 200, r.text)

print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
