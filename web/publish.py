"""Puts the built dashboard (build/web) and its config.json into the stack's dashboard bucket, and
has CloudFront drop the page it cached. make deploy-cloud runs it right after the CDK deploy:

    python web/publish.py [--stack MotorGuard] [--web-dir build/web]

The names come from the stack's outputs (DashboardBucket, DashboardDistributionId,
DashboardUserPoolId, DashboardUserPoolClientId). The bundle's files carry a hash of their content
in their names, so they are cached for a year; index.html and config.json are always revalidated.
Files of earlier deploys stay (a page open in a browser still loads its script); the bucket's
lifecycle removes old versions only.

Why not a BucketDeployment in the stack: that is a Lambda function of CDK's own in the account,
run at each deploy, for what this script does with the deployer's own credentials.
"""

from __future__ import annotations

import argparse
import json
import mimetypes
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LONG_CACHE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
ALWAYS_FRESH = ("index.html", "config.json", "favicon.svg")


def stack_outputs(cloudformation, stack: str) -> dict:
    stacks = cloudformation.describe_stacks(StackName=stack)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}


def page_config(outputs: dict, region: str) -> dict:
    """What the page signs in with: the same keys the local dashboard serves (cloud/local/cognito.py)."""
    return {"region": region, "userPoolId": outputs["DashboardUserPoolId"],
            "clientId": outputs["DashboardUserPoolClientId"],
            "cognitoEndpoint": "https://cognito-idp.%s.amazonaws.com/" % region}


def content_type(name: str) -> str:
    kind = mimetypes.guess_type(name)[0] or "application/octet-stream"
    if name.endswith(".js"):
        kind = "text/javascript"
    return kind + ("; charset=utf-8" if kind.startswith("text/") or kind in ("application/json", "image/svg+xml")
                   else "")


def publish(web_dir: Path, bucket: str, config: dict, s3, cloudfront=None, distribution_id=None) -> list:
    """Uploads every file of web_dir and config.json; returns the keys written."""
    if not (web_dir / "index.html").is_file():
        raise FileNotFoundError("no dashboard in %s: build it first (make web)" % web_dir)
    files = {p.relative_to(web_dir).as_posix(): p.read_bytes() for p in sorted(web_dir.rglob("*")) if p.is_file()}
    files["config.json"] = json.dumps(config).encode()
    # The page last: a browser that gets the new index.html finds the files it names already there.
    order = sorted(files, key=lambda k: k == "index.html")
    for key in order:
        s3.put_object(Bucket=bucket, Key=key, Body=files[key], ContentType=content_type(key),
                      CacheControl=REVALIDATE if key in ALWAYS_FRESH else LONG_CACHE)
    if cloudfront is not None and distribution_id:
        cloudfront.create_invalidation(DistributionId=distribution_id, InvalidationBatch={
            "Paths": {"Quantity": 3, "Items": ["/", "/index.html", "/config.json"]},
            "CallerReference": "motorguard-%d" % time.time_ns()})
    return order


def main(argv=None) -> int:
    import boto3

    ap = argparse.ArgumentParser(prog="python web/publish.py", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stack", default="MotorGuard")
    ap.add_argument("--web-dir", default=str(ROOT / "build" / "web"))
    a = ap.parse_args(argv)
    session = boto3.session.Session()
    try:
        outputs = stack_outputs(session.client("cloudformation"), a.stack)
        keys = publish(Path(a.web_dir), outputs["DashboardBucket"], page_config(outputs, session.region_name),
                       session.client("s3"), session.client("cloudfront"), outputs["DashboardDistributionId"])
    except KeyError as e:
        print("publish: the stack %s has no output %s: deploy the stack first (make deploy-cloud)" % (a.stack, e),
              file=sys.stderr)
        return 2
    except FileNotFoundError as e:
        print("publish: %s" % e, file=sys.stderr)
        return 2
    print("dashboard: %d files in s3://%s; open %s" % (len(keys), outputs["DashboardBucket"], outputs["DashboardUrl"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
