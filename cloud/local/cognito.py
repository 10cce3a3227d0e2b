"""Sign-in for the dashboard on one machine: a Cognito user pool in the moto server, and the check
API Gateway's Cognito authorizer makes of a token, done here by the local API (cloud/local/apigw.py).

    pool = LocalUserPool(moto_url).create()
    pool.add_user("operator", "a password")          # make demo prints both
    verifier = pool.verifier()                       # what the local API checks every /api request with
    claims = verifier.claims(id_token)               # raises InvalidToken with the reason

The page signs in exactly as it does in AWS (USER_PASSWORD_AUTH, InitiateAuth), only against the
moto server's endpoint: moto's user pools answer with RS256 JWTs and publish their public key at
<endpoint>/<pool id>/.well-known/jwks.json, as Cognito does at its issuer. The verifier accepts an
ID token only when its signature checks out against that key set, it has not expired, it was issued
by this pool (iss) for this app client (aud) and it is an ID token (token_use): the claims the
Cognito authorizer checks. moto signs every pool's tokens with one key that ships inside moto, so
locally a token proves only that this machine's moto made it; it is a stand-in, not a secret.
A token is never logged, and no reason given for a refusal quotes it.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import urllib.request

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from cloud import resources
from cloud.local.moto_env import REGION

POOL_NAME = resources.DASHBOARD_USER_POOL
CLIENT_NAME = resources.DASHBOARD_WEB_CLIENT
# The page signs in with the user's password over TLS (in AWS) and keeps a refresh token for the session.
AUTH_FLOWS = ["ALLOW_USER_PASSWORD_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"]
ISSUER_TEMPLATE = "https://cognito-idp.%s.amazonaws.com/%s"  # what Cognito (and moto) put in 'iss'


class InvalidToken(Exception):
    """Why a token is refused; never carries the token itself."""


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_part(text: str, what: str) -> dict:
    try:
        value = json.loads(_b64url(text))
    except (ValueError, TypeError):
        raise InvalidToken("the token's %s is not base64url JSON" % what) from None
    if not isinstance(value, dict):
        raise InvalidToken("the token's %s is not a JSON object" % what)
    return value


def _int_of(b64: str) -> int:
    return int.from_bytes(_b64url(b64), "big")


class TokenVerifier:
    """The Cognito authorizer's checks of an ID token: RS256 signature by a key of the pool's JWKS,
    expiry, issuer, audience (the app client) and token_use."""

    def __init__(self, jwks_url: str, issuer: str, client_id: str, clock=time.time):
        self.jwks_url, self.issuer, self.client_id, self.clock = jwks_url, issuer, client_id, clock
        self._keys = {}
        self._lock = threading.Lock()

    def _load_keys(self) -> None:
        with urllib.request.urlopen(self.jwks_url, timeout=5) as r:
            doc = json.loads(r.read())
        keys = {}
        for k in doc.get("keys", []):
            if k.get("kty") == "RSA" and k.get("kid"):
                keys[k["kid"]] = rsa.RSAPublicNumbers(_int_of(k["e"]), _int_of(k["n"])).public_key()
        with self._lock:
            self._keys = keys

    def _key(self, kid):
        if kid not in self._keys:
            self._load_keys()  # a rotated key set: read it again once
        if kid not in self._keys:
            raise InvalidToken("the token was signed with a key the user pool does not publish")
        return self._keys[kid]

    def claims(self, token) -> dict:
        if not isinstance(token, str) or token.count(".") != 2:
            raise InvalidToken("not a JWT (three base64url parts)")
        head_b64, body_b64, sig_b64 = token.split(".")
        header = _json_part(head_b64, "header")
        if header.get("alg") != "RS256":
            raise InvalidToken("the token is not signed with RS256")
        try:
            signature = _b64url(sig_b64)
        except ValueError:
            raise InvalidToken("the token's signature is not base64url") from None
        try:
            self._key(header.get("kid")).verify(signature, ("%s.%s" % (head_b64, body_b64)).encode(),
                                                padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            raise InvalidToken("the token's signature does not match the user pool's key") from None
        claims = _json_part(body_b64, "payload")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or isinstance(exp, bool) or exp <= self.clock():
            raise InvalidToken("the token has expired (or has no expiry)")
        if claims.get("iss") != self.issuer:
            raise InvalidToken("the token was issued by another user pool")
        if claims.get("token_use") != "id":
            raise InvalidToken("not an ID token")
        if claims.get("aud") != self.client_id:
            raise InvalidToken("the token was issued to another app client")
        if not claims.get("cognito:username"):
            raise InvalidToken("the token names no user")
        return claims


class LocalUserPool:
    """The dashboard's user pool and app client in a moto server."""

    def __init__(self, endpoint_url: str, region: str = REGION):
        self.endpoint_url, self.region = endpoint_url.rstrip("/"), region
        self.pool_id = self.client_id = None

    def _client(self):
        import boto3

        return boto3.client("cognito-idp", endpoint_url=self.endpoint_url, region_name=self.region,
                            aws_access_key_id="local", aws_secret_access_key="local")

    def create(self) -> "LocalUserPool":
        c = self._client()
        pool = c.create_user_pool(PoolName=POOL_NAME, AdminCreateUserConfig={"AllowAdminCreateUserOnly": True},
                                  Policies={"PasswordPolicy": {"MinimumLength": 12, "RequireUppercase": True,
                                                               "RequireLowercase": True, "RequireNumbers": True,
                                                               "RequireSymbols": False}})["UserPool"]
        self.pool_id = pool["Id"]
        self.client_id = c.create_user_pool_client(UserPoolId=self.pool_id, ClientName=CLIENT_NAME,
                                                   GenerateSecret=False, ExplicitAuthFlows=AUTH_FLOWS,
                                                   PreventUserExistenceErrors="ENABLED")["UserPoolClient"]["ClientId"]
        return self

    def add_user(self, username: str, password: str) -> None:
        """A user who can sign in at once (as `aws cognito-idp admin-create-user` followed by
        `admin-set-user-password --permanent` in AWS: docs/dashboard.md)."""
        c = self._client()
        c.admin_create_user(UserPoolId=self.pool_id, Username=username, MessageAction="SUPPRESS",
                            TemporaryPassword=password)
        c.admin_set_user_password(UserPoolId=self.pool_id, Username=username, Password=password, Permanent=True)

    def sign_in(self, username: str, password: str) -> dict:
        """The tokens InitiateAuth gives (what the page does; for tests and the benchmark)."""
        r = self._client().initiate_auth(ClientId=self.client_id, AuthFlow="USER_PASSWORD_AUTH",
                                         AuthParameters={"USERNAME": username, "PASSWORD": password})
        return r["AuthenticationResult"]

    @property
    def issuer(self) -> str:
        return ISSUER_TEMPLATE % (self.region, self.pool_id)

    @property
    def jwks_url(self) -> str:
        return "%s/%s/.well-known/jwks.json" % (self.endpoint_url, self.pool_id)

    def verifier(self) -> TokenVerifier:
        return TokenVerifier(self.jwks_url, self.issuer, self.client_id)

    def page_config(self) -> dict:
        """What the page needs to sign in (web/src/config.js reads it from /config.json)."""
        return {"region": self.region, "userPoolId": self.pool_id, "clientId": self.client_id,
                "cognitoEndpoint": self.endpoint_url + "/"}
