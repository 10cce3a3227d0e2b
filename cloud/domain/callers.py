"""Who sent a request to the API, as API Gateway's authorizer established it (or, locally, the local
API in its place: cloud/local/apigw.py): the Cognito user on the dashboard's routes, the SigV4
caller's IAM ARN on the operators' routes.

Apart from the api handler (cloud/lambdas/api.py) because it is a plain reading of the request's
context, which the handler needs twice (to refuse a dashboard request that nobody signed, and to
record who sent a command); pure, so it is tested without a request.
"""

from __future__ import annotations

COGNITO_USER = "cognito:username"  # the claim API Gateway's Cognito authorizer passes on
NO_ONE = "unauthenticated local caller"  # only the local API's unsigned routes get here


def claims_of(request_context: dict) -> dict:
    """The token's claims the Cognito authorizer passed on ({} on a route it does not guard)."""
    return (request_context.get("authorizer") or {}).get("claims") or {}


def signed_in(request_context: dict) -> bool:
    """Whether a Cognito user's token came with the request: the only way in to the dashboard's routes."""
    return bool(claims_of(request_context).get(COGNITO_USER))


def caller_of(request_context: dict) -> tuple[str, str]:
    """(who, how): the Cognito user ("cognito"), the SigV4 caller's IAM ARN ("sigv4"), or no one
    ("none": the local API's unsigned routes)."""
    claims = claims_of(request_context)
    if claims.get(COGNITO_USER):
        return str(claims[COGNITO_USER]), "cognito"
    identity = request_context.get("identity") or {}
    for field in ("userArn", "caller"):
        if identity.get(field):
            return str(identity[field]), "sigv4"
    return NO_ONE, "none"
