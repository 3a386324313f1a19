#!/usr/bin/env bash
# Property-based API testing: schemathesis (PyPI) generates requests from the
# OpenAPI document a running dev cluster serves at /openapi.json and fails on
# any 5xx answer. Every request is signed (RFC 9421) as the dev cluster's
# admin client by the PyPI package http-message-signatures
# (.ci/schemathesis_hooks.py), and .ci/httpsig_interop.py checks that
# package and keyquorum against each other first.
# Usage: .ci/schemathesis.sh PATH-TO-keyquorum-BINARY
set -euo pipefail
BIN=${1:?usage: $0 path/to/keyquorum}
SCHEMATHESIS_VERSION=4.32.5
HTTPSIG_VERSION=3.0.0
# libsodium's Ristretto255 for Python: encrypted-data inputs built without
# our code (.ci/he_interop.py).
RBCL_VERSION=1.1.2
here=$(cd "$(dirname "$0")" && pwd)
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-30}
work=$(mktemp -d)
venv=${SCHEMATHESIS_VENV:-$work/venv}
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION" \
    "http-message-signatures==$HTTPSIG_VERSION" "rbcl==$RBCL_VERSION"

KEYQUORUM_PASSPHRASE=ci-schemathesis "$BIN" dev --data-dir "$work/dev" --json >"$work/dev.json" 2>"$work/dev.log" &
dev=$!
trap 'kill $dev 2>/dev/null || true; wait $dev 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do
    grep -q '^}' "$work/dev.json" 2>/dev/null && break
    kill -0 $dev 2>/dev/null || { cat "$work/dev.log"; exit 1; }
    sleep 0.2
done
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$work/dev.json")
key_file=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key_file"])' "$work/dev.json")
key_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["key_id"])' "$work/dev.json")
# Every connection is TLS 1.3; the node certificates are the roots.
ca=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ca_cert"])' "$work/dev.json")
# RFC 9421 both ways with the independent implementation; it also creates
# a key, so that key-scoped operations have something real to hit.
"$venv/bin/python" "$here/httpsig_interop.py" "$url" "$ca" "$key_file" "$key_id" "$BIN"
# Encrypted-data inputs, knowledge and range proofs made by libsodium (rbcl)
# from the documented encoding; the shares combined there too.
"$venv/bin/python" "$here/he_interop.py" "$url" "$ca" "$key_file" "$key_id"

KEYQUORUM_KEY_FILE="$key_file" KEYQUORUM_KEY_ID="$key_id" \
SCHEMATHESIS_HOOKS="$here/schemathesis_hooks.py" \
"$venv/bin/schemathesis" run "$url/openapi.json" \
    --checks not_a_server_error \
    --max-examples "$EXAMPLES" \
    --request-timeout 30 \
    --tls-verify "$ca" \
    --seed 1
