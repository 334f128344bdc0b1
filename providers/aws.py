"""Amazon EC2 as a place a host can live (``type: aws``).

A host is one EC2 instance booted from ``image`` with the service's cloud-init document
as user-data. Instances carry the tags ``failover:service``, ``failover:generation``,
``failover:purpose`` and ``Name`` so that :meth:`AwsProvider.list_hosts` can rebuild the
picture from EC2 itself when local state is lost.

Creating is idempotent on the host name twice over: a running or stopped instance
already tagged with the name is returned instead of a new one, and ``RunInstances`` gets a
``ClientToken`` derived from the name, so a call retried after a lost answer never
launches a second instance (AWS returns the first one).

Zones in ``zones`` are tried in order; ``InsufficientInstanceCapacity``/``Unsupported``
(capacity) and ``InstanceLimitExceeded``/``VcpuLimitExceeded`` (quota) move on to the
next zone. With a ``subnet`` the instance is launched into that subnet for the subnet's
own zone, and into a subnet of the same VPC for the other zones.

boto3 is imported only when the provider is used (see :mod:`providers._aws`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
import time
from collections.abc import Callable
from typing import Any
from typing import Literal
from typing import TypeVar

from pydantic import Field

from providers import _aws
from providers.aws_doctor import AwsDoctor
from providers.base import AccountBlocked
from providers.base import CapacityError
from providers.base import CloudSettings
from providers.base import ComputeProvider
from providers.base import Duration
from providers.base import Host
from providers.base import HostSpec
from providers.base import HostState
from providers.base import NotFound
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import ProviderSettings
from providers.base import QuotaError
from providers.base import as_settings
from providers.base import try_zones

T = TypeVar("T")

TAG_SERVICE = "failover:service"
TAG_GENERATION = "failover:generation"
TAG_PURPOSE = "failover:purpose"

_STATES = {
    "pending": HostState.PENDING,
    "running": HostState.RUNNING,
    "stopping": HostState.STOPPED,
    "stopped": HostState.STOPPED,
    "shutting-down": HostState.TERMINATED,
    "terminated": HostState.TERMINATED,
}
_ALIVE = ["pending", "running", "stopping", "stopped"]
# How long DescribeInstances may not yet know an instance RunInstances just made.
_FRESH = 120.0


class AwsSettings(CloudSettings):
    """``providers: [{type: aws, ...}]``. Credentials come from boto3's own chain
    (``profile``, ``AWS_*`` variables, an instance role), never from this file."""

    type: Literal["aws"]
    region: str = Field(description="AWS region, e.g. us-east-1")
    zones: list[str] = Field(
        default_factory=list,
        description="availability zones tried in order on capacity/quota errors "
        "(default: whatever AWS picks, or the subnet's zone)",
    )
    instance_type: str = Field(default="t3.small", description="EC2 instance type")
    image: str = Field(description="AMI id the hosts boot from (must run cloud-init)")
    subnet: str | None = Field(
        default=None,
        description="subnet id for the instances; other zones use a subnet of the same VPC",
    )
    security_groups: list[str] = Field(
        default_factory=list,
        description="security group ids (sg-...) or names; they must admit the service port",
    )
    key_name: str | None = Field(default=None, description="EC2 key pair name for SSH access")
    profile: str | None = Field(
        default=None, description="named profile of ~/.aws/config (default: the SDK's chain)"
    )
    request_timeout: Duration = Field(
        default=30.0, description="connect/read timeout of one API request"
    )


class AwsProvider(AwsDoctor, ComputeProvider, kind="aws", settings=AwsSettings, vendor="aws"):
    """EC2 instances through boto3.

    One instance serves the parallel moves of a round: its session and clients are made
    once, under ``_lock`` (boto3 clients are thread-safe, sessions are not), and the
    caches below only ever gain entries that any thread would compute alike (one dict
    operation each, atomic under the GIL), so a lost race costs one extra API call.
    """

    shared_across_threads = True

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.cfg = as_settings(AwsSettings, settings)
        self._lock = threading.Lock()
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self._subnets: dict[str, dict[str, Any]] = {}
        self._image: dict[str, Any] | None = None
        self._launched: dict[str, tuple[float, Host]] = {}

    # ------------------------------------------------------------------ plumbing

    def _client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(service)
            if client is None:
                client = _aws.once(lambda: self._new_client(service), self.name)
                self._clients[service] = client
            return client

    def _new_client(self, service: str) -> Any:
        """Called with ``_lock`` held: the one session, and a client of it."""
        if self._session is None:
            self._session = _aws.make_session(self.cfg.profile, self.cfg.region)
        return _aws.make_client(
            self._session,
            service,
            region=self.cfg.region,
            endpoint=self.cfg.endpoint,
            timeout=self.cfg.request_timeout,
        )

    @property
    def _ec2(self) -> Any:
        return self._client("ec2")

    def _call(self, fn: Callable[[], T], scope: str | None = None) -> T:
        """One API call: errors mapped, transient ones retried within the configured bounds."""
        return _aws.call(
            fn,
            provider=self.name,
            attempts=self.cfg.retry_attempts,
            max_time=self.cfg.retry_max_time,
            scope=scope,
        )

    def _once(self, fn: Callable[[], T], scope: str | None = None) -> T:
        return _aws.once(fn, self.name, scope)

    def _log(self, message: str) -> None:
        self.context.log(f"{self.name}: {message}")

    # ------------------------------------------------------------------ hosts

    def _host(self, inst: dict[str, Any]) -> Host:
        tags = {t.get("Key", ""): t.get("Value", "") for t in inst.get("Tags") or []}
        raw = str((inst.get("State") or {}).get("Name", ""))
        try:
            generation = int(tags.get(TAG_GENERATION, "0"))
        except ValueError:
            generation = 0
        public = inst.get("PublicIpAddress") or None
        private = inst.get("PrivateIpAddress") or None
        reason = (inst.get("StateReason") or {}).get("Message") or inst.get("StateTransitionReason")
        launched = inst.get("LaunchTime")
        return Host(
            id=str(inst["InstanceId"]),
            provider=self.name,
            name=tags.get("Name", str(inst["InstanceId"])),
            service=tags.get(TAG_SERVICE, ""),
            generation=generation,
            state=_STATES.get(raw, HostState.UNKNOWN),
            raw_state=raw,
            reason=str(reason) if reason else None,
            # Public address when the instance has one, else the private one.
            address=public or private,
            private_address=private,
            zone=(inst.get("Placement") or {}).get("AvailabilityZone"),
            created_at=launched.isoformat() if launched is not None else None,
            purpose=tags.get(TAG_PURPOSE, "serve"),
            extra={
                "instance_type": inst.get("InstanceType"),
                "image": inst.get("ImageId"),
                "subnet": inst.get("SubnetId"),
                "region": self.cfg.region,
            },
        )

    def _describe(self, filters: list[dict[str, Any]], once: bool = False) -> list[dict[str, Any]]:
        def run() -> list[dict[str, Any]]:
            found: list[dict[str, Any]] = []
            for page in self._ec2.get_paginator("describe_instances").paginate(Filters=filters):
                for reservation in page.get("Reservations", []):
                    found.extend(reservation.get("Instances", []))
            return found

        return self._once(run) if once else self._call(run)

    def _named(self, name: str, once: bool = False) -> list[dict[str, Any]]:
        """Every instance (any state) tagged ``Name=name`` by this toolkit."""
        return self._describe(
            [{"Name": "tag:Name", "Values": [name]}, {"Name": "tag-key", "Values": [TAG_SERVICE]}],
            once=once,
        )

    def _recent(self, host_id: str) -> Host | None:
        """The host as launched, if this provider launched it less than _FRESH ago."""
        entry = self._launched.get(host_id)
        if entry is not None and time.monotonic() - entry[0] < _FRESH:
            return entry[1]
        return None

    def get_host(self, host_id: str) -> Host | None:
        try:
            resp = self._call(lambda: self._ec2.describe_instances(InstanceIds=[host_id]))
        except NotFound:
            recent = self._recent(host_id)
            if recent is None:
                return None
            # EC2 is eventually consistent: a just-launched instance may not be visible yet.
            return dataclasses.replace(recent, state=HostState.PENDING, raw_state="pending")
        for reservation in resp.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                return self._host(inst)
        return None

    batches_lookups = True

    def get_hosts(self, host_ids: list[str]) -> dict[str, Host | None]:
        """One DescribeInstances per 200 ids, by filter: unlike ``InstanceIds``, a filter
        does not fail the whole call for one id EC2 no longer (or not yet) knows; those
        few are asked one by one, as :meth:`get_host` handles both cases."""
        found: dict[str, Host] = {}
        for start in range(0, len(host_ids), 200):
            chunk = host_ids[start : start + 200]
            for inst in self._describe([{"Name": "instance-id", "Values": chunk}]):
                found[inst["InstanceId"]] = self._host(inst)
        return {h: found[h] if h in found else self.get_host(h) for h in host_ids}

    def list_hosts(self, service: str) -> list[Host]:
        """Instances tagged for ``service`` that are not terminated (or terminating)."""
        instances = self._describe(
            [
                {"Name": f"tag:{TAG_SERVICE}", "Values": [service]},
                {"Name": "instance-state-name", "Values": _ALIVE},
            ]
        )
        return sorted((self._host(i) for i in instances), key=lambda h: (h.created_at or "", h.id))

    def stop_host(self, host_id: str) -> None:
        try:
            self._call(lambda: self._ec2.stop_instances(InstanceIds=[host_id]))
        except ProviderError as exc:
            if exc.code == "IncorrectInstanceState":
                host = self.get_host(host_id)
                if host is not None and host.state.gone:
                    return  # already stopped, stopping or terminated
            raise

    def destroy_host(self, host_id: str) -> None:
        """Terminate the instance; its EBS volumes go with it (DeleteOnTermination is forced
        on at launch and again here for volumes attached since). A missing host is fine."""
        recent = self._recent(host_id) is not None
        try:
            resp = self._call(lambda: self._ec2.describe_instances(InstanceIds=[host_id]))
        except NotFound:
            if not recent:
                return
            resp = {}  # launched moments ago and not visible yet: terminate it anyway
        instances = [i for r in resp.get("Reservations", []) for i in r.get("Instances", [])]
        if not instances and not recent:
            return
        inst = instances[0] if instances else {}
        if (inst.get("State") or {}).get("Name") == "terminated":
            return
        keep = [
            m["DeviceName"]
            for m in inst.get("BlockDeviceMappings") or []
            if m.get("Ebs") and not m["Ebs"].get("DeleteOnTermination", True)
        ]
        if keep:
            try:
                self._call(
                    lambda: self._ec2.modify_instance_attribute(
                        InstanceId=host_id,
                        BlockDeviceMappings=[
                            {"DeviceName": d, "Ebs": {"DeleteOnTermination": True}} for d in keep
                        ],
                    )
                )
            except NotFound:
                return
        deadline = time.monotonic() + (min(self.cfg.operation_timeout, _FRESH) if recent else 0)
        delay = 0.25
        while True:
            try:
                self._call(lambda: self._ec2.terminate_instances(InstanceIds=[host_id]))
                break
            except NotFound as exc:
                left = deadline - time.monotonic()
                if left <= 0:
                    if not recent:
                        return
                    raise ProviderError(
                        f"{host_id} was launched moments ago but EC2 does not find it to "
                        f"terminate it; it may be left running in {self.cfg.region}",
                        provider=self.name,
                        code=exc.code,
                        hint="check with `aws ec2 describe-instances` and terminate it",
                    ) from None
                time.sleep(min(delay, left))
                delay = min(delay * 2, 5.0)
        self._launched.pop(host_id, None)
        self._log(f"terminated {host_id} in {self.cfg.region}")

    # ------------------------------------------------------------------ create

    def create_host(self, spec: HostSpec) -> Host:
        subnets: dict[str | None, str | None] = {}

        def no_subnet(zone: str | None) -> str | None:
            try:
                subnets[zone] = self._subnet_for(zone)
            except _NoSubnet as exc:
                return str(exc)
            return None

        def attempt(zone: str | None) -> Host:
            where = zone or self.cfg.region
            try:
                launch = functools.partial(self._launch, spec, zone, subnets[zone])
                return self._call(launch, scope=where)
            except ProviderError as exc:
                if isinstance(exc, CapacityError | QuotaError):
                    code = exc.code or exc.kind
                    self._log(f"{code} in {where}; cleaning up, trying the next zone")
                self._cleanup(spec, exc)
                raise

        return try_zones(
            list(self.cfg.zones) or [None],
            attempt,
            provider=self.name,
            what=f"{spec.name} ({self.cfg.instance_type})",
            where=lambda zone: zone or self.cfg.region,
            scope=self.cfg.region,
            skip=no_subnet,
            log=self.context.log,
        )

    def _launch(self, spec: HostSpec, zone: str | None, subnet: str | None) -> Host:
        """One attempt (retried as a whole): find the host by name, or launch it."""
        named = self._named(spec.name, once=True)
        alive = [i for i in named if (i.get("State") or {}).get("Name") in _ALIVE]
        if alive:
            inst = sorted(alive, key=lambda i: str(i.get("LaunchTime", "")))[0]
            if (inst.get("State") or {}).get("Name") == "stopped":
                self._once(lambda: self._ec2.start_instances(InstanceIds=[inst["InstanceId"]]))
                self._log(f"started the existing stopped instance {inst['InstanceId']}")
            return self._host(inst)
        # A new token once an instance of this name was terminated: AWS would otherwise
        # answer the token with the dead instance.
        gone = len(named)
        token_src = f"{spec.name}|{self.cfg.region}|{zone or ''}|{gone}"
        token = "fo-" + hashlib.sha256(token_src.encode()).hexdigest()[:40]
        tags = [
            {"Key": TAG_SERVICE, "Value": spec.service},
            {"Key": TAG_GENERATION, "Value": str(spec.generation)},
            {"Key": TAG_PURPOSE, "Value": spec.purpose},
            {"Key": "Name", "Value": spec.name},
        ]
        params: dict[str, Any] = {
            "ImageId": self.cfg.image,
            "InstanceType": self.cfg.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": token,
            "UserData": spec.user_data,
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
            "InstanceInitiatedShutdownBehavior": "terminate",
        }
        mappings = self._delete_on_termination()
        if mappings:
            params["BlockDeviceMappings"] = mappings
        if zone and not subnet:
            params["Placement"] = {"AvailabilityZone": zone}
        if subnet:
            params["SubnetId"] = subnet
        groups = self._security_group_ids(subnet)
        if groups:
            params["SecurityGroupIds"] = groups
        if self.cfg.key_name:
            params["KeyName"] = self.cfg.key_name
        resp = self._once(lambda: self._ec2.run_instances(**params), scope=zone)
        inst = resp["Instances"][0]
        host = self._host(inst)
        if host.state is HostState.TERMINATED:
            raise ProviderError(
                f"RunInstances answered with the terminated instance {host.id} for {spec.name}",
                provider=self.name,
                code="IdempotentInstanceTerminated",
                hint="retry the operation; a fresh client token is used next time",
            )
        self._launched[host.id] = (time.monotonic(), host)
        self._log(f"launched {host.id} ({spec.name}) in {host.zone or zone or self.cfg.region}")
        return host

    def _delete_on_termination(self) -> list[dict[str, Any]]:
        """Block device overrides so every EBS volume of the image dies with the instance."""
        image = self._image
        if image is None:
            resp = self._once(lambda: self._ec2.describe_images(ImageIds=[self.cfg.image]))
            images = resp.get("Images") or []
            if not images:
                raise ProviderError(
                    f"image {self.cfg.image} not found in {self.cfg.region}",
                    provider=self.name,
                    code="InvalidAMIID.NotFound",
                    hint="check `image` (AMI ids are per region)",
                )
            image = self._image = images[0]
        mappings = []
        for m in image.get("BlockDeviceMappings") or []:
            if not (m.get("Ebs") and m.get("DeviceName")):
                continue
            ebs: dict[str, Any] = {"DeleteOnTermination": True}
            if m["Ebs"].get("SnapshotId"):
                # The image's own snapshot (some APIs insist on a snapshot or a size).
                ebs["SnapshotId"] = m["Ebs"]["SnapshotId"]
            mappings.append({"DeviceName": m["DeviceName"], "Ebs": ebs})
        return mappings

    def _subnet_info(self, subnet_id: str) -> dict[str, Any]:
        info = self._subnets.get(subnet_id)
        if info is None:
            resp = self._call(lambda: self._ec2.describe_subnets(SubnetIds=[subnet_id]))
            subnets = resp.get("Subnets") or []
            if not subnets:
                raise ProviderError(
                    f"subnet {subnet_id} not found", provider=self.name, hint="check `subnet`"
                )
            info = self._subnets[subnet_id] = subnets[0]
        return info

    def _subnet_for(self, zone: str | None) -> str | None:
        if not self.cfg.subnet:
            return None
        base = self._subnet_info(self.cfg.subnet)
        if zone is None or base.get("AvailabilityZone") == zone:
            return self.cfg.subnet
        resp = self._call(
            lambda: self._ec2.describe_subnets(
                Filters=[
                    {"Name": "vpc-id", "Values": [base["VpcId"]]},
                    {"Name": "availability-zone", "Values": [zone]},
                ]
            )
        )
        candidates = sorted(
            (s for s in resp.get("Subnets") or [] if s.get("State", "available") == "available"),
            key=lambda s: str(s["SubnetId"]),
        )
        if not candidates:
            raise _NoSubnet(f"no subnet of {base['VpcId']} there")
        return str(candidates[0]["SubnetId"])

    def _security_group_ids(self, subnet: str | None) -> list[str]:
        ids = [g for g in self.cfg.security_groups if g.startswith("sg-")]
        names = [g for g in self.cfg.security_groups if not g.startswith("sg-")]
        if names:
            filters: list[dict[str, Any]] = [{"Name": "group-name", "Values": names}]
            if subnet:
                filters.append({"Name": "vpc-id", "Values": [self._subnet_info(subnet)["VpcId"]]})
            resp = self._once(lambda: self._ec2.describe_security_groups(Filters=filters))
            found = {g["GroupName"]: g["GroupId"] for g in resp.get("SecurityGroups") or []}
            missing = [n for n in names if n not in found]
            if missing:
                raise ProviderError(
                    f"security group(s) not found: {', '.join(missing)}",
                    provider=self.name,
                    code="InvalidGroup.NotFound",
                    hint="check `security_groups`",
                )
            ids.extend(found[n] for n in names)
        return ids

    def _cleanup(self, spec: HostSpec, cause: ProviderError) -> None:
        """Terminate whatever a failed create left behind under ``spec.name``."""
        try:
            leftovers = [
                i for i in self._named(spec.name) if (i.get("State") or {}).get("Name") in _ALIVE
            ]
        except ProviderError as exc:
            if isinstance(cause, AccountBlocked) and isinstance(exc, AccountBlocked):
                return  # the account refuses us; nothing can be checked or removed
            raise ProviderError(
                f"create of {spec.name} failed ({cause.code or cause.kind}) and checking for "
                f"leftovers failed too ({exc}); instances tagged Name={spec.name} may be left "
                f"in {self.cfg.region}",
                provider=self.name,
                code=exc.code,
                hint="look for them with the EC2 console or `aws ec2 describe-instances` "
                "and terminate them",
            ) from None
        failed: list[str] = []
        for inst in leftovers:
            instance_id = str(inst["InstanceId"])
            try:
                self.destroy_host(instance_id)
            except ProviderError:
                failed.append(instance_id)
        if failed:
            raise ProviderError(
                f"create of {spec.name} failed ({cause.code or cause.kind}) and instance(s) "
                f"{', '.join(failed)} could not be terminated in {self.cfg.region}",
                provider=self.name,
                code=cause.code,
                hint="terminate them by hand (EC2 console or `aws ec2 terminate-instances`)",
            )

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            close = getattr(client, "close", None)
            if callable(close):
                close()


class _NoSubnet(Exception):
    pass
