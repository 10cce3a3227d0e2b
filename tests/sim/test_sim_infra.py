"""The Fargate stack (sim/infra/stack.py) as CloudFormation, held with aws_cdk.assertions (never
deployed): one master and N workers of one image, workers finding the master by name, identities
made by the tasks in the account with permissions scoped to the run, results to S3 and the logs."""

from __future__ import annotations

import json

import aws_cdk as cdk
import pytest
from aws_cdk import aws_ecs as ecs
from aws_cdk.assertions import Match, Template

from sim.infra.stack import LOCUST_PORT, NAMESPACE, RunSettings, SimulatorStack


@pytest.fixture(scope="module")
def template():
    app = cdk.App()
    run = RunSettings(devices=5000, workers=3, rate=50, duration_s=600, run_id="t1")
    stack = SimulatorStack(app, "Sim", run=run, image=ecs.ContainerImage.from_registry("motorguard-sim:test"))
    return Template.from_stack(stack)


def _env(template, role):
    for td in template.find_resources("AWS::ECS::TaskDefinition").values():
        (c,) = td["Properties"]["ContainerDefinitions"]
        env = {e["Name"]: e["Value"] for e in c["Environment"]}
        if env["SIM_ROLE"] == role:
            return env, c
    raise AssertionError("no %s task" % role)


def test_one_master_and_n_workers_of_one_image(template):
    template.resource_count_is("AWS::ECS::Service", 2)
    template.resource_count_is("AWS::ECS::TaskDefinition", 2)
    template.has_resource_properties("AWS::ECS::Service", {"DesiredCount": 1, "LaunchType": "FARGATE",
                                                           "ServiceRegistries": Match.any_value()})
    template.has_resource_properties("AWS::ECS::Service", {"DesiredCount": 3, "LaunchType": "FARGATE"})
    master, mc = _env(template, "master")
    worker, wc = _env(template, "worker")
    assert mc["Image"] == wc["Image"] == "motorguard-sim:test"
    assert master["SIM_DEVICES"] == "5000" and master["SIM_WORKERS"] == worker["SIM_WORKERS"] == "3"
    assert master["SIM_RATE"] == "50" and master["SIM_DURATION_S"] == "600"
    assert master["SIM_AWS_RUN_ID"] == worker["SIM_AWS_RUN_ID"] == "t1"
    assert worker["SIM_MASTER_HOST"] == "master." + NAMESPACE
    assert "SIM_RESULTS_BUCKET" not in worker and isinstance(master["SIM_RESULTS_BUCKET"], dict)
    assert {"Name": "nofile", "SoftLimit": 65536, "HardLimit": 65536} in wc["Ulimits"]
    assert wc["LogConfiguration"]["LogDriver"] == "awslogs"
    template.has_resource_properties("AWS::ServiceDiscovery::Service", {"Name": "master"})


def test_only_the_workers_reach_the_master_and_nothing_listens_publicly(template):
    rules = template.find_resources("AWS::EC2::SecurityGroupIngress")
    assert len(rules) == 1
    (rule,) = rules.values()
    p = rule["Properties"]
    assert p["FromPort"] == p["ToPort"] == LOCUST_PORT and "SourceSecurityGroupId" in p
    for sg in template.find_resources("AWS::EC2::SecurityGroup").values():
        assert not sg["Properties"].get("SecurityGroupIngress"), "no ingress from anywhere else"


def _statements(template, role_word):
    out = []
    for pol in template.find_resources("AWS::IAM::Policy").values():
        roles = json.dumps(pol["Properties"]["Roles"])
        if role_word in roles:
            out += pol["Properties"]["PolicyDocument"]["Statement"]
    return out


def _actions(statements):
    acts = set()
    for s in statements:
        acts.update([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    return acts


def test_workers_make_identities_of_their_run_and_the_master_cleans_up(template):
    worker, master = _statements(template, "WorkerTask"), _statements(template, "MasterTask")
    wa, ma = _actions(worker), _actions(master)
    assert {"iot:CreateThing", "iot:CreateKeysAndCertificate", "iot:AttachPolicy", "iot:AttachThingPrincipal"} <= wa
    assert "iot:DeleteThing" not in wa and "s3:PutObject" not in " ".join(wa)
    assert {"iot:ListThings", "iot:DeleteThing", "iot:DeleteCertificate", "iot:DetachThingPrincipal"} <= ma
    assert not any(a in ("*", "iot:*") for a in wa | ma), "no wildcard actions"
    create = [s for s in worker if "iot:CreateThing" in s["Action"]]
    assert "thing/sim-t1-*" in json.dumps(create), "things only of this run"
    assert any("s3:PutObject" in json.dumps(s["Action"]) and "runs/t1/*" in json.dumps(s["Resource"]) for s in master)


def test_no_key_material_or_secret_is_in_the_template(template):
    text = json.dumps(template.to_json())
    assert "PRIVATE KEY" not in text and "BEGIN CERTIFICATE" not in text
    template.resource_count_is("AWS::S3::Bucket", 1)
    template.resource_count_is("AWS::EC2::NatGateway", 0)


@pytest.mark.parametrize("kw, words", [
    (dict(workers=0), "workers"),
    (dict(devices=10000, workers=2), "at least 4 workers"),
    (dict(rate=500), "quota"),
    (dict(run_id="../x"), "run_id"),
])
def test_a_bad_run_is_refused_at_synth(kw, words):
    args = dict(devices=100, workers=1, rate=50, duration_s=60, run_id="ok")
    args.update(kw)
    with pytest.raises(ValueError, match=words):
        RunSettings(**args)


def test_a_raised_connect_quota_allows_a_faster_ramp():
    assert RunSettings(devices=100, workers=1, rate=500, duration_s=60, run_id="ok", rate_quota=500).rate == 500


def test_the_app_builds_its_image_from_our_code_only(tmp_path):
    from sim.infra import app

    a = cdk.App(outdir=str(tmp_path))
    run = RunSettings(devices=10, workers=1, rate=10, duration_s=60, run_id="t2")
    SimulatorStack(a, "Sim", run=run, image=app.image())
    a.synth()
    (manifest,) = tmp_path.glob("*.assets.json")
    (image,) = json.loads(manifest.read_text())["dockerImages"].values()
    assert image["source"]["dockerFile"] == "sim/Dockerfile"
    staged = tmp_path / image["source"]["directory"]
    assert sorted(p.name for p in staged.iterdir()) == sorted(app.CONTEXT_ONLY), "the build context: our code only"
    assert not list(staged.rglob("__pycache__"))
    dockerfile = (staged / "sim" / "Dockerfile").read_text()
    copies = [line.split()[1].rstrip("/") for line in dockerfile.splitlines() if line.startswith("COPY")]
    assert sorted(copies) == sorted(app.CONTEXT_ONLY), "the image copies our own modules only"
    assert "pip install" in dockerfile and dockerfile.startswith("#") and "\nFROM python:" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "sim.task"]' in dockerfile
