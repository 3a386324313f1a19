"""Encrypted-data sessions with an implementation we did not write.

Inputs, their knowledge proofs and their range proofs are built here with
rbcl (libsodium's Ristretto255, PyPI) and hashlib, from the encoding documented
in `keyquorum_core::he`, never with keyquorum's code. A running cluster
must accept them (and refuse them altered), sum them, and decrypt the sum;
the decryption shares in the transcript are then combined here (Lagrange
over the member ids) and must give the values the cluster announced.
Requests are signed (RFC 9421) by the PyPI package http-message-signatures.

Usage: python3 he_interop.py URL CA_PEM KEY_FILE KEY_ID
"""

import hashlib
import json
import secrets
import sys

import rbcl as na
import requests
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from http_message_signatures import HTTPMessageSigner, HTTPSignatureKeyResolver, algorithms

url, ca, key_file, key_id = sys.argv[1:5]
with open(key_file, "rb") as f:
    private = load_pem_private_key(f.read(), password=None)

# The order of the Ristretto255 group (RFC 9496 §4.1).
L = 2**252 + 27742317777372353535851937790883648493
IDENTITY = bytes(32)


class Keys(HTTPSignatureKeyResolver):
    def resolve_private_key(self, key_id):
        return private

    def resolve_public_key(self, key_id):
        return private.public_key()


signer = HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=Keys())
session = requests.Session()
session.verify = ca
results = {"passed": 0, "failed": 0}


def check(what, ok, detail=""):
    results["passed" if ok else "failed"] += 1
    print(("ok   " if ok else "FAIL ") + what + ("" if ok else f": {detail}"))


def call(method, path, body=None):
    headers = {"content-type": "application/json"} if body is not None else {}
    data = json.dumps(body).encode() if body is not None else None
    req = requests.Request(method, url + path, data=data, headers=headers).prepare()
    covered = ["@method", "@authority", "@target-uri"] + (["content-type"] if body is not None else [])
    signer.sign(req, key_id=key_id, nonce=secrets.token_hex(16), label="py",
                covered_component_ids=covered, body=req.body if body is not None else None)
    return session.send(req)


# --- group arithmetic on libsodium --------------------------------------

def sc(n):
    return (n % L).to_bytes(32, "little")


def mul_base(n):
    n %= L
    return IDENTITY if n == 0 else na.crypto_scalarmult_ristretto255_base(sc(n))


def mul(n, p):
    n %= L
    if n == 0 or p == IDENTITY:
        return IDENTITY
    return na.crypto_scalarmult_ristretto255(sc(n), p)


def add(p, q):
    if p == IDENTITY:
        return q
    if q == IDENTITY:
        return p
    return na.crypto_core_ristretto255_add(p, q)


def sub(p, q):
    if q == IDENTITY:
        return p
    if p == q:
        return IDENTITY
    if p == IDENTITY:
        return na.crypto_scalarmult_ristretto255(sc(L - 1), q)
    return na.crypto_core_ristretto255_sub(p, q)


def rand():
    return int.from_bytes(secrets.token_bytes(64), "little") % L


def h(*parts):
    return int.from_bytes(hashlib.sha512(b"".join(parts)).digest(), "little") % L


B = mul_base(1)

# --- the documented encoding ---------------------------------------------


def context(sid, pk, submitter):
    name = submitter.encode()
    return b"keyquorum-he-v1" + sid + pk + len(name).to_bytes(2, "big") + name


def encrypt(pk, m, r):
    return mul_base(r), add(mul_base(m), mul(r, pk))


def knowledge_input(sid, pk, submitter, values):
    ctx = context(sid, pk, submitter)
    ct, proof = b"", b""
    for k, m in enumerate(values):
        r, w = rand(), rand()
        c1, c2 = encrypt(pk, m, r)
        a = mul_base(w)
        e = h(b"keyquorum-he-v1/knowledge", ctx, k.to_bytes(4, "big"), c1, c2, a)
        ct += c1 + c2
        proof += sc(e) + sc(w + e * r)
    return ct, proof


def range_input(sid, pk, submitter, values, bits):
    ctx = context(sid, pk, submitter)
    ct, proof = b"", b""
    for k, m in enumerate(values):
        s1, s2 = IDENTITY, IDENTITY
        for j in range(bits):
            bit = (m >> j) & 1
            r = rand()
            d1, d2 = encrypt(pk, bit, r)
            e_sim, z_sim, w = rand(), rand(), rand()
            real = (mul_base(w), mul(w, pk))
            target = d2 if bit else sub(d2, B)
            sim = (sub(mul_base(z_sim), mul(e_sim, d1)), sub(mul(z_sim, pk), mul(e_sim, target)))
            b0, b1 = (sim, real) if bit else (real, sim)
            e = h(b"keyquorum-he-v1/range", ctx, k.to_bytes(4, "big"), bytes([bits, j]),
                  d1, d2, b0[0], b0[1], b1[0], b1[1])
            e_real = (e - e_sim) % L
            z_real = (w + e_real * r) % L
            e0, e1, z0, z1 = (e_sim, e_real, z_sim, z_real) if bit else (e_real, e_sim, z_real, z_sim)
            proof += d1 + d2 + sc(e0) + sc(e1) + sc(z0) + sc(z1)
            s1 = add(s1, mul(1 << j, d1))
            s2 = add(s2, mul(1 << j, d2))
        ct += s1 + s2
    return ct, proof


def link(previous, index, submitter, ct, proof):
    name = submitter.encode()
    h = hashlib.sha256(b"keyquorum-he-v1/input" + previous + index.to_bytes(8, "big")
                       + len(name).to_bytes(2, "big") + name)
    for part in (ct, proof):
        h.update(len(part).to_bytes(4, "big") + part)
    return h.digest()


def lagrange_at_zero(ids):
    out = {}
    for i in ids:
        num, den = 1, 1
        for j in ids:
            if j != i:
                num = num * j % L
                den = den * (j - i) % L
        out[i] = num * pow(den, L - 2, L) % L
    return out


def run(name, inputs, slots, make):
    r = call("POST", "/v1/he/sessions", {"name": name, "slots": slots, "inputs": inputs, "bound": 16})
    check(f"{name}: session created", r.status_code == 200, r.text)
    info = r.json()
    sid, pk = bytes.fromhex(info["id"]), bytes.fromhex(info["public_key"])
    want = [0] * slots
    chain = bytes(32)
    for i in range(3):
        values = [(7 * i + 3 * k + 1) % 16 for k in range(slots)]
        ct, proof = make(sid, pk, key_id, values)
        r = call("POST", f"/v1/he/sessions/{name}/inputs", {"ciphertext": ct.hex(), "proof": proof.hex()})
        check(f"{name}: input {i} made by rbcl/libsodium is accepted", r.status_code == 200, r.text)
        want = [a + b for a, b in zip(want, values)]
        chain = link(chain, i, key_id, ct, proof)
    # Altered: a flipped proof byte, or the proof under another submitter.
    ct, proof = make(sid, pk, key_id, [1] * slots)
    bad = bytearray(proof)
    bad[40] ^= 1
    r = call("POST", f"/v1/he/sessions/{name}/inputs", {"ciphertext": ct.hex(), "proof": bytes(bad).hex()})
    check(f"{name}: a flipped proof byte is refused", r.status_code == 400, r.text)
    ct, proof = make(sid, pk, "someone-else", [1] * slots)
    r = call("POST", f"/v1/he/sessions/{name}/inputs", {"ciphertext": ct.hex(), "proof": proof.hex()})
    check(f"{name}: a proof bound to another submitter is refused", r.status_code == 400, r.text)
    # Close and decrypt exactly the inputs the session holds (count and
    # hash chain, recomputed here from what was submitted).
    now = call("GET", f"/v1/he/sessions/{name}").json()
    check(f"{name}: the hash chain over the inputs is the documented one",
          now["inputs_hash"] == chain.hex(), f"{now['inputs_hash']} != {chain.hex()}")
    stated = {"count": now["count"], "inputs_hash": now["inputs_hash"]}
    r = call("POST", f"/v1/he/sessions/{name}/close", {"count": now["count"] - 1,
                                                       "inputs_hash": now["inputs_hash"]})
    check(f"{name}: a close stating other inputs is refused", r.status_code == 409, r.text)
    r = call("POST", f"/v1/he/sessions/{name}/close", stated)
    check(f"{name}: closed", r.status_code == 200, r.text)
    r = call("POST", f"/v1/he/sessions/{name}/result", stated)
    check(f"{name}: decrypted", r.status_code == 200, r.text)
    out = r.json()
    check(f"{name}: the sum is the sum", out["values"] == want, f"{out['values']} != {want}")
    # Combine the shares here: m_k·B = c2_k − Σ λ_i·D_{i,k}.
    t = out["transcript"]
    agg = bytes.fromhex(t["progress"]["aggregate"])
    shares = [bytes.fromhex(s) for s in t["progress"]["result"]["shares"]]
    ids = [int.from_bytes(s[:2], "big") for s in shares]
    lam = lagrange_at_zero(ids)
    for k in range(slots):
        c2 = agg[64 * k + 32: 64 * k + 64]
        acc = IDENTITY
        for s, i in zip(shares, ids):
            acc = add(acc, mul(lam[i], s[2 + 32 * k: 34 + 32 * k]))
        check(f"{name}: slot {k} combines to the announced value here",
              sub(c2, acc) == mul_base(out["values"][k]))


run("py-knowledge-" + secrets.token_hex(3), "knowledge", 2, knowledge_input)
run("py-range-" + secrets.token_hex(3), "range:4", 2, lambda s, p, who, v: range_input(s, p, who, v, 4))
print(f"he interop: {results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
