"""``failover doctor`` for EC2 (:meth:`AwsProvider.check_account`): who we are, the
region and zones, the image, the instance type, the vCPU quota and the subnet, each a
:class:`~providers.base.Check`. Mixed into :class:`providers.aws.AwsProvider`, whose
client plumbing it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any
from typing import TypeVar

from providers import _aws
from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import Check
from providers.base import ProviderError
from providers.base import TransientError

if TYPE_CHECKING:
    from providers.aws import AwsSettings

T = TypeVar("T")

# EC2's "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances" vCPU quota.
_STANDARD_VCPU_QUOTA = "L-1216C47A"
_STANDARD_FAMILIES = frozenset("acdhimrtz")


class AwsDoctor:
    name: str
    cfg: AwsSettings
    _client: Callable[[str], Any]
    _once: Callable[..., Any]
    _describe: Callable[..., list[dict[str, Any]]]
    _subnet_info: Callable[[str], dict[str, Any]]

    def check_account(self) -> AccountReport:
        checks: list[Check] = []

        def attempt(fn: Callable[[], T]) -> T:
            return _aws.call(
                fn, provider=self.name, attempts=min(2, self.cfg.retry_attempts), max_time=10.0
            )

        def fail(name: str, exc: ProviderError) -> AccountReport:
            status = "blocked" if isinstance(exc, AccountBlocked) else "unknown"
            checks.append(Check(name, False, str(exc)))
            return AccountReport(state=status, checks=checks, reason=str(exc))

        try:
            who = attempt(lambda: self._client("sts").get_caller_identity())
        except ProviderError as exc:
            return fail("identity", exc)
        checks.append(Check("identity", True, f"account {who.get('Account')} as {who.get('Arn')}"))

        try:
            azs = attempt(lambda: self._client("ec2").describe_availability_zones())
        except ProviderError as exc:
            return fail("region", exc)
        available = {
            z["ZoneName"]
            for z in azs.get("AvailabilityZones") or []
            if z.get("State") == "available"
        }
        checks.append(
            Check(
                "region", True, f"{self.cfg.region} reachable, {len(available)} zone(s) available"
            )
        )
        if self.cfg.zones:
            missing = [z for z in self.cfg.zones if z not in available]
            checks.append(
                Check(
                    "zones",
                    not missing,
                    f"not available in {self.cfg.region}: {', '.join(missing)}"
                    if missing
                    else ", ".join(self.cfg.zones),
                    level="error" if len(missing) == len(self.cfg.zones) else "warning",
                )
            )

        sub_checks: list[tuple[str, Callable[[], Check]]] = [
            ("image", self._check_image),
            ("instance_type", self._check_instance_type),
            ("quota", self._check_quota),
        ]
        if self.cfg.subnet:
            sub_checks.append(("subnet", self._check_subnet))
        for name, run in sub_checks:
            try:
                checks.append(attempt(run))
            except AccountBlocked as exc:
                return fail(name, exc)
            except ProviderError as exc:
                checks.append(Check(name, False, str(exc)))
        return AccountReport.from_checks(checks)

    def _check_image(self) -> Check:
        try:
            resp = self._once(
                lambda: self._client("ec2").describe_images(ImageIds=[self.cfg.image])
            )
        except ProviderError as exc:
            if isinstance(exc, AccountBlocked | TransientError):
                raise
            return Check("image", False, f"{self.cfg.image}: {exc.message} [{exc.code}]")
        images = resp.get("Images") or []
        if not images:
            return Check("image", False, f"{self.cfg.image} not found in {self.cfg.region}")
        image = images[0]
        ok = image.get("State", "available") == "available"
        return Check(
            "image", ok, f"{self.cfg.image} ({image.get('Name', '')}) {image.get('State')}"
        )

    def _check_instance_type(self) -> Check:
        itype = self.cfg.instance_type
        try:
            self._once(lambda: self._client("ec2").describe_instance_types(InstanceTypes=[itype]))
        except ProviderError as exc:
            if isinstance(exc, AccountBlocked | TransientError):
                raise
            return Check("instance_type", False, f"{itype}: {exc.message} [{exc.code}]")
        detail = f"{itype} exists"
        if self.cfg.zones:
            offered = self._once(
                lambda: self._client("ec2").describe_instance_type_offerings(
                    LocationType="availability-zone",
                    Filters=[{"Name": "instance-type", "Values": [itype]}],
                )
            )
            where = {o.get("Location") for o in offered.get("InstanceTypeOfferings") or []}
            missing = [z for z in self.cfg.zones if z not in where]
            if missing:
                return Check(
                    "instance_type",
                    False,
                    f"{itype} is not offered in {', '.join(missing)}",
                    level="warning" if len(missing) < len(self.cfg.zones) else "error",
                )
            detail += f", offered in {', '.join(self.cfg.zones)}"
        return Check("instance_type", True, detail)

    def _check_quota(self) -> Check:
        """Headroom under the standard on-demand vCPU quota, or else EC2's max-instances."""
        running = self._describe(
            [{"Name": "instance-state-name", "Values": ["pending", "running"]}], once=True
        )
        try:
            quota = self._once(
                lambda: self._client("service-quotas").get_service_quota(
                    ServiceCode="ec2", QuotaCode=_STANDARD_VCPU_QUOTA
                )
            )
            limit = float(quota["Quota"]["Value"])
        except (ProviderError, KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, AccountBlocked):
                raise
            return self._check_max_instances(len(running))
        types = sorted(
            {self.cfg.instance_type}
            | {
                str(i["InstanceType"])
                for i in running
                if str(i.get("InstanceType", "x"))[:1] in _STANDARD_FAMILIES
            }
        )
        resp = self._once(lambda: self._client("ec2").describe_instance_types(InstanceTypes=types))
        vcpus = {
            t["InstanceType"]: int((t.get("VCpuInfo") or {}).get("DefaultVCpus", 1))
            for t in resp.get("InstanceTypes") or []
        }
        used = sum(
            vcpus.get(str(i.get("InstanceType")), 1)
            for i in running
            if str(i.get("InstanceType", "x"))[:1] in _STANDARD_FAMILIES
        )
        need = vcpus.get(self.cfg.instance_type, 1)
        ok = used + need <= limit
        return Check(
            "quota",
            ok,
            f"standard on-demand vCPUs: {used:g} used of {limit:g}, {self.cfg.instance_type} "
            f"needs {need}",
        )

    def _check_max_instances(self, running: int) -> Check:
        resp = self._once(
            lambda: self._client("ec2").describe_account_attributes(
                AttributeNames=["max-instances"]
            )
        )
        limit: int | None = None
        for attr in resp.get("AccountAttributes") or []:
            if attr.get("AttributeName") == "max-instances":
                values = attr.get("AttributeValues") or [{}]
                try:
                    limit = int(values[0].get("AttributeValue", ""))
                except ValueError:
                    limit = None
        if limit is None:
            return Check("quota", True, "the API does not report the quota", level="warning")
        return Check(
            "quota", running < limit, f"instances: {running} running of max-instances {limit}"
        )

    def _check_subnet(self) -> Check:
        try:
            info = self._subnet_info(self.cfg.subnet or "")
        except ProviderError as exc:
            if isinstance(exc, AccountBlocked | TransientError):
                raise
            return Check("subnet", False, str(exc))
        return Check(
            "subnet",
            True,
            f"{self.cfg.subnet} ({info.get('CidrBlock')}) in {info.get('AvailabilityZone')}",
        )
