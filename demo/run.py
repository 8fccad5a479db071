"""`make demo`: a local OpenID Connect provider, httpbin and postern with the demo policy; Ctrl-C stops all.

Ports (override with env): IdP 127.0.0.1:9000 (DEMO_IDP_PORT), httpbin 127.0.0.1:9001 (fixed by
demo/policy.yaml), postern https on 127.0.0.1:8443 (fixed by the policy's `from` URLs). Browsers resolve
`*.localhost` to loopback by themselves; the certificate is signed by a CA made here, kept in target/demo/ so
that trusting it once lasts across runs.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

import harness  # noqa: E402

DEMO_DIR = harness.REPO / "target" / "demo"
IDP_PORT = int(os.environ.get("DEMO_IDP_PORT", "9000"))
HTTPBIN_PORT = 9001
POSTERN_PORT = 8443
AUTH_URL = f"https://auth.localhost:{POSTERN_PORT}"
SUBS = ["httpbin", "staff", "domain", "public", "auth", "unknown"]


def port_free(port: int) -> bool:
    with socket.socket() as s:
        # SO_REUSEADDR as servers set it: TIME_WAIT left by a previous run does not count as in use.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def main() -> int:
    busy = [p for p in (IDP_PORT, HTTPBIN_PORT, POSTERN_PORT) if not port_free(p)]
    if busy:
        print(f"demo: port(s) {busy} on 127.0.0.1 are in use; stop what uses them and retry", file=sys.stderr)
        return 1
    harness.resolve_to_loopback("localhost")
    logs = DEMO_DIR / "logs"
    names = ["*.localhost", "localhost"] + [f"{s}.localhost" for s in SUBS]
    certs = harness.make_certs(DEMO_DIR / "certs", names, ca_name="postern demo CA", days=30, reuse=True)
    policy = (HERE / "policy.yaml").read_text()
    procs: list[harness.Proc] = []

    def stop_all() -> None:
        # A second Ctrl-C (or SIGTERM) must not interrupt the clean-up and leave the IdP or httpbin running.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for p in reversed(procs):
            p.stop()

    def on_term(*_args) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        print("demo: starting the IdP, httpbin and postern ...", flush=True)
        procs.append(harness.start_idp(IDP_PORT, [f"{AUTH_URL}/oauth2/callback"], logs))
        procs.append(harness.start_httpbin(HTTPBIN_PORT, logs))
        env = harness.postern_env(port=POSTERN_PORT, certs=certs, idp_port=IDP_PORT, policy=policy,
                                  domain="localhost", extra={"LOG_LEVEL": "info"})
        env["ADDRESS"] = f"127.0.0.1:{POSTERN_PORT}"
        procs.append(harness.start_postern("postern", env, f"https://httpbin.localhost:{POSTERN_PORT}/ping",
                                           str(certs.ca), logs))
        print(f"""
  postern demo is running.

  Open   https://httpbin.localhost:{POSTERN_PORT}/headers   (alice may pass; bob and carol get the 403 page)
         https://staff.localhost:{POSTERN_PORT}/get         (group staff: carol)
         https://domain.localhost:{POSTERN_PORT}/get        (domain example.com: alice, bob; mallory is unverified)
         https://public.localhost:{POSTERN_PORT}/get        (no login)
         https://httpbin.localhost:{POSTERN_PORT}/.pomerium/ (who you are, sign out)

  Log in at the IdP's form with any password as:
         alice@example.com    (groups: admins)
         bob@example.com
         carol@other.example  (groups: staff)
         mallory@example.com  (email not verified)

  TLS:   the certificate is signed by the demo CA {certs.ca}
         trust it in the browser, or start Chromium with --ignore-certificate-errors for a quick look;
         curl --cacert {certs.ca} https://public.localhost:{POSTERN_PORT}/get
  IdP:   http://127.0.0.1:{IDP_PORT}   httpbin: http://127.0.0.1:{HTTPBIN_PORT}
  Logs:  {logs}/ (postern.log, idp.log, httpbin.log)

  Ctrl-C stops all.
""", flush=True)
        while True:
            dead = [p for p in procs if not p.alive()]
            if dead:
                for p in dead:
                    print(f"demo: {p.name} exited ({p.popen.returncode}); log {p.log}:\n{p.log_tail()}",
                          file=sys.stderr)
                return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\ndemo: stopping", flush=True)
        return 0
    except RuntimeError as e:
        print(f"demo: {e}", file=sys.stderr)
        return 1
    finally:
        stop_all()


if __name__ == "__main__":
    sys.exit(main())
