#!/usr/bin/env bash
# synth | deploy | destroy the MotorGuard stack with the AWS CDK CLI from npm.
# Credentials and region come from the usual AWS settings (AWS_PROFILE, AWS_REGION, ~/.aws).
# Arguments after the command go to cdk synth, e.g. context: scripts/cdk.sh deploy -c reserved_concurrency=off
# deploy synthesizes once, checks that assembly against the account (python -m cloud.infra.preflight:
# Lambda concurrency, table names) and deploys that same assembly; a failed check deploys nothing.
set -euo pipefail
cmd=${1:?usage: scripts/cdk.sh synth|deploy|destroy [cdk synth options, e.g. -c reserved_concurrency=off]}
shift
py=${PY:-.venv/bin/python}
cdk=(npx --yes aws-cdk@2)
app="$py -m cloud.infra.app"
out=build/cdk.out

if ! command -v npx >/dev/null 2>&1; then
  echo "cdk: npx (Node.js) is needed for the AWS CDK CLI. Install Node.js 18+ (apt-get install -y nodejs npm)." >&2
  exit 2
fi
if [ "$cmd" != synth ]; then
  if ! "$py" -c 'import boto3,sys; sys.exit(0 if boto3.Session().get_credentials() else 1)'; then
    echo "cdk: no AWS credentials. Run 'aws configure' or set AWS_PROFILE, then try again." >&2
    exit 4
  fi
  # boto3 reads AWS_DEFAULT_REGION and the profile, not AWS_REGION (which the CDK CLI reads): take either.
  region=$("$py" -c 'import boto3, os; print(boto3.Session().region_name or os.environ.get("AWS_REGION", ""))')
  if [ -z "$region" ]; then
    echo "cdk: no AWS region. Set AWS_REGION or AWS_DEFAULT_REGION (e.g. us-east-1), or a region in your profile." >&2
    exit 4
  fi
  export AWS_DEFAULT_REGION=$region
  account=$("$py" -c 'import boto3; print(boto3.client("sts").get_caller_identity()["Account"])')
  export CDK_DEFAULT_ACCOUNT=$account CDK_DEFAULT_REGION=$region
fi
case "$cmd" in
  synth)   "${cdk[@]}" synth --app "$app" --output "$out" --quiet "$@" && echo "synthesized into $out" ;;
  deploy)  "${cdk[@]}" synth --app "$app" --output "$out" --quiet "$@"
           "$py" -m cloud.infra.preflight "$out"
           "${cdk[@]}" bootstrap "aws://$CDK_DEFAULT_ACCOUNT/$CDK_DEFAULT_REGION" --app "$out"
           "${cdk[@]}" deploy --app "$out" --require-approval never ;;
  destroy) "${cdk[@]}" destroy --app "$app" --output "$out" --force "$@"
           echo "kept: the tables, the archive bucket and the API access log. The tables' names are fixed: delete" \
                "them (or cdk import them) before deploying here again; preflight stops a deploy that would collide." ;;
  *) echo "usage: scripts/cdk.sh synth|deploy|destroy [cdk synth options]" >&2; exit 2 ;;
esac
