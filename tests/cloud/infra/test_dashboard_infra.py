"""The dashboard's part of the CDK stack, synthesized: private files behind CloudFront with origin
access control, the security headers CloudFront sets, sign-in through a Cognito user pool, the API's
/api routes behind its authorizer (the others keep SigV4), no route open; and web/publish.py, which
puts the built page into the bucket after a deploy."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from cloud.domain import web_headers

cdk = pytest.importorskip("aws_cdk", reason="aws-cdk-lib is a dev dependency (make setup installs it)")
from aws_cdk.assertions import Template  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    from cloud.infra.stack import MotorGuardStack

    code = tmp_path_factory.mktemp("asset")
    (code / "placeholder.txt").write_text("the dashboard's resources do not read the code")
    stack = MotorGuardStack(cdk.App(), "Dash", code_dir=str(code),
                            env=cdk.Environment(account="123456789012", region="eu-west-1"))
    return Template.from_stack(stack)


def only(template, kind):
    (lid, res), = template.find_resources(kind).items()
    return lid, res["Properties"]


def test_the_files_are_in_a_private_bucket_that_only_the_distribution_reads(template):
    dist_id, dist = only(template, "AWS::CloudFront::Distribution")
    config = dist["DistributionConfig"]
    assert config["DefaultRootObject"] == "index.html"
    s3_origin = [o for o in config["Origins"] if "S3OriginConfig" in o][0]
    assert s3_origin["OriginAccessControlId"], "origin access control, not a public bucket"
    assert s3_origin["S3OriginConfig"].get("OriginAccessIdentity", "") == ""
    bucket_id = s3_origin["DomainName"]["Fn::GetAtt"][0]
    bucket = template.to_json()["Resources"][bucket_id]["Properties"]
    assert bucket["PublicAccessBlockConfiguration"] == {"BlockPublicAcls": True, "BlockPublicPolicy": True,
                                                        "IgnorePublicAcls": True, "RestrictPublicBuckets": True}
    assert "WebsiteConfiguration" not in bucket
    policies = [p["Properties"]["PolicyDocument"]["Statement"] for p in template.find_resources("AWS::S3::BucketPolicy")
                .values() if p["Properties"]["Bucket"] == {"Ref": bucket_id}]
    (statements,) = policies
    reads = [s for s in statements if s["Effect"] == "Allow"]
    assert reads and all(s["Principal"] == {"Service": "cloudfront.amazonaws.com"} for s in reads)
    assert all(dist_id in json.dumps(s["Condition"]) for s in reads), "only this distribution may read"
    assert any(s["Effect"] == "Deny" and "aws:SecureTransport" in json.dumps(s) for s in statements)
    assert config["DefaultCacheBehavior"]["ViewerProtocolPolicy"] == "redirect-to-https"


def test_cloudfront_sets_a_strict_csp_and_the_other_security_headers_on_everything(template):
    policy_id, policy = only(template, "AWS::CloudFront::ResponseHeadersPolicy")
    cfg = policy["ResponseHeadersPolicyConfig"]
    sec = cfg["SecurityHeadersConfig"]
    csp = sec["ContentSecurityPolicy"]["ContentSecurityPolicy"]
    assert csp == web_headers.content_security_policy("https://cognito-idp.eu-west-1.amazonaws.com")
    assert "'unsafe-inline'" not in csp and "'unsafe-eval'" not in csp and "default-src 'none'" in csp
    assert sec["StrictTransportSecurity"]["AccessControlMaxAgeSec"] >= 365 * 86400
    assert sec["ContentTypeOptions"]["Override"] and sec["FrameOptions"]["FrameOption"] == "DENY"
    assert sec["ReferrerPolicy"]["ReferrerPolicy"] == "no-referrer"
    custom = {h["Header"]: h["Value"] for h in cfg["CustomHeadersConfig"]["Items"]}
    assert custom["Permissions-Policy"] == web_headers.OTHER_HEADERS["Permissions-Policy"]
    _, dist = only(template, "AWS::CloudFront::Distribution")
    behaviors = [dist["DistributionConfig"]["DefaultCacheBehavior"]] + dist["DistributionConfig"]["CacheBehaviors"]
    assert all(b["ResponseHeadersPolicyId"] == {"Ref": policy_id} for b in behaviors)


def test_the_api_is_under_api_on_the_same_origin_uncached_with_the_token_forwarded(template):
    _, dist = only(template, "AWS::CloudFront::Distribution")
    (api,) = dist["DistributionConfig"]["CacheBehaviors"]
    assert api["PathPattern"] == "/api/*" and api["ViewerProtocolPolicy"] == "https-only"
    assert set(api["AllowedMethods"]) >= {"GET", "POST"}
    origin = [o for o in dist["DistributionConfig"]["Origins"] if o["Id"] == api["TargetOriginId"]][0]
    # The stage's path, cut from the API's URL (https://<id>.execute-api.<region>.<suffix>/prod/).
    assert origin["OriginPath"]["Fn::Join"][1][0] == "/" and "CustomOriginConfig" in origin
    assert origin["OriginPath"]["Fn::Join"][1][1]["Fn::Select"][0] == 3
    cache = template.to_json()["Resources"][api["CachePolicyId"]["Ref"]]["Properties"]["CachePolicyConfig"]
    assert cache["DefaultTTL"] == 0 and cache["MinTTL"] == 0 and cache["MaxTTL"] <= 1
    headers = cache["ParametersInCacheKeyAndForwardedToOrigin"]["HeadersConfig"]
    assert headers["Headers"] == ["Authorization"]


def test_sign_in_is_a_user_pool_without_self_sign_up_and_a_public_client_for_the_page(template):
    _, pool = only(template, "AWS::Cognito::UserPool")
    assert pool["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    assert pool["Policies"]["PasswordPolicy"]["MinimumLength"] >= 12
    _, client = only(template, "AWS::Cognito::UserPoolClient")
    assert sorted(client["ExplicitAuthFlows"]) == ["ALLOW_REFRESH_TOKEN_AUTH", "ALLOW_USER_PASSWORD_AUTH"]
    assert client.get("GenerateSecret") is False and client["PreventUserExistenceErrors"] == "ENABLED"
    outputs = template.to_json()["Outputs"]
    assert "admin-create-user" in json.dumps(outputs["DashboardCreateUser"])
    for name in ("DashboardUrl", "DashboardBucket", "DashboardDistributionId", "DashboardUserPoolId",
                 "DashboardUserPoolClientId"):
        assert name in outputs


def test_no_route_is_open_the_dashboards_need_a_cognito_token_the_others_sigv4(template):
    auth_id, auth = only(template, "AWS::ApiGateway::Authorizer")
    assert auth["Type"] == "COGNITO_USER_POOLS" and auth["IdentitySource"] == "method.request.header.Authorization"
    pool_id, _ = only(template, "AWS::Cognito::UserPool")
    assert auth["ProviderARNs"] == [{"Fn::GetAtt": [pool_id, "Arn"]}]
    res = template.find_resources("AWS::ApiGateway::Resource")
    api_res = [lid for lid, r in res.items() if r["Properties"]["PathPart"] == "api"]
    (api_lid,) = api_res
    under_api = {lid for lid, r in res.items() if r["Properties"]["ParentId"] == {"Ref": api_lid}}
    methods = template.find_resources("AWS::ApiGateway::Method")
    assert methods, "the API has methods"
    for lid, m in methods.items():
        props = m["Properties"]
        kind = props.get("AuthorizationType", "NONE")
        on = props["ResourceId"].get("Ref")
        if on in under_api:
            assert kind == "COGNITO_USER_POOLS" and props["AuthorizerId"] == {"Ref": auth_id}, lid
        else:
            assert kind == "AWS_IAM", (lid, kind)
    assert any(m["Properties"]["ResourceId"].get("Ref") in under_api for m in methods.values())


def test_the_api_may_read_what_the_dashboard_shows_and_write_only_the_audit_trail(template):
    text = json.dumps(template.find_resources("AWS::IAM::Policy"))
    assert "sqs:ReceiveMessage" in text and "iot:DescribeThing" in text
    assert '"sqs:DeleteMessage"' not in text.split("sqs:ReceiveMessage")[0][-400:]


# ------------------------------------------------------------------ web/publish.py
def load_publish():
    spec = importlib.util.spec_from_file_location("web_publish", ROOT / "web" / "publish.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_publish_uploads_the_page_with_its_config_and_cache_rules(aws, tmp_path):
    import boto3

    publish = load_publish()
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html>")
    (web / "app-0123456789ab.js").write_text("console.log(1)")
    (web / "style-0123456789ab.css").write_text("body{}")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="dash")
    invalidations = []
    cf = type("CloudFront", (), {"create_invalidation": staticmethod(lambda **kw: invalidations.append(kw))})()
    outputs = {"DashboardUserPoolId": "eu-west-1_abc", "DashboardUserPoolClientId": "client1"}
    keys = publish.publish(web, "dash", publish.page_config(outputs, "eu-west-1"), s3, cf, "E123")
    assert keys[-1] == "index.html", "the page goes last"
    head = {k: s3.head_object(Bucket="dash", Key=k) for k in keys}
    assert head["app-0123456789ab.js"]["CacheControl"] == publish.LONG_CACHE
    assert head["app-0123456789ab.js"]["ContentType"].startswith("text/javascript")
    assert head["index.html"]["CacheControl"] == "no-cache" and head["config.json"]["CacheControl"] == "no-cache"
    config = json.loads(s3.get_object(Bucket="dash", Key="config.json")["Body"].read())
    assert config == {"region": "eu-west-1", "userPoolId": "eu-west-1_abc", "clientId": "client1",
                      "cognitoEndpoint": "https://cognito-idp.eu-west-1.amazonaws.com/"}
    assert invalidations and invalidations[0]["DistributionId"] == "E123"
    with pytest.raises(FileNotFoundError, match="make web"):
        publish.publish(tmp_path / "nothing", "dash", config, s3)
