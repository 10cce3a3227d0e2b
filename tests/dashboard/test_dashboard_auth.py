"""Sign-in as the dashboard's API sees it, against the real local stack: the local API plays API
Gateway's Cognito authorizer and takes only ID tokens of its user pool (signature against the
JWKS moto serves, expiry, issuer, audience, token use); everything else on /api is a 401 that
never reaches the handler. A command records its sender, and no token ever reaches a log."""

from __future__ import annotations

import base64
import gzip
import json
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cloud.local.cognito import InvalidToken, TokenVerifier
from dashboard_stack import api_get, as_json

DASHBOARD_ROUTES = ["/devices", "/devices/motor-001", "/devices/motor-001/telemetry", "/devices/motor-001/events",
                    "/devices/motor-001/commands", "/devices/motor-001/aggregates", "/alerts", "/rejects", "/me"]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def sign(claims: dict, key, kid="dummy") -> str:
    head = b64(json.dumps({"alg": "RS256", "kid": kid, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = key.sign(("%s.%s" % (head, body)).encode(), padding.PKCS1v15(), hashes.SHA256())
    return "%s.%s.%s" % (head, body, b64(sig))


def moto_signing_key():
    """The private key moto signs every user pool's tokens with (it ships inside moto)."""
    import moto.cognitoidp as m

    jwk = json.loads(gzip.decompress((Path(m.__file__).parent / "resources" / "jwks-private.json.gz").read_bytes()))

    def num(name):
        return int.from_bytes(base64.urlsafe_b64decode(jwk[name] + "=" * (-len(jwk[name]) % 4)), "big")

    n, e, d = num("n"), num("e"), num("d")
    p, q = rsa.rsa_recover_prime_factors(n, e, d)
    return rsa.RSAPrivateNumbers(p, q, d, rsa.rsa_crt_dmp1(d, p), rsa.rsa_crt_dmq1(d, q), rsa.rsa_crt_iqmp(p, q),
                                 rsa.RSAPublicNumbers(e, n)).private_key()


def claims_of(token: str) -> dict:
    body = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


@pytest.mark.parametrize("route", DASHBOARD_ROUTES)
def test_every_dashboard_route_refuses_a_request_without_a_token(stack, route):
    r = api_get(stack, route, token="")
    assert r.status_code == 401 and r.json() == {"message": "Unauthorized"}


def test_a_valid_id_token_is_served_and_names_its_user(stack):
    me = as_json(api_get(stack, "/me"))
    assert me == {"user": stack.user, "auth": "cognito"}
    assert as_json(api_get(stack, "/devices", token="Bearer " + stack.api_token()))["devices"]


def test_forged_expired_foreign_and_access_tokens_are_refused(stack):
    good = stack.api_token()
    claims = claims_of(good)
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    moto_key = moto_signing_key()
    now = int(time.time())
    bad = {
        "signed by another key": sign(claims, forger),
        "expired": sign(dict(claims, exp=now - 5, iat=now - 3605), moto_key),
        "another app client": sign(dict(claims, aud="someone-elses-client"), moto_key),
        "another user pool": sign(dict(claims, iss=claims["iss"] + "x"), moto_key),
        "an access token": sign(dict(claims, token_use="access"), moto_key),
        "a tampered payload": good.split(".")[0] + "." + b64(json.dumps(dict(claims, **{"cognito:username": "admin"}))
                                                             .encode()) + "." + good.split(".")[2],
        "no signature": good.rsplit(".", 1)[0] + ".",
        "not a JWT": "hello",
    }
    for why, token in bad.items():
        r = api_get(stack, "/devices", token=token)
        assert r.status_code == 401, why
    # The same claims, signed with moto's key and not expired, pass: the refusals above were for
    # what was wrong with each, not for being made here.
    assert api_get(stack, "/devices", token=sign(dict(claims, exp=now + 600), moto_key)).status_code == 200


def test_the_verifier_says_why_and_never_quotes_the_token(stack):
    pool = stack.core.users
    token = stack.api_token()
    later = TokenVerifier(pool.jwks_url, pool.issuer, pool.client_id, clock=lambda: time.time() + 7200)
    with pytest.raises(InvalidToken, match="expired") as e:
        later.claims(token)
    assert token not in str(e.value) and token.split(".")[1] not in str(e.value)
    other = TokenVerifier(pool.jwks_url, pool.issuer, "another-client")
    with pytest.raises(InvalidToken, match="another app client"):
        other.claims(token)


def test_a_command_records_who_sent_it(stack, capfd):
    token = stack.api_token()
    url = stack.dashboard.url.rstrip("/")
    r = requests.post(url + "/api/devices/motor-003/commands", json={"cmd": "set_speed", "speed": 45},
                      headers={"Authorization": token}, timeout=10)
    assert r.status_code == 202 and r.json()["sender"] == stack.user
    # An operator's call on the unsigned local route (SigV4 in AWS, which the local API does not check).
    r2 = requests.post(stack.core.api.url + "/devices/motor-003/commands", json={"cmd": "stop"}, timeout=10)
    assert r2.status_code == 202
    sent = {c["id"]: c for c in as_json(api_get(stack, "/devices/motor-003/commands", token=token))["commands"]}
    assert sent[r.json()["id"]]["sender"] == stack.user and sent[r.json()["id"]]["auth"] == "cognito"
    assert sent[r2.json()["id"]]["auth"] == "none"
    out, err = capfd.readouterr()
    assert token not in out + err and token.split(".")[2] not in out + err


def test_a_command_for_a_device_the_fleet_does_not_know_is_a_404(stack):
    r = requests.post(stack.dashboard.url.rstrip("/") + "/api/devices/motor-999/commands", json={"cmd": "stop"},
                      headers={"Authorization": stack.api_token()}, timeout=10)
    assert r.status_code == 404 and "no device 'motor-999'" in r.json()["message"]


def test_the_page_is_served_with_the_security_headers(stack):
    r = requests.get(stack.dashboard.url, timeout=10)
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert requests.get(stack.dashboard.url + "../etc/passwd", timeout=10).status_code == 404
