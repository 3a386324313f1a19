#!/usr/bin/env bash
# Property-based API testing: schemathesis (PyPI) generates requests from the
# OpenAPI document a running dev cluster serves at /openapi.json and fails on
# any 5xx answer. Usage: .ci/schemathesis.sh PATH-TO-keyquorum-BINARY
set -euo pipefail
BIN=${1:?usage: $0 path/to/keyquorum}
SCHEMATHESIS_VERSION=4.32.5
EXAMPLES=${SCHEMATHESIS_EXAMPLES:-30}
work=$(mktemp -d)
venv=${SCHEMATHESIS_VENV:-$work/venv}
if [ ! -x "$venv/bin/schemathesis" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet "schemathesis==$SCHEMATHESIS_VERSION"
fi

KEYQUORUM_PASSPHRASE=ci-schemathesis "$BIN" dev --data-dir "$work/dev" --json >"$work/dev.json" 2>"$work/dev.log" &
dev=$!
trap 'kill $dev 2>/dev/null || true; wait $dev 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 1 300); do
    grep -q '^}' "$work/dev.json" 2>/dev/null && break
    kill -0 $dev 2>/dev/null || { cat "$work/dev.log"; exit 1; }
    sleep 0.2
done
url=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$work/dev.json")
token=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["token"])' "$work/dev.json")
# Every connection is TLS 1.3; the node certificates are the roots.
ca=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["ca_cert"])' "$work/dev.json")
# One key so that key-scoped operations have something real to hit.
python3 - "$url" "$token" "$ca" <<'PY'
import json, ssl, sys, urllib.request
url, token, ca = sys.argv[1], sys.argv[2], sys.argv[3]
req = urllib.request.Request(
    url + "/v1/keys",
    data=json.dumps({"name": "k1", "suite": "ed25519"}).encode(),
    headers={"authorization": "Bearer " + token, "content-type": "application/json"},
)
urllib.request.urlopen(req, timeout=60, context=ssl.create_default_context(cafile=ca)).read()
PY

"$venv/bin/schemathesis" run "$url/openapi.json" \
    -H "Authorization: Bearer $token" \
    --checks not_a_server_error \
    --max-examples "$EXAMPLES" \
    --request-timeout 30 \
    --tls-verify "$ca" \
    --seed 1
