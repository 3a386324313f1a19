#!/usr/bin/env python3
"""Check the deployment files (issue #23 item 4) without a container daemon.

- deploy/compose.yaml parses (PyYAML) into three node services built from
  deploy/Dockerfile, each mounting its own existing config read-only, its
  own volume and passphrase secret, node 1 forming the cluster and the
  others joining it; `docker compose config` too where Compose exists.
- deploy/Dockerfile is multi-stage, ends non-root, builds the locked binary;
  `docker build` where a daemon answers (otherwise it says it skipped).
- deploy/keyquorum.service passes `systemd-analyze verify` (ExecStart
  pointed at the binary under test) where systemd-analyze exists.

Usage: deploy_check.py PATH_TO_KEYQUORUM_BINARY
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(ROOT, "deploy")


def fail(msg):
    print(f"deploy check: {msg}", file=sys.stderr)
    sys.exit(1)


def answers(cmd):
    """Whether `cmd` exists here and succeeds."""
    return shutil.which(cmd[0]) is not None and subprocess.run(cmd, capture_output=True).returncode == 0


def check_compose():
    with open(os.path.join(DEPLOY, "compose.yaml")) as f:
        doc = yaml.safe_load(f)
    services = doc.get("services") or {}
    if sorted(services) != ["kq1", "kq2", "kq3"]:
        fail(f"compose services are {sorted(services)}, not kq1..kq3")
    volumes, secrets = doc.get("volumes") or {}, doc.get("secrets") or {}
    for i, name in enumerate(["kq1", "kq2", "kq3"], start=1):
        s = services[name]
        build = s.get("build") or {}
        if build.get("dockerfile") != "deploy/Dockerfile":
            fail(f"{name} is not built from deploy/Dockerfile")
        cmd = s.get("command") or []
        if cmd[:3] != ["node", "--config", "/etc/keyquorum/node.toml"]:
            fail(f"{name}: command {cmd}")
        if i == 1 and "--init" not in cmd:
            fail("kq1 does not form the cluster (--init)")
        if i > 1 and ("--join" not in cmd or "--join-code" not in cmd):
            fail(f"{name} does not join (--join, --join-code)")
        mounts = s.get("volumes") or []
        cfg = [m for m in mounts if m.endswith(":/etc/keyquorum/node.toml:ro")]
        if len(cfg) != 1:
            fail(f"{name} mounts no read-only config")
        path = os.path.join(DEPLOY, cfg[0].split(":")[0])
        if not os.path.isfile(path):
            fail(f"{name}'s config {path} is missing")
        with open(path) as f:
            if not re.search(rf"^id = {i}$", f.read(), re.M):
                fail(f"{path} is not node {i}'s")
        data = [m for m in mounts if m.endswith(":/var/lib/keyquorum")]
        if len(data) != 1 or data[0].split(":")[0] not in volumes:
            fail(f"{name} has no named data volume")
        env = s.get("environment") or {}
        if env.get("KEYQUORUM_PASSPHRASE_FILE") != "/run/secrets/passphrase":
            fail(f"{name} does not read its passphrase from a secret")
        srcs = [x["source"] for x in s.get("secrets") or []]
        if len(srcs) != 1 or srcs[0] not in secrets:
            fail(f"{name} has no passphrase secret of its own")
        if "KEYQUORUM_PASSPHRASE" in env:
            fail(f"{name} puts the passphrase in the environment")
    print("compose.yaml: 3 node services, configs, volumes and secrets check")
    if answers(["docker", "compose", "version"]):
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ, KEYQUORUM_JOIN_CODE="kqjoin1-" + "0" * 64)
            r = subprocess.run(["docker", "compose", "-f", os.path.join(DEPLOY, "compose.yaml"), "config", "-q"],
                               capture_output=True, text=True, env=env)
            if r.returncode != 0:
                fail(f"docker compose config: {r.stderr}")
        print("docker compose config: ok")
    else:
        print("docker compose config: skipped (Docker Compose is not installed here)")


def check_dockerfile():
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        text = f.read()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    if len(froms) < 2:
        fail("the Dockerfile is not multi-stage")
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    if not users or users[-1] in ("root", "0"):
        fail("the final image runs as root")
    if "--locked" not in text or "-p keyquorum" not in text:
        fail("the Dockerfile does not build the locked keyquorum binary")
    with open(os.path.join(ROOT, "rust-toolchain.toml")) as f:
        channel = re.search(r'channel = "([^"]+)"', f.read()).group(1)
    if f"rust:{channel}-" not in froms[0]:
        fail(f"the build stage {froms[0]} is not the pinned toolchain {channel}")
    print(f"Dockerfile: {len(froms)} stages, final user {users[-1]}, toolchain {channel}")
    if answers(["docker", "info"]):
        r = subprocess.run(["docker", "build", "-f", os.path.join(DEPLOY, "Dockerfile"), "-t", "keyquorum:ci", ROOT])
        if r.returncode != 0:
            fail("docker build failed")
        print("docker build: ok")
    else:
        print("docker build: skipped (no container daemon answers here)")


def check_unit(binary):
    if not shutil.which("systemd-analyze"):
        print("systemd-analyze verify: skipped (not installed here)")
        return
    with open(os.path.join(DEPLOY, "keyquorum.service")) as f:
        unit = f.read()
    binary = os.path.abspath(binary)
    if not os.access(binary, os.X_OK):
        fail(f"{binary} is not an executable")
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "keyquorum.service")
        with open(path, "w") as f:
            f.write(unit.replace("/usr/local/bin/keyquorum", binary))
        r = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True)
        # Complaints about other units on this machine are not ours.
        ours = [l for l in (r.stdout + r.stderr).splitlines() if "keyquorum.service" in l]
        if r.returncode != 0 or ours:
            fail("systemd-analyze verify:\n" + "\n".join(ours or [r.stderr]))
    print("keyquorum.service: systemd-analyze verify ok")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        fail("usage: deploy_check.py PATH_TO_KEYQUORUM_BINARY")
    check_compose()
    check_dockerfile()
    check_unit(sys.argv[1])
