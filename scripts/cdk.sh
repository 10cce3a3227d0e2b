#!/usr/bin/env bash
# synth | deploy | destroy the MotorGuard stack with the AWS CDK CLI from npm.
# Credentials and region come from the usual AWS settings (AWS_PROFILE, AWS_REGION, ~/.aws).
set -euo pipefail
cmd=${1:?usage: scripts/cdk.sh synth|deploy|destroy}
py=${PY:-.venv/bin/python}
cdk=(npx --yes aws-cdk@2)
app="$py -m cloud.infra.app"

if ! command -v npx >/dev/null 2>&1; then
  echo "cdk: npx (Node.js) is needed for the AWS CDK CLI. Install Node.js 18+ (apt-get install -y nodejs npm)." >&2
  exit 2
fi
if [ "$cmd" != synth ]; then
  if ! "$py" -c 'import boto3,sys; sys.exit(0 if boto3.Session().get_credentials() else 1)'; then
    echo "cdk: no AWS credentials. Run 'aws configure' or set AWS_PROFILE, then try again." >&2
    exit 4
  fi
  region=$("$py" -c 'import boto3; print(boto3.Session().region_name or "")')
  if [ -z "$region" ]; then
    echo "cdk: no AWS region. Set AWS_REGION (e.g. us-east-1)." >&2
    exit 4
  fi
  account=$("$py" -c 'import boto3; print(boto3.client("sts").get_caller_identity()["Account"])')
  export CDK_DEFAULT_ACCOUNT=$account CDK_DEFAULT_REGION=$region
fi
case "$cmd" in
  synth)   "${cdk[@]}" synth --app "$app" --output build/cdk.out --quiet && echo "synthesized into build/cdk.out" ;;
  deploy)  "${cdk[@]}" bootstrap "aws://$CDK_DEFAULT_ACCOUNT/$CDK_DEFAULT_REGION" --app "$app" --output build/cdk.out
           "${cdk[@]}" deploy --app "$app" --output build/cdk.out --require-approval never ;;
  destroy) "${cdk[@]}" destroy --app "$app" --output build/cdk.out --force
           echo "tables and the archive bucket are kept (RETAIN): delete them in the console if you mean to." ;;
  *) echo "usage: scripts/cdk.sh synth|deploy|destroy" >&2; exit 2 ;;
esac
