"""The test IdP itself, driven as a relying party would (no postern): proves the real parts work.

If these fail, the end-to-end failures are about the IdP set-up, not postern.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import pytest
import requests

import harness
from conftest import ALICE, CAROL, MALLORY


def b64url_json(part: str) -> dict:
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def code_flow(idp: str, client_id: str, redirect_uri: str, email: str) -> dict:
    """Authorization code + PKCE S256 through the real login form; returns the token response."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
              "scope": "openid email profile", "state": "s-123", "nonce": "n-456",
              "code_challenge": challenge, "code_challenge_method": "S256"}
    with requests.Session() as s:
        s.trust_env = False
        target = urlsplit(redirect_uri).hostname
        walk = harness.follow(s, "GET", f"{idp}/auth?{urlencode(params)}")
        for _ in range(3):
            if walk.hops[-1].location and urlsplit(walk.hops[-1].location).hostname == target:
                break
            form = next(f for f in harness.parse_forms(walk.response.text) if "prompt" in f["fields"])
            data = {k: v for k, v in form["fields"].items() if form["types"].get(k) != "submit"}
            if data["prompt"] == "login":
                data.update(login=email, password="anything")
            walk = harness.follow(s, "POST", urljoin(walk.hops[-1].url, form["action"]), data=data, walk=walk,
                                  stop=lambda u: urlsplit(u).hostname == target)
        back = parse_qs(urlsplit(walk.hops[-1].location).query)
        assert back["state"] == ["s-123"], walk.trace()
        tok = s.post(f"{idp}/token", timeout=10, auth=(client_id, harness.CLIENT_SECRET),
                     data={"grant_type": "authorization_code", "code": back["code"][0],
                           "redirect_uri": redirect_uri, "code_verifier": verifier})
        assert tok.status_code == 200, tok.text
        return tok.json()


def test_discovery(idp: str):
    doc = requests.get(f"{idp}/.well-known/openid-configuration", timeout=10).json()
    assert doc["issuer"] == idp
    assert "S256" in doc["code_challenge_methods_supported"]
    assert {"RS256", "ES256"} <= set(doc["id_token_signing_alg_values_supported"])
    keys = requests.get(doc["jwks_uri"], timeout=10).json()["keys"]
    assert {k["kty"] for k in keys} == {"RSA", "EC"}
    assert all("d" not in k for k in keys), "private key material in the JWKS"


@pytest.mark.parametrize("client_id,alg,email,verified,groups", [
    ("postern", "RS256", ALICE, True, ["admins"]),
    ("postern", "RS256", MALLORY, False, []),
    ("postern-es256", "ES256", CAROL, True, ["staff"]),
])
def test_code_flow_claims_in_id_token(idp, ports, client_id, alg, email, verified, groups):
    redirect_uri = f"https://auth.{harness.TEST_DOMAIN}:{ports.postern}/oauth2/callback"
    tokens = code_flow(idp, client_id, redirect_uri, email)
    header, payload, _sig = tokens["id_token"].split(".")
    assert b64url_json(header)["alg"] == alg
    claims = b64url_json(payload)
    assert claims["iss"] == idp and claims["aud"] == client_id and claims["nonce"] == "n-456"
    assert claims["email"] == email and claims["email_verified"] is verified
    assert claims["groups"] == groups and claims["name"]


def test_pkce_is_required(idp, ports):
    params = {"response_type": "code", "client_id": "postern", "scope": "openid email",
              "redirect_uri": f"https://auth.{harness.TEST_DOMAIN}:{ports.postern}/oauth2/callback",
              "state": "x", "nonce": "y"}
    r = requests.get(f"{idp}/auth?{urlencode(params)}", allow_redirects=False, timeout=10)
    assert r.status_code in (302, 303) and "error=invalid_request" in r.headers["Location"]
