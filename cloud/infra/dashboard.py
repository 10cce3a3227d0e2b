"""The web dashboard's part of the CDK stack (docs/dashboard.md): its users in a Cognito user pool,
the API's routes under /api behind the pool's authorizer, and its files in a private bucket that
only CloudFront reads, served with the security headers of cloud/domain/web_headers.py.

Apart from cloud/infra/stack.py because it is a product of its own on top of the cloud: the
devices, rules, functions and alarms do not depend on any of it, and it depends only on the REST
API the stack has made (stack.api) and the function behind it. These are functions that take the
stack, not a construct of their own, so that every resource keeps the logical ID and the place in
the template it had when they were methods of the stack.
"""

from __future__ import annotations

from aws_cdk import (Duration, RemovalPolicy, Stack, aws_apigateway as apigw, aws_cloudfront as cloudfront,
                     aws_cloudfront_origins as origins, aws_cognito as cognito, aws_lambda as lambda_, aws_s3 as s3)

from cloud import resources
from cloud.domain import web_headers

# What the template checks ask of the dashboard's resources that does not apply, resource by resource.
DASHBOARD_CHECKOV_SKIPS = {
    "bucket": [("CKV_AWS_18", "the dashboard's static files, written only by make deploy-cloud; CloudTrail data "
                              "events are the audit, and CloudFront serves them through origin access control")],
    "distribution": [
        ("CKV_AWS_68", "a static page and an API that authenticates every request (Cognito, SigV4) and is "
                       "throttled per stage; a WAF web ACL costs $5 a month plus requests and blocks nothing here"),
        ("CKV_AWS_86", "the API stage keeps an access log of every request with its caller; the static files "
                       "carry no data"),
        ("CKV_AWS_174", "the default *.cloudfront.net certificate: TLS 1.2 minimum needs a custom domain and "
                        "certificate, which an operator adds with their own domain (docs/dashboard.md)"),
        ("CKV_AWS_310", "one origin per path: an S3 bucket and API Gateway, both regional services AWS makes "
                        "highly available; a failover origin group would serve nothing else")],
}
# The Cognito app client's token lifetimes: an ID token (what the API takes) lasts an hour, and the
# page refreshes it for the rest of a working day.
DASHBOARD_ID_TOKEN_HOURS = 1
DASHBOARD_SESSION_HOURS = 12
DASHBOARD_PATH = "/api"  # CloudFront sends /api/* to the API; the API serves the dashboard's routes there


def add_dashboard(stack: Stack, api_function: lambda_.IFunction, keep_data: RemovalPolicy) -> None:
    """The web dashboard: sign-in through a Cognito user pool, the API's routes under /api behind
    the pool's authorizer (the root routes keep SigV4), and the page's files in a private bucket
    that only CloudFront reads (origin access control). CloudFront serves the page and /api on one
    origin, with the security headers of cloud/domain/web_headers.py. No server of our own: the
    files are put in the bucket by make deploy-cloud (web/publish.py) after the stack is up.

    keep_data: the stack's removal policy for data (its KEEP_DATA), which the users and the files
    are. Sets stack.user_pool, stack.web_client, stack.web_bucket and stack.dashboard, which the
    stack's outputs name."""
    stack.user_pool = cognito.UserPool(
        stack, "DashboardUsers", user_pool_name=resources.DASHBOARD_USER_POOL, self_sign_up_enabled=False,
        sign_in_aliases=cognito.SignInAliases(username=True),
        password_policy=cognito.PasswordPolicy(min_length=12, require_lowercase=True, require_uppercase=True,
                                               require_digits=True, require_symbols=False,
                                               temp_password_validity=Duration.days(3)),
        account_recovery=cognito.AccountRecovery.NONE,  # an administrator resets a password (docs/dashboard.md)
        removal_policy=keep_data)
    stack.web_client = stack.user_pool.add_client(
        "DashboardWeb", user_pool_client_name=resources.DASHBOARD_WEB_CLIENT, generate_secret=False,
        auth_flows=cognito.AuthFlow(user_password=True), prevent_user_existence_errors=True,
        id_token_validity=Duration.hours(DASHBOARD_ID_TOKEN_HOURS),
        access_token_validity=Duration.hours(DASHBOARD_ID_TOKEN_HOURS),
        refresh_token_validity=Duration.hours(DASHBOARD_SESSION_HOURS), enable_token_revocation=True)
    authorizer = apigw.CognitoUserPoolsAuthorizer(stack, "DashboardAuthorizer", cognito_user_pools=[stack.user_pool],
                                                  identity_source="method.request.header.Authorization")
    # A child of the proxying API's root made directly (LambdaRestApi refuses add_resource on it).
    routes = apigw.Resource(stack, "DashboardRoutes", parent=stack.api.root, path_part=DASHBOARD_PATH.strip("/"))
    routes.add_proxy(any_method=True, default_integration=apigw.LambdaIntegration(api_function),
                     default_method_options=apigw.MethodOptions(
                         authorization_type=apigw.AuthorizationType.COGNITO, authorizer=authorizer))

    stack.web_bucket = s3.Bucket(
        stack, "DashboardFiles", encryption=s3.BucketEncryption.S3_MANAGED,
        block_public_access=s3.BlockPublicAccess.BLOCK_ALL, enforce_ssl=True, versioned=True,
        object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED, removal_policy=keep_data,
        lifecycle_rules=[s3.LifecycleRule(id="old-versions", noncurrent_version_expiration=Duration.days(30))])
    sign_in = web_headers.cognito_origin(stack.region)
    other = web_headers.OTHER_HEADERS
    headers = cloudfront.ResponseHeadersPolicy(
        stack, "DashboardHeaders", comment="MotorGuard dashboard: CSP and the other security headers",
        security_headers_behavior=cloudfront.ResponseSecurityHeadersBehavior(
            content_security_policy=cloudfront.ResponseHeadersContentSecurityPolicy(
                content_security_policy=web_headers.content_security_policy(sign_in), override=True),
            strict_transport_security=cloudfront.ResponseHeadersStrictTransportSecurity(
                access_control_max_age=Duration.seconds(web_headers.HSTS_SECONDS), include_subdomains=True,
                override=True),
            content_type_options=cloudfront.ResponseHeadersContentTypeOptions(override=True),
            frame_options=cloudfront.ResponseHeadersFrameOptions(
                frame_option=cloudfront.HeadersFrameOption.DENY, override=True),
            referrer_policy=cloudfront.ResponseHeadersReferrerPolicy(
                referrer_policy=cloudfront.HeadersReferrerPolicy.NO_REFERRER, override=True)),
        custom_headers_behavior=cloudfront.ResponseCustomHeadersBehavior(custom_headers=[
            cloudfront.ResponseCustomHeader(header=name, value=other[name], override=True)
            for name in ("Permissions-Policy", "Cross-Origin-Opener-Policy")]))
    # The API through CloudFront: nothing cached (the API says no-store, and the TTLs are 0), the
    # caller's token forwarded (CloudFront forwards Authorization only as part of the cache key).
    api_cache = cloudfront.CachePolicy(
        stack, "DashboardApiNoCache", comment="MotorGuard API: forward the token, keep nothing",
        default_ttl=Duration.seconds(0), min_ttl=Duration.seconds(0), max_ttl=Duration.seconds(1),
        header_behavior=cloudfront.CacheHeaderBehavior.allow_list("Authorization"),
        query_string_behavior=cloudfront.CacheQueryStringBehavior.all(),
        cookie_behavior=cloudfront.CacheCookieBehavior.none())
    stack.dashboard = cloudfront.Distribution(
        stack, "Dashboard", comment="MotorGuard dashboard", default_root_object="index.html",
        price_class=cloudfront.PriceClass.PRICE_CLASS_100, http_version=cloudfront.HttpVersion.HTTP2_AND_3,
        default_behavior=cloudfront.BehaviorOptions(
            origin=origins.S3BucketOrigin.with_origin_access_control(stack.web_bucket),
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
            cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED, response_headers_policy=headers),
        additional_behaviors={DASHBOARD_PATH + "/*": cloudfront.BehaviorOptions(
            origin=origins.RestApiOrigin(stack.api),
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.HTTPS_ONLY,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL, cache_policy=api_cache,
            origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
            response_headers_policy=headers)})


def skip_dashboard_findings(stack: Stack) -> None:
    """Puts DASHBOARD_CHECKOV_SKIPS into the Metadata of the dashboard's bucket and distribution.
    Called after the stack's own suppressions (stack.py _suppress_findings): those give every S3
    bucket the stack's bucket skips, and the dashboard's bucket is to have these instead."""
    for construct, key in ((stack.web_bucket, "bucket"), (stack.dashboard, "distribution")):
        construct.node.default_child.add_metadata("checkov", {"skip": [
            {"id": i, "comment": why} for i, why in DASHBOARD_CHECKOV_SKIPS[key]]})
