"""`postern --check`, `gen-secret`, `--version` and start-up refusal, run as a user would from a shell.

No network: --check validates certificates, URLs and routes only.
"""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import pytest

import harness

# The Synology guide's own example: the e-mail list is indented under `to:` and has no `allowed_users:` key,
# so YAML reads one string `to: "http://httpbin - your.email.address@gmail.com"`.
GUIDE_BROKEN_POLICY = """\
- from: https://httpbin.int.nas.example
  to: http://httpbin
    - your.email.address@gmail.com
"""

GOOD_POLICY = """\
- from: https://httpbin.int.nas.example
  to: http://httpbin
  allowed_users:
    - your.email.address@gmail.com
- from: https://public.int.nas.example
  to: http://127.0.0.1:8080
  allow_public_unauthenticated_access: true
- from: https://staff.int.nas.example
  to: http://127.0.0.1:8081
  prefix: /api
  allowed_groups: [staff]
  allowed_domains: [example.com]
  timeout: 1m30s
"""


def run(args: list[str], env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess:
    binary = harness.postern_bin()
    if not binary.exists():
        pytest.fail(f"postern binary not found at {binary}: run `make build`")
    return subprocess.run([str(binary), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def output(r: subprocess.CompletedProcess) -> str:
    return r.stdout + r.stderr


@pytest.fixture
def env(certs: harness.Certs) -> dict[str, str]:
    """The guide's environment, with postern terminating TLS itself."""
    return harness.base_env() | {
        "ADDRESS": "127.0.0.1:8443",
        "CERTIFICATE_FILE": str(certs.cert),
        "CERTIFICATE_KEY_FILE": str(certs.key),
        "AUTHENTICATE_SERVICE_URL": "https://auth.int.nas.example",
        "IDP_PROVIDER": "oidc",
        "IDP_PROVIDER_URL": "http://127.0.0.1:9",
        "IDP_CLIENT_ID": "postern",
        "IDP_CLIENT_SECRET": "secret",
        "COOKIE_SECRET": harness.secret32(),
        "POLICY": harness.b64(GOOD_POLICY),
    }


def test_good_env_config_passes(env):
    r = run(["--check"], env)
    assert r.returncode == 0, output(r)


def test_guide_env_verbatim_insecure_server_passes(env):
    """The guide's style: INSECURE_SERVER=TRUE behind DSM's nginx, no certificate, no SHARED_SECRET."""
    for k in ("CERTIFICATE_FILE", "CERTIFICATE_KEY_FILE", "ADDRESS"):
        env.pop(k)
    env["INSECURE_SERVER"] = "TRUE"
    r = run(["--check"], env)
    assert r.returncode == 0, output(r)


def test_guide_broken_policy_is_refused_with_hint(env):
    env["POLICY"] = harness.b64(GUIDE_BROKEN_POLICY)
    r = run(["--check"], env)
    out = output(r)
    assert r.returncode == 1, out
    assert "allowed_users" in out, f"no hint about allowed_users:\n{out}"
    assert "your.email.address@gmail.com" in out, f"the bad `to` value is not shown:\n{out}"
    assert "httpbin.int.nas.example" in out, f"the route is not named:\n{out}"


def test_guide_broken_policy_refuses_to_start(env):
    env["POLICY"] = harness.b64(GUIDE_BROKEN_POLICY)
    env["ADDRESS"] = f"127.0.0.1:{harness.free_port()}"
    r = run([], env, timeout=20)
    assert r.returncode != 0, output(r)
    assert "allowed_users" in output(r)


def config_file(tmp_path: Path, env: dict[str, str], policy: str) -> Path:
    """The same settings as a YAML file with lower-case keys and the policy inline."""
    lines = [f"{k.lower()}: {v!r}" for k, v in env.items()
             if k not in ("PATH", "HOME", "LANG", "TMPDIR", "POLICY")]
    body = "\n".join(lines) + "\npolicy:\n" + "".join(f"  {line}\n" for line in policy.splitlines())
    path = tmp_path / "config.yaml"
    path.write_text(body)
    return path


@pytest.mark.parametrize("flag", ["--config", "-config"])
def test_good_config_file_passes(env, tmp_path, flag):
    path = config_file(tmp_path, env, GOOD_POLICY)
    r = run(["--check", flag, str(path)], harness.base_env())
    assert r.returncode == 0, output(r) + "\n" + path.read_text()


def test_config_file_broken_policy_names_file_and_hint(env, tmp_path):
    path = config_file(tmp_path, env, GUIDE_BROKEN_POLICY)
    r = run(["--check", "--config", str(path)], harness.base_env())
    out = output(r)
    assert r.returncode == 1, out
    assert "allowed_users" in out and "config.yaml" in out, out


def test_env_wins_over_file(env, tmp_path):
    """A broken COOKIE_SECRET in the file is overridden by a good one in the environment."""
    path = config_file(tmp_path, env | {"COOKIE_SECRET": "not-base64!"}, GOOD_POLICY)
    r = run(["--check", "--config", str(path)], harness.base_env() | {"COOKIE_SECRET": harness.secret32()})
    assert r.returncode == 0, output(r)


@pytest.mark.parametrize("change,expect", [
    ({"POLICY": harness.b64(GOOD_POLICY.replace("allowed_users:", "allowed_user:"))}, ["allowed_user"]),
    ({"COOKIE_SECRET": None}, ["COOKIE_SECRET", "gen-secret"]),
    ({"COOKIE_SECRET": base64.b64encode(b"too short").decode()}, ["COOKIE_SECRET"]),
    ({"COOKIE_SECRET": "%%% not base64 %%%"}, ["COOKIE_SECRET"]),
    ({"CERTIFICATE_FILE": "/nonexistent/cert.pem"}, ["CERTIFICATE_FILE", "/nonexistent/cert.pem"]),
    ({"AUTHENTICATE_SERVICE_URL": "https://httpbin.int.nas.example"}, ["httpbin.int.nas.example"]),
    ({"AUTHENTICATE_SERVICE_URL": "not a url"}, ["AUTHENTICATE_SERVICE_URL"]),
    ({"IDP_PROVIDER_URL": "http://idp.example.com"}, ["IDP_PROVIDER_URL"]),
    ({"POLICY": harness.b64("- from: https://x.int.nas.example\n  to: http://127.0.0.1:1\n")}, ["x.int.nas.example"]),
    ({"POLICY": "%%% not base64"}, ["POLICY"]),
    ({"DEFAULT_UPSTREAM_TIMEOUT": "thirty"}, ["DEFAULT_UPSTREAM_TIMEOUT"]),
], ids=["unknown-key", "no-cookie-secret", "short-cookie-secret", "bad-cookie-secret", "missing-cert",
        "auth-host-is-route", "bad-auth-url", "plain-http-idp-not-loopback", "route-without-rule",
        "policy-not-base64", "bad-duration"])
def test_config_errors_name_what_is_wrong(env, change, expect):
    for k, v in change.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    r = run(["--check"], env)
    out = output(r)
    if expect == ["x.int.nas.example"]:
        # A route with no access rule may be refused, or accepted with a warning that it denies everyone.
        assert "x.int.nas.example" in out and ("denies everyone" in out or r.returncode == 1), out
        return
    assert r.returncode == 1, out
    for word in expect:
        assert word in out, f"expected {word!r} in:\n{out}"


def test_check_prints_every_problem(env):
    env.pop("COOKIE_SECRET")
    env["POLICY"] = harness.b64(GUIDE_BROKEN_POLICY)
    r = run(["--check"], env)
    out = output(r)
    assert r.returncode == 1
    assert "COOKIE_SECRET" in out and "allowed_users" in out, out


def test_gen_secret():
    r = run(["gen-secret"], harness.base_env())
    assert r.returncode == 0, output(r)
    assert len(base64.b64decode(r.stdout.strip(), validate=True)) == 32


def test_version():
    r = run(["--version"], harness.base_env())
    assert r.returncode == 0 and "0." in output(r), output(r)
