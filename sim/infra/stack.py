"""The fleet simulator on ECS Fargate, in the user's account: one Locust master task and N worker
tasks of the same image (sim/Dockerfile, entry point sim/task.py).

- Identities: every device makes its own in the account, in the worker task that simulates it
  (CreateKeysAndCertificate: AWS makes the key and hands it to that task only), so no private key
  passes through a laptop, and a worker's shard is the devices Locust gives it.
- Workers find the master by its Cloud Map name (master.<namespace>), on Locust's port 5557, which
  only the workers' security group may reach.
- Results: the master prints the summary to its log (CloudWatch Logs) and writes it to the results
  bucket, runs/<run id>/summary.json; it deletes the run's things and certificates at the end, also
  after a failed run (python -m sim aws cleanup --run-id ID does the same by hand).
- Tasks sit in public subnets with a public IP: they reach IoT Core and the AWS APIs without a NAT
  gateway (the run's cost is the tasks and the IoT Core connections). Nothing listens publicly.
- Deploying starts the run; both roles stay up, idle, after it (an ECS service would start a task
  that exited again); destroying the stack ends it.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_servicediscovery as sd
from constructs import Construct

from provisioning import policy

LOCUST_PORT = 5557
NAMESPACE = "motorguard-sim.local"
MAX_CONNECTS_PER_S = 100  # sim/aws.py MAX_CONNECTS_PER_S: the ramp is refused above it without --rate-quota
DEVICES_PER_WORKER = 2500  # what one worker task (1 vCPU, 2 GB) is sized for


class RunSettings:
    """What a run is: checked here, so a bad value fails at synth, before anything is deployed."""

    def __init__(self, devices: int, workers: int, rate: float, duration_s: float, run_id: str,
                 rate_quota: float = MAX_CONNECTS_PER_S):
        if not (isinstance(devices, int) and devices >= 1):
            raise ValueError("devices must be a whole number above 0, not %r" % (devices,))
        if not (isinstance(workers, int) and workers >= 1):
            raise ValueError("workers must be a whole number above 0, not %r (the master needs a worker)" % (workers,))
        if workers * DEVICES_PER_WORKER < devices:
            raise ValueError("%d devices need at least %d workers (%d each)" % (
                devices, -(-devices // DEVICES_PER_WORKER), DEVICES_PER_WORKER))
        if not 0 < rate <= rate_quota:
            raise ValueError("rate %g connects/s is outside 0-%g, AWS IoT Core's CONNECT quota for the account "
                             "(give rate_quota if the account's was raised)" % (rate, rate_quota))
        if duration_s <= 0:
            raise ValueError("duration must be above 0 s")
        if not run_id or not run_id.replace("-", "").isalnum() or len(run_id) > 20:
            raise ValueError("run_id is 1-20 letters, digits or dashes, not %r" % run_id)
        self.devices, self.workers, self.rate, self.duration_s, self.run_id = devices, workers, rate, duration_s, run_id


class SimulatorStack(cdk.Stack):
    def __init__(self, scope: Construct, cid: str, run: RunSettings, image: ecs.ContainerImage, **kw):
        super().__init__(scope, cid, **kw)
        vpc = ec2.Vpc(self, "Vpc", max_azs=2, nat_gateways=0,
                      subnet_configuration=[ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC)])
        cluster = ecs.Cluster(self, "Cluster", vpc=vpc, container_insights=False,
                              default_cloud_map_namespace=ecs.CloudMapNamespaceOptions(
                                  name=NAMESPACE, type=sd.NamespaceType.DNS_PRIVATE, vpc=vpc))
        results = s3.Bucket(self, "Results", encryption=s3.BucketEncryption.S3_MANAGED, enforce_ssl=True,
                            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
                            removal_policy=cdk.RemovalPolicy.RETAIN)  # the results outlive the run
        log_group = logs.LogGroup(self, "Logs", retention=logs.RetentionDays.ONE_MONTH,
                                  removal_policy=cdk.RemovalPolicy.DESTROY)

        common = {"SIM_WORKERS": str(run.workers), "SIM_AWS_RUN_ID": run.run_id, "SIM_IDLE_AFTER": "1",
                  "SIM_MASTER_PORT": str(LOCUST_PORT)}
        master_env = dict(common, SIM_ROLE="master", SIM_DEVICES=str(run.devices), SIM_RATE=str(run.rate),
                          SIM_DURATION_S=str(run.duration_s), SIM_RESULTS_BUCKET=results.bucket_name)
        worker_env = dict(common, SIM_ROLE="worker", SIM_MASTER_HOST="master." + NAMESPACE)

        master_sg = ec2.SecurityGroup(self, "MasterSg", vpc=vpc, description="Locust master: workers only")
        worker_sg = ec2.SecurityGroup(self, "WorkerSg", vpc=vpc, description="Locust workers: outbound only")
        master_sg.add_ingress_rule(worker_sg, ec2.Port.tcp(LOCUST_PORT), "Locust workers to their master")

        master_def = self._task(run, "Master", image, master_env, log_group, "master", cpu=512, memory=1024)
        worker_def = self._task(run, "Worker", image, worker_env, log_group, "worker", cpu=1024, memory=2048)
        master_def.default_container.add_port_mappings(ecs.PortMapping(container_port=LOCUST_PORT))
        results.grant_put(master_def.task_role, "runs/%s/*" % run.run_id)

        self._allow_identities(worker_def.task_role, run.run_id)
        self._allow_cleanup(master_def.task_role, run.run_id)
        for role in (master_def.task_role, worker_def.task_role):  # the ATS endpoint of the account
            role.add_to_principal_policy(iam.PolicyStatement(actions=["iot:DescribeEndpoint"], resources=["*"]))

        master = ecs.FargateService(self, "MasterService", cluster=cluster, task_definition=master_def,
                                    desired_count=1, assign_public_ip=True, security_groups=[master_sg],
                                    min_healthy_percent=0, max_healthy_percent=100,
                                    cloud_map_options=ecs.CloudMapOptions(name="master"))
        workers = ecs.FargateService(self, "WorkerService", cluster=cluster, task_definition=worker_def,
                                     desired_count=run.workers, assign_public_ip=True, security_groups=[worker_sg],
                                     min_healthy_percent=0, max_healthy_percent=100)
        workers.node.add_dependency(master)  # the master listens before its workers look for it

        cdk.CfnOutput(self, "ResultsBucket", value=results.bucket_name)
        cdk.CfnOutput(self, "ResultsKey", value="runs/%s/summary.json" % run.run_id)
        cdk.CfnOutput(self, "LogGroup", value=log_group.log_group_name)
        cdk.CfnOutput(self, "RunId", value=run.run_id)

    def _task(self, run, cid, image, env, log_group, prefix, cpu, memory) -> ecs.FargateTaskDefinition:
        task = ecs.FargateTaskDefinition(self, cid + "Task", cpu=cpu, memory_limit_mib=memory)
        task.add_container(cid, image=image, environment=env, essential=True,
                           logging=ecs.LogDrivers.aws_logs(stream_prefix=prefix, log_group=log_group),
                           ulimits=[ecs.Ulimit(name=ecs.UlimitName.NOFILE, soft_limit=65536, hard_limit=65536)])
        return task

    def _thing_arn(self, run_id: str) -> str:
        return "arn:%s:iot:%s:%s:thing/sim-%s-*" % (cdk.Aws.PARTITION, cdk.Aws.REGION, cdk.Aws.ACCOUNT_ID, run_id)

    def _allow_identities(self, role: iam.IRole, run_id: str) -> None:
        """Workers make their devices: things of this run only, the device policy attached, nothing else."""
        iot = "arn:%s:iot:%s:%s:" % (cdk.Aws.PARTITION, cdk.Aws.REGION, cdk.Aws.ACCOUNT_ID)
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["iot:CreateThing", "iot:AttachThingPrincipal"], resources=[self._thing_arn(run_id)]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["iot:AttachPolicy"], resources=[iot + "policy/" + policy.POLICY_NAME, iot + "cert/*"]))
        # CreateKeysAndCertificate has no resource to scope it to; a certificate that fails to attach is
        # deleted by the worker at once (sim/aws.py make_identities), which needs these two on it
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["iot:CreateKeysAndCertificate"], resources=["*"]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["iot:ListAttachedPolicies", "iot:DetachPolicy", "iot:UpdateCertificate",
                     "iot:DeleteCertificate"], resources=[iot + "cert/*", iot + "policy/" + policy.POLICY_NAME]))

    def _allow_cleanup(self, role: iam.IRole, run_id: str) -> None:
        iot = "arn:%s:iot:%s:%s:" % (cdk.Aws.PARTITION, cdk.Aws.REGION, cdk.Aws.ACCOUNT_ID)
        role.add_to_principal_policy(iam.PolicyStatement(actions=["iot:ListThings"], resources=["*"]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["iot:ListThingPrincipals", "iot:DetachThingPrincipal", "iot:DeleteThing"],
            resources=[self._thing_arn(run_id)]))
        role.add_to_principal_policy(iam.PolicyStatement(
            actions=["iot:ListAttachedPolicies", "iot:DetachPolicy", "iot:UpdateCertificate",
                     "iot:DeleteCertificate"], resources=[iot + "cert/*", iot + "policy/" + policy.POLICY_NAME]))
