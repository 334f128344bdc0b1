"""Google Compute Engine hosts through ``google-cloud-compute`` (REST transport).

One VM per host, named after ``spec.name`` (GCE name rules), labelled
``failover-service`` / ``failover-generation`` / ``failover-purpose``, booted with the
service's cloud-init as ``user-data`` metadata and a ``startup-script`` fallback for images
without cloud-init. Zones are tried in order: a capacity error blocks one zone, a quota
error the zone's region, and both move on to the next zone; a refused or suspended
project raises :class:`~providers.base.AccountBlocked` at once.

Every call uses the ``*_unary`` methods and waits on the returned zone operation with our
own ``ZoneOperationsClient``, built with the same ``client_options``: the SDK's
``ExtendedOperation`` polls through a client of its own that ignores an endpoint override.
``google.cloud.compute_v1`` takes seconds to import, so it is imported on first use only.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import threading
import time
from functools import cached_property
from typing import Any

from providers import _gcp
from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import CapacityError
from providers.base import Check
from providers.base import ComputeProvider
from providers.base import ConflictError
from providers.base import Host
from providers.base import HostSpec
from providers.base import HostState
from providers.base import NotFound
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import ProviderSettings
from providers.base import QuotaError
from providers.base import TransientError
from providers.base import as_settings
from providers.base import try_zones
from providers.gcp_settings import NAME_OK as _NAME_OK
from providers.gcp_settings import GcpSettings as GcpSettings
from providers.gcp_settings import instance_name as instance_name
from providers.gcp_settings import label_value as label_value
from providers.retry import call_with_retries
from providers.util import fill_placeholders
from providers.util import image_placeholders

LABEL_SERVICE = "failover-service"
LABEL_GENERATION = "failover-generation"
LABEL_PURPOSE = "failover-purpose"
META_SERVICE = "failover-service"
META_HOST = "failover-host"

_STATE = {
    "PROVISIONING": HostState.PENDING,
    "STAGING": HostState.PENDING,
    "REPAIRING": HostState.PENDING,
    "PENDING": HostState.PENDING,
    "RUNNING": HostState.RUNNING,
    "STOPPING": HostState.STOPPED,
    "SUSPENDING": HostState.STOPPED,
    "SUSPENDED": HostState.STOPPED,
    "PENDING_STOP": HostState.STOPPED,
    "STOPPED": HostState.STOPPED,
    "TERMINATED": HostState.STOPPED,  # GCE's word for a stopped (restartable) VM
}


class GcpProvider(ComputeProvider, kind="gcp", settings=GcpSettings, vendor="google"):
    """Compute Engine VMs. Host ids are ``ZONE/INSTANCE_NAME``.

    One instance serves the parallel moves of a round. Its credentials and clients are
    made once, under ``_lock``; the clients then take concurrent calls: the REST
    transport sends through google-auth's ``AuthorizedSession``, written for use from
    several threads (per-request state passed as arguments "to maintain thread-safety",
    adapters swapped by copy so that threads iterating them are unaffected:
    google/auth/transport/requests.py), over urllib3's thread-safe connection pools.
    Two threads refreshing an expired token at once both fetch one, which is harmless.
    """

    shared_across_threads = True

    def __init__(self, settings: ProviderSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self.cfg = as_settings(GcpSettings, settings)
        self._lock = threading.RLock()  # re-entered: a client is made with the credentials
        self._creds: Any = None
        self._clients: dict[str, Any] = {}

    # ---------------------------------------------------------------- clients

    @cached_property
    def _compute(self) -> Any:
        from google.cloud import compute_v1  # ~2.4 s: only when a gcp provider is used

        return compute_v1

    @property
    def _credentials(self) -> Any:
        creds = self._creds
        if creds is None:
            with self._lock:
                if self._creds is None:
                    self._creds = _gcp.load_credentials(
                        self.cfg.credentials_file, self.cfg.endpoint, self.name
                    )
                creds = self._creds
        return creds

    def _client(self, kind: str) -> Any:
        """``InstancesClient``, ``ZoneOperationsClient``... with our endpoint and credentials."""
        client = self._clients.get(kind)
        if client is not None:
            return client
        with self._lock:
            client = self._clients.get(kind)
            if client is None:
                client = self._clients[kind] = self._new_client(kind)
            return client

    def _new_client(self, kind: str) -> Any:
        """Called with ``_lock`` held."""
        cls = getattr(self._compute, kind)
        options = {"api_endpoint": self.cfg.endpoint} if self.cfg.endpoint else None
        return cls(credentials=self._credentials, transport="rest", client_options=options)

    def close(self) -> None:
        with self._lock:
            clients = list(self._clients.values())
            self._clients.clear()
        for client in clients:
            with contextlib.suppress(Exception):
                client.transport.close()

    # ---------------------------------------------------------------- plumbing

    def _once(self, fn: Any, *, zone: str | None = None, what: str = "") -> Any:
        try:
            return fn()
        except ProviderError:
            raise
        except Exception as exc:
            raise _gcp.map_error(exc, provider=self.name, zone=zone, what=what) from None

    def _call(self, fn: Any, *, zone: str | None = None, what: str = "") -> Any:
        """One SDK call, mapped, retried on TransientError within the configured bounds."""
        return self._retrying(lambda: self._once(fn, zone=zone, what=what))

    def _retrying(self, fn: Any) -> Any:
        return call_with_retries(
            fn, attempts=self.cfg.retry_attempts, max_time=self.cfg.retry_max_time
        )

    @property
    def _timeout(self) -> float:
        return float(self.cfg.request_timeout)

    def _wait(self, op: Any, zone: str, what: str) -> Any:
        """Wait (bounded by ``operation_timeout``) until ``op`` is DONE; map its error."""
        done = self._compute.Operation.Status.DONE
        deadline = time.monotonic() + float(self.cfg.operation_timeout)
        failures = 0
        while op.status != done:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TransientError(
                    f"{what}: operation {op.name} in {zone} not done after "
                    f"{self.cfg.operation_timeout:g}s",
                    provider=self.name,
                    code="OPERATION_TIMEOUT",
                    hint="raise operation_timeout, or look at the operation in the console",
                )
            name = op.name
            try:
                op = self._once(
                    lambda name=name, remaining=remaining: self._client(
                        "ZoneOperationsClient"
                    ).wait(
                        project=self.cfg.project,
                        zone=zone,
                        operation=name,
                        retry=None,
                        # the server holds a wait up to 2 min; never past our deadline
                        timeout=min(remaining, 130.0) + 1.0,
                    ),
                    zone=zone,
                    what=what,
                )
                failures = 0
            except TransientError:
                failures += 1
                if failures >= self.cfg.retry_attempts or time.monotonic() >= deadline:
                    raise
                time.sleep(min(0.2 * 2**failures, 5.0, max(0.0, deadline - time.monotonic())))
        if _gcp.operation_failed(op):
            raise _gcp.map_operation_error(op, provider=self.name, zone=zone, what=what)
        return op

    # ---------------------------------------------------------------- mapping

    def _to_host(self, inst: Any) -> Host:
        zone = inst.zone.rsplit("/", 1)[-1]
        labels = dict(inst.labels)
        meta = {item.key: item.value for item in inst.metadata.items} if inst.metadata else {}
        address = None
        private = None
        for nic in inst.network_interfaces:
            private = private or (nic.network_i_p or None)
            for ac in nic.access_configs:
                address = address or (ac.nat_i_p or None)
        try:
            generation = int(labels.get(LABEL_GENERATION, "0"))
        except ValueError:
            generation = 0
        raw = inst.status or "UNKNOWN"
        return Host(
            id=f"{zone}/{inst.name}",
            provider=self.name,
            name=meta.get(META_HOST, inst.name),
            service=meta.get(META_SERVICE) or labels.get(LABEL_SERVICE, ""),
            generation=generation,
            state=_STATE.get(raw, HostState.UNKNOWN),
            raw_state=raw,
            reason=inst.status_message or None,
            address=address,
            private_address=private,
            zone=zone,
            created_at=inst.creation_timestamp or None,
            purpose=labels.get(LABEL_PURPOSE, "serve"),
            extra={"instance_id": str(inst.id), "self_link": inst.self_link},
        )

    def _split_id(self, host_id: str) -> tuple[str, str]:
        zone, sep, name = host_id.partition("/")
        if not sep or not zone or not name:
            raise ProviderError(
                f"{host_id!r} is not a gcp host id (ZONE/INSTANCE)", provider=self.name
            )
        return zone, name

    # ---------------------------------------------------------------- resource URLs

    def _image_url(self) -> str:
        image = self.cfg.image
        if "://" in image:
            return image
        if image.startswith(("projects/", "global/")):
            return image
        return f"projects/{self.cfg.project}/global/images/{image}"

    def _network_url(self) -> str:
        net = self.cfg.network
        return net if "/" in net else f"projects/{self.cfg.project}/global/networks/{net}"

    def _subnetwork_url(self, zone: str) -> str | None:
        sub = self.cfg.subnetwork
        if not sub:
            return None
        if "/" in sub:
            return sub
        return f"projects/{self.cfg.project}/regions/{_gcp.region_of(zone)}/subnetworks/{sub}"

    def _startup_script(self, spec: HostSpec) -> str:
        """Fallback for images without cloud-init: set up, restore, run the service."""
        values = image_placeholders(spec)

        def fill(command: str) -> str:
            return fill_placeholders(command, values)

        run = spec.run
        lines = [
            "#!/bin/bash",
            "# failover: used only when the image has no cloud-init (which reads user-data)",
            "command -v cloud-init >/dev/null 2>&1 && exit 0",
            "set -eu",
            "mkdir -p /var/lib/failover",
            "if [ ! -e /var/lib/failover/setup-done ]; then",
        ]
        lines += [f"  {fill(cmd)}" for cmd in (*run.setup, *run.restore)] or ["  :"]
        lines += ["  touch /var/lib/failover/setup-done", "fi"]
        lines += [f"export {k}={shlex.quote(v)}" for k, v in run.env.items()]
        command = shlex.quote(fill(run.command))
        lines.append(f"nohup sh -c {command} >>/var/log/failover-service.log 2>&1 &")
        return "\n".join(lines) + "\n"

    def _instance_resource(self, spec: HostSpec, name: str, zone: str) -> Any:
        c = self._compute
        labels = {
            LABEL_SERVICE: label_value(spec.service),
            LABEL_GENERATION: str(spec.generation),
            LABEL_PURPOSE: label_value(spec.purpose),
        }
        items = [
            c.Items(key="user-data", value=spec.user_data),
            c.Items(key="startup-script", value=self._startup_script(spec)),
            c.Items(key=META_SERVICE, value=spec.service),
            c.Items(key=META_HOST, value=spec.name),
        ]
        init = c.AttachedDiskInitializeParams(source_image=self._image_url())
        if self.cfg.disk_size_gb:
            init.disk_size_gb = self.cfg.disk_size_gb
        nic = c.NetworkInterface(
            network=self._network_url(),
            access_configs=[c.AccessConfig(name="External NAT", type_="ONE_TO_ONE_NAT")],
        )
        subnetwork = self._subnetwork_url(zone)
        if subnetwork:
            nic.subnetwork = subnetwork
        instance = c.Instance(
            name=name,
            description=(
                f"failover host {spec.name}: service {spec.service}, generation {spec.generation}"
            ),
            machine_type=f"zones/{zone}/machineTypes/{self.cfg.machine_type}",
            labels=labels,
            metadata=c.Metadata(items=items),
            disks=[
                c.AttachedDisk(
                    boot=True, auto_delete=True, type_="PERSISTENT", initialize_params=init
                )
            ],
            network_interfaces=[nic],
        )
        if self.cfg.service_account:
            instance.service_accounts = [
                c.ServiceAccount(email=self.cfg.service_account, scopes=list(_gcp.SCOPES))
            ]
        if self.cfg.network_tags:
            instance.tags = c.Tags(items=list(self.cfg.network_tags))
        return instance

    # ---------------------------------------------------------------- lookups

    def _zonal(self, method: str, zone: str, what: str, **kwargs: Any) -> Any:
        """One ``InstancesClient`` call in ``zone`` of our project, mapped, not retried (the
        SDK's own retries are off: ours are bounded)."""
        return self._once(
            lambda: getattr(self._client("InstancesClient"), method)(
                project=self.cfg.project, zone=zone, retry=None, timeout=self._timeout, **kwargs
            ),
            zone=zone,
            what=what,
        )

    def _get(self, zone: str, name: str) -> Any | None:
        what = f"get instance {name}"
        try:
            return self._retrying(lambda: self._zonal("get", zone, what, instance=name))
        except NotFound:
            return None

    def _aggregated(self, filter_: str) -> list[Any]:
        c = self._compute
        request = c.AggregatedListInstancesRequest(project=self.cfg.project, filter=filter_)

        def run() -> list[Any]:
            pager = self._client("InstancesClient").aggregated_list(
                request=request, retry=None, timeout=self._timeout
            )
            found: list[Any] = []
            for _scope, scoped in pager:
                found.extend(scoped.instances)
            return found

        result: list[Any] = self._call(run, what="list instances")
        return result

    # ---------------------------------------------------------------- interface

    def create_host(self, spec: HostSpec) -> Host:
        name = instance_name(spec.name)
        existing = self._aggregated(f'name = "{name}"')
        if existing:
            inst = sorted(existing, key=lambda i: i.creation_timestamp)[0]
            self.context.log(
                f"{self.name}: {name} already exists in {inst.zone.rsplit('/', 1)[-1]}"
            )
            return self._to_host(inst)

        # A quota is regional: once one zone hits it, its sibling zones would too.
        quota_regions: set[str] = set()

        def quota_used(zone: str) -> str | None:
            region = _gcp.region_of(zone)
            return f"quota of {region} is used up" if region in quota_regions else None

        def attempt(zone: str) -> Host:
            try:
                return self._create_in_zone(spec, name, zone)
            except CapacityError as exc:
                self.context.log(f"{self.name}: no capacity in {zone}: {exc.code}; next zone")
                raise
            except QuotaError as exc:
                self.context.log(f"{self.name}: quota exhausted for {zone}: {exc.code}; next zone")
                quota_regions.add(exc.scope or _gcp.region_of(zone))
                raise

        # Zones may span regions: the final error has no single scope.
        return try_zones(
            self.cfg.zone_list,
            attempt,
            provider=self.name,
            what=name,
            where=str,
            skip=quota_used,
            log=self.context.log,
        )

    def _create_in_zone(self, spec: HostSpec, name: str, zone: str) -> Host:
        what = f"create {name} in {zone}"
        resource = self._instance_resource(spec, name, zone)
        made = False  # did an insert reach Google (so something may exist to clean up)?
        try:

            def insert_and_wait() -> Any:
                nonlocal made
                try:
                    op = self._zonal("insert_unary", zone, what, instance_resource=resource)
                except ConflictError:
                    # A retried insert (or a concurrent one) already made it: fetch it.
                    made = True
                    self.context.log(f"{self.name}: {name} already exists in {zone}")
                    return None
                except TransientError:
                    made = True  # the request may have been applied before the answer was lost
                    raise
                made = True
                return self._wait(op, zone, what)

            self._retrying(insert_and_wait)
            inst = self._get(zone, name)
            if inst is None:
                raise ProviderError(
                    f"{what}: the insert finished but the instance is not there",
                    provider=self.name,
                    code="notFound",
                )
            return self._to_host(inst)
        except ProviderError as exc:
            if made:
                self._cleanup(name, zone, exc)
            raise

    def _cleanup(self, name: str, zone: str, cause: ProviderError) -> None:
        """After a failed create in ``zone``: delete what was made there, or say what is left."""
        try:
            self._delete(zone, name)
        except ProviderError as exc:
            left = (
                f"instance {name} may be left in zone {zone} of project "
                f"{self.cfg.project} (delete it: gcloud compute instances delete {name} "
                f"--zone {zone} --project {self.cfg.project}); cleanup failed: {exc.message}"
            )
            if isinstance(cause, AccountBlocked):
                raise AccountBlocked(
                    f"{cause.message}; {left}", provider=self.name, code=cause.code, hint=cause.hint
                ) from None
            raise ProviderError(
                f"create failed ({cause.message} [{cause.code}]) and {left}",
                provider=self.name,
                code=exc.code,
                hint="remove the instance by hand before retrying",
            ) from None

    def _instance_op(self, method: str, zone: str, name: str) -> None:
        """Run ``InstancesClient.<method>_unary`` on one instance and wait for its zone
        operation; a failed operation is retried like a failed call."""
        what = f"{method} {name} in {zone}"

        def call_and_wait() -> None:
            self._wait(self._zonal(f"{method}_unary", zone, what, instance=name), zone, what)

        self._retrying(call_and_wait)

    def _delete(self, zone: str, name: str) -> None:
        """Delete and wait; a missing instance is fine."""
        try:
            self._instance_op("delete", zone, name)
        except NotFound:
            return

    def get_host(self, host_id: str) -> Host | None:
        zone, name = self._split_id(host_id)
        inst = self._get(zone, name)
        return self._to_host(inst) if inst is not None else None

    batches_lookups = True

    def get_hosts(self, host_ids: list[str]) -> dict[str, Host | None]:
        """One ``aggregatedList`` per 100 ids, filtered by a full-match RE2 on the names
        (which need no escaping: GCE names are ``[-a-z0-9]``); unlike ``get``, a list does
        not fail for a missing instance, so an id it does not return is gone. An id whose
        name GCE could never accept is asked alone, to fail as :meth:`get_host` does."""
        wanted = {host_id: self._split_id(host_id)[1] for host_id in host_ids}
        names = sorted({name for name in wanted.values() if _NAME_OK.match(name)})
        found: dict[str, Host] = {}
        # 100 names keep the filter, and so the request URL, under ~7 kB
        for start in range(0, len(names), 100):
            chunk = "|".join(names[start : start + 100])
            for inst in self._aggregated(f'name eq "({chunk})"'):
                host = self._to_host(inst)
                found[host.id] = host
        return {
            host_id: found.get(host_id) if _NAME_OK.match(name) else self.get_host(host_id)
            for host_id, name in wanted.items()
        }

    def list_hosts(self, service: str) -> list[Host]:
        found = self._aggregated(f'labels.{LABEL_SERVICE} = "{label_value(service)}"')
        hosts = [self._to_host(inst) for inst in found]
        return [h for h in hosts if h.service in (service, label_value(service))]

    def stop_host(self, host_id: str) -> None:
        zone, name = self._split_id(host_id)
        self._instance_op("stop", zone, name)

    def destroy_host(self, host_id: str) -> None:
        # The boot disk is auto-deleted and the external IP is ephemeral: deleting the
        # instance removes everything billable made for it.
        zone, name = self._split_id(host_id)
        self._delete(zone, name)

    # ---------------------------------------------------------------- doctor

    def check_account(self) -> AccountReport:
        checks: list[Check] = []
        project = self.cfg.project
        refused = self._project_check(checks)
        if refused is not None:
            return refused

        blocked: str | None = None

        def check(name: str, fn: Any, ok_detail: Any) -> None:
            nonlocal blocked
            try:
                result = self._call(fn, what=name)
                detail, level_ok, level = ok_detail(result)
                checks.append(Check(name, level_ok, detail, level=level))
            except AccountBlocked as exc:
                blocked = blocked or str(exc)
                checks.append(Check(name, False, str(exc)))
            except NotFound:
                checks.append(Check(name, False, f"{name}: not found"))
            except Exception as exc:
                checks.append(Check(name, False, f"{name}: {exc}"))

        for zone in self.cfg.zone_list:
            check(
                f"zone {zone}",
                lambda zone=zone: self._client("ZonesClient").get(
                    project=project, zone=zone, retry=None, timeout=self._timeout
                ),
                lambda z: (
                    f"zone {z.name} is {z.status}",
                    z.status == "UP",
                    "error",
                ),
            )
            check(
                f"machine type {self.cfg.machine_type} in {zone}",
                lambda zone=zone: self._client("MachineTypesClient").get(
                    project=project,
                    zone=zone,
                    machine_type=self.cfg.machine_type,
                    retry=None,
                    timeout=self._timeout,
                ),
                lambda m: (f"{m.name}: {m.guest_cpus} vCPU, {m.memory_mb} MB", True, "error"),
            )
        check(f"image {self.cfg.image}", self._get_image, self._image_detail)

        if blocked:
            return AccountReport("blocked", checks, reason=blocked)
        return AccountReport.from_checks(checks)

    def _project_check(self, checks: list[Check]) -> AccountReport | None:
        """The project's line (it answers, it is ours to use); the report when the
        account is refused or cannot be asked, else None."""
        project = self.cfg.project
        try:
            self._credentials  # noqa: B018 - resolve credentials first
            self._call(
                lambda: self._client("ProjectsClient").get(
                    project=project, retry=None, timeout=self._timeout
                ),
                what=f"get project {project}",
            )
            checks.append(Check("project", True, f"project {project} reachable"))
        except AccountBlocked as exc:
            checks.append(Check("project", False, str(exc)))
            return AccountReport("blocked", checks, reason=str(exc))
        except NotFound as exc:
            checks.append(Check("project", False, f"project {project} not found"))
            return AccountReport("blocked", checks, reason=str(exc))
        except ProviderError as exc:
            checks.append(Check("project", False, str(exc)))
            return AccountReport("unknown", checks, reason=str(exc))
        except Exception as exc:  # never raise from doctor
            checks.append(Check("project", False, f"{type(exc).__name__}: {exc}"))
            return AccountReport("unknown", checks, reason=str(exc))
        return None

    def _get_image(self) -> Any:
        url = self._image_url().split("/compute/v1/", 1)[-1]
        m = re.match(
            r"^(?:projects/(?P<p>[^/]+)/)?global/images/(?:family/(?P<f>[^/]+)|(?P<n>[^/]+))$", url
        )
        if not m:
            raise ProviderError(f"cannot parse image {self.cfg.image!r}", provider=self.name)
        project = m.group("p") or self.cfg.project
        images = self._client("ImagesClient")
        if m.group("f"):
            return images.get_from_family(
                project=project, family=m.group("f"), retry=None, timeout=self._timeout
            )
        return images.get(project=project, image=m.group("n"), retry=None, timeout=self._timeout)

    @staticmethod
    def _image_detail(img: Any) -> tuple[str, bool, str]:
        state = img.deprecated.state if img.deprecated else ""
        if state in ("DEPRECATED", "OBSOLETE", "DELETED"):
            return f"image {img.name} is {state}", False, "warning"
        return f"image {img.name} ({img.status})", img.status in ("READY", ""), "error"
