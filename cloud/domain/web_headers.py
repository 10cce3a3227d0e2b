"""The dashboard's security headers, defined once: CloudFront sets them in AWS (cloud/infra/stack.py,
a response headers policy) and the local dashboard server sets the same (cloud/local/dashboard.py).

The page loads nothing from elsewhere: its script, style and images are its own files, so the
Content-Security-Policy allows 'self' only, no inline script or style, no eval, no frames, and
connections to its own origin (the API is under /api on the same origin) and to the Cognito
endpoint it signs in with.
"""

from __future__ import annotations

HSTS_SECONDS = 2 * 365 * 86400


def content_security_policy(sign_in_origin: str) -> str:
    """sign_in_origin: where the page's Cognito calls go (https://cognito-idp.<region>.amazonaws.com
    in AWS; the local moto server's URL in make demo)."""
    return "; ".join([
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self' %s" % sign_in_origin,
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "object-src 'none'",
    ])


def cognito_origin(region: str) -> str:
    return "https://cognito-idp.%s.amazonaws.com" % region


# Beside the CSP. HSTS only means something over HTTPS (CloudFront); the local server is plain
# HTTP on 127.0.0.1, where browsers ignore it.
OTHER_HEADERS = {
    "Strict-Transport-Security": "max-age=%d; includeSubDomains" % HSTS_SECONDS,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def headers(sign_in_origin: str) -> dict:
    return dict(OTHER_HEADERS, **{"Content-Security-Policy": content_security_policy(sign_in_origin)})
