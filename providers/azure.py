"""Azure compute: a host is a Linux VM with its NIC, public IP and managed OS disk.

Everything lives in one configured resource group and is tagged ``failover-service``,
``failover-generation`` and ``failover-purpose``. Resource names are derived from the host
name (``web-g3-azure`` -> VM ``web-g3-azure``, NIC ``web-g3-azure-nic``, public IP
``web-g3-azure-pip``, OS disk ``web-g3-azure-osdisk``), so a retried or resumed create
finds what the first attempt made, and ``destroy_host`` knows what to delete even when the
VM itself is already gone. Creates are ARM ``PUT``s (``begin_create_or_update``), polled to
completion and bounded by ``operation_timeout``.

The SDKs (azure-mgmt-compute, azure-mgmt-network, azure-identity) are imported inside the
methods only. See ``providers/_azure.py`` for credentials (``DefaultAzureCredential``; a
static token only for a loopback http test endpoint) and for the error mapping,
``providers/_azure_arm.py`` for the documents sent and read, ``providers/azure_settings.py``
for the config section.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable
from typing import Any
from typing import TypeVar

from providers import _azure
from providers import _azure_arm
from providers._azure import as_json
from providers._azure import dig
from providers._azure_arm import last_segment
from providers.azure_settings import AzureSettings as AzureSettings
from providers.azure_settings import resource_names as resource_names
from providers.base import AccountBlocked
from providers.base import AccountReport
from providers.base import CapacityError
from providers.base import Check
from providers.base import ComputeProvider
from providers.base import Host
from providers.base import HostSpec
from providers.base import NotFound
from providers.base import ProviderContext
from providers.base import ProviderError
from providers.base import QuotaError
from providers.base import try_zones

T = TypeVar("T")

SUBSCRIPTION_API = "2022-12-01"
RESOURCE_GROUP_API = "2021-04-01"


@dataclasses.dataclass(frozen=True)
class _Listed:
    """A resource group's NICs and public IPs, by lower-cased name, for a batch."""

    nics: dict[str, dict[str, Any]]
    pips: dict[str, dict[str, Any]]


class AzureProvider(ComputeProvider, kind="azure", settings=AzureSettings, vendor="microsoft"):
    """Azure virtual machines through azure-mgmt-compute / azure-mgmt-network.

    One instance serves the parallel moves of a round: the credential and both clients
    are made together under ``_lock`` and published as one pair (a thread never sees the
    compute client without the network one), with their sessions open (see
    :func:`providers._azure.opened`). The instance keeps no other state between calls.
    """

    settings: AzureSettings
    shared_across_threads = True

    def __init__(self, settings: AzureSettings, context: ProviderContext) -> None:
        super().__init__(settings, context)
        self._lock = threading.Lock()
        self._pair: tuple[Any, Any] | None = None
        self._credential: Any = None

    # ----------------------------------------------------------------- clients

    def _clients(self) -> tuple[Any, Any]:
        pair = self._pair
        if pair is not None:
            return pair
        with self._lock:
            if self._pair is None:
                from azure.mgmt.compute import ComputeManagementClient
                from azure.mgmt.network import NetworkManagementClient

                s = self.settings
                self._credential = _azure.make_credential(s.endpoint)
                kwargs = _azure.client_kwargs(s.endpoint, s.polling_interval)
                compute = ComputeManagementClient(self._credential, s.subscription_id, **kwargs)
                network = NetworkManagementClient(self._credential, s.subscription_id, **kwargs)
                self._pair = (_azure.opened(compute), _azure.opened(network))
            return self._pair

    def close(self) -> None:
        with self._lock:
            pair, credential = self._pair, self._credential
            self._pair = self._credential = None
        for client in (*(pair or ()), credential):
            closer = getattr(client, "close", None)
            if callable(closer):
                with contextlib.suppress(Exception):
                    closer()

    def _call(self, fn: Callable[[], T], action: str, scope: str | None = None) -> T:
        return _azure.guarded(
            fn,
            provider=self.name,
            action=action,
            scope=scope,
            attempts=self.settings.retry_attempts,
            max_time=self.settings.retry_max_time,
        )

    def _lro(self, begin: Callable[[], Any], action: str, scope: str | None = None) -> Any:
        """Start a long-running operation and wait for it (bounded); errors of the first
        response and of the failed operation are both mapped."""

        def run() -> Any:
            poller = begin()
            return _azure.wait_for(
                poller,
                timeout=self.settings.operation_timeout,
                provider=self.name,
                action=action,
            )

        return self._call(run, action, scope)

    def _get_or_none(self, fn: Callable[[], Any], action: str) -> dict[str, Any] | None:
        try:
            return as_json(self._call(fn, action))
        except NotFound:
            return None

    def _scope(self, zone: str | None) -> str:
        return f"{self.settings.location}-{zone}" if zone else self.settings.location

    # ----------------------------------------------------------------- create

    def create_host(self, spec: HostSpec) -> Host:
        self._clients()
        names = resource_names(spec.name)
        existing = self._get_vm(names["vm"])
        if existing is not None:
            state = str(dig(existing, "properties", "provisioningState") or "")
            if state.lower() not in ("failed", "deleting"):
                self.context.log(f"{self.name}: VM {names['vm']} exists already; reusing it")
                return self._host(existing)
            self.context.log(f"{self.name}: VM {names['vm']} is {state}; replacing it")
            self._cleanup(names, reason=f"replacing the {state} VM {names['vm']}")

        def attempt(zone: str | None) -> Host:
            try:
                return self._create_in_zone(spec, names, zone)
            except (CapacityError, QuotaError) as exc:
                self.context.log(f"{self.name}: {self._scope(zone)}: {exc}")
                self._cleanup(names, reason=f"{exc.kind} in {self._scope(zone)}", cause=exc)
                raise
            except AccountBlocked as exc:
                # The whole provider is refused: say what may be left, raise as is.
                left, _ = self._delete_all(names)
                if left:
                    exc.message += f" (left behind in {self.settings.resource_group}: "
                    exc.message += ", ".join(left) + ")"
                raise
            except ProviderError as exc:
                self._cleanup(names, reason=f"failed create ({exc.kind})", cause=exc)
                raise

        return try_zones(
            list(self.settings.zones) or [None],
            attempt,
            provider=self.name,
            what=f"{names['vm']} ({self.settings.size})",
            where=self._scope,
            scope=self.settings.location,
            log=self.context.log,
        )

    def _create_in_zone(self, spec: HostSpec, names: dict[str, str], zone: str | None) -> Host:
        compute, network = self._clients()
        s = self.settings
        scope = self._scope(zone)
        tags = dict(spec.tags)
        zones = [zone] if zone else None

        pip_body = _azure_arm.pip_body(s, tags, zones)
        pip = self._put(network.public_ip_addresses, "public IP", names["pip"], pip_body, scope)
        nic_body = _azure_arm.nic_body(s, tags, pip.get("id"))
        nic = self._put(network.network_interfaces, "NIC", names["nic"], nic_body, scope)

        vm_body = _azure_arm.vm_body(s, spec, names, nic.get("id"), tags, zones)
        self.context.log(f"{self.name}: creating VM {names['vm']} ({s.size}) in {scope}")
        vm = self._put(compute.virtual_machines, "VM", names["vm"], vm_body, scope)
        fresh = self._get_vm(names["vm"])
        return self._host(fresh or vm, nic=nic, pip=pip)

    def _put(
        self, collection: Any, kind: str, name: str, body: dict[str, Any], scope: str
    ) -> dict[str, Any]:
        """Create or update one resource of the resource group (an ARM PUT) and wait."""
        return as_json(
            self._lro(
                lambda: collection.begin_create_or_update(self.settings.resource_group, name, body),
                f"create {kind} {name}",
                scope,
            )
        )

    # ----------------------------------------------------------------- read

    def _get_vm(self, vm_name: str) -> dict[str, Any] | None:
        compute, _ = self._clients()
        return self._get_or_none(
            lambda: compute.virtual_machines.get(
                self.settings.resource_group, vm_name, expand="instanceView"
            ),
            f"read VM {vm_name}",
        )

    def get_host(self, host_id: str) -> Host | None:
        vm = self._get_vm(host_id)
        return None if vm is None else self._host(vm)

    batches_lookups = True

    def get_hosts(self, host_ids: list[str]) -> dict[str, Host | None]:
        """Four list calls whatever the number of ids, where :meth:`get_host` makes three
        per host: the group's VMs, the subscription's VM status (``statusOnly``: a group's
        list takes ``$expand=instanceView`` only with a scale-set filter), the group's NICs
        and public IPs. ARM names are case-insensitive, as a ``get`` by name is; a VM not
        listed is gone."""
        if not host_ids:
            return {}
        compute, network = self._clients()
        rg = self.settings.resource_group
        vms = self._listed(lambda: compute.virtual_machines.list(rg), f"list VMs in {rg}")
        wanted = {h: vms.get(h.lower()) for h in host_ids}
        if not any(wanted.values()):
            return {h: None for h in host_ids}
        statuses = self._call(
            lambda: {
                str(vm.get("id") or "").lower(): vm
                for vm in map(as_json, compute.virtual_machines.list_all(status_only="true"))
            },
            "list VM status",
        )
        listed = _Listed(
            self._listed(lambda: network.network_interfaces.list(rg), f"list NICs in {rg}"),
            self._listed(lambda: network.public_ip_addresses.list(rg), f"list public IPs in {rg}"),
        )
        out: dict[str, Host | None] = {}
        for host_id, vm in wanted.items():
            if vm is None:
                out[host_id] = None
                continue
            view = dig(statuses.get(str(vm.get("id") or "").lower()), "properties", "instanceView")
            vm = {**vm, "properties": {**(vm.get("properties") or {}), "instanceView": view}}
            out[host_id] = self._to_host(vm, *self._nic_and_pip(vm, listed))
        return out

    def _listed(self, pages: Callable[[], Any], action: str) -> dict[str, dict[str, Any]]:
        """Every resource of one list call, by lower-cased name."""
        return self._call(
            lambda: {str(r.get("name") or "").lower(): r for r in map(as_json, pages())}, action
        )

    def list_hosts(self, service: str) -> list[Host]:
        compute, _ = self._clients()
        rg = self.settings.resource_group
        vms = self._call(
            lambda: [as_json(vm) for vm in compute.virtual_machines.list(rg)],
            f"list VMs in {rg}",
        )
        hosts = []
        for vm in vms:
            if (vm.get("tags") or {}).get("failover-service") != service:
                continue
            full = self._get_vm(str(vm.get("name"))) or vm
            hosts.append(self._host(full))
        return hosts

    def _nic_and_pip(
        self, vm: dict[str, Any], listed: _Listed | None = None
    ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The VM's NIC and public IP: read one by one, or looked up in ``listed``."""
        _, network = self._clients()
        rg = self.settings.resource_group
        nic_id = dig(vm, "properties", "networkProfile", "networkInterfaces", 0, "id")
        nic_name = last_segment(nic_id) or resource_names(str(vm.get("name")))["nic"]
        if listed is not None:
            nic = listed.nics.get(nic_name.lower())
        else:
            nic = self._get_or_none(
                lambda: network.network_interfaces.get(rg, nic_name), f"read NIC {nic_name}"
            )
        pip_id = dig(
            nic, "properties", "ipConfigurations", 0, "properties", "publicIPAddress", "id"
        )
        pip_name = last_segment(pip_id)
        pip = None
        if pip_name and listed is not None:
            pip = listed.pips.get(pip_name.lower())
        elif pip_name:
            pip = self._get_or_none(
                lambda: network.public_ip_addresses.get(rg, pip_name), f"read public IP {pip_name}"
            )
        return nic, pip

    def _host(
        self,
        vm: dict[str, Any],
        *,
        nic: dict[str, Any] | None = None,
        pip: dict[str, Any] | None = None,
    ) -> Host:
        if nic is None or pip is None:
            found_nic, found_pip = self._nic_and_pip(vm)
            nic = nic or found_nic
            pip = pip or found_pip
        return self._to_host(vm, nic, pip)

    def _to_host(
        self, vm: dict[str, Any], nic: dict[str, Any] | None, pip: dict[str, Any] | None
    ) -> Host:
        return _azure_arm.to_host(
            vm, nic, pip, provider=self.name, resource_group=self.settings.resource_group
        )

    # ----------------------------------------------------------------- stop / destroy

    def stop_host(self, host_id: str) -> None:
        compute, _ = self._clients()
        rg = self.settings.resource_group
        try:
            self._lro(
                lambda: compute.virtual_machines.begin_deallocate(rg, host_id),
                f"deallocate VM {host_id}",
            )
        except NotFound:
            return  # a VM that is gone is stopped

    def destroy_host(self, host_id: str) -> None:
        self._clients()
        names = resource_names(host_id)
        names["vm"] = host_id
        vm = self._get_vm(host_id)
        if vm is not None:
            nic_id = dig(vm, "properties", "networkProfile", "networkInterfaces", 0, "id")
            names["nic"] = last_segment(nic_id) or names["nic"]
            disk = dig(vm, "properties", "storageProfile", "osDisk", "name") or last_segment(
                dig(vm, "properties", "storageProfile", "osDisk", "managedDisk", "id")
            )
            names["disk"] = disk or names["disk"]
            _nic, pip = self._nic_and_pip(vm)
            if pip is not None and pip.get("name"):
                names["pip"] = str(pip["name"])
        self._cleanup(names, reason=f"destroy {host_id}", strict_account=True)

    def _cleanup(
        self,
        names: dict[str, str],
        *,
        reason: str,
        cause: ProviderError | None = None,
        strict_account: bool = False,
    ) -> None:
        """Delete VM, NIC, public IP and OS disk, or raise ProviderError naming exactly what
        was left where. With ``strict_account`` an AccountBlocked is raised as such."""
        left, first = self._delete_all(names)
        if first is None:
            return
        if strict_account and isinstance(first, AccountBlocked):
            raise first
        rg = self.settings.resource_group
        where = f"resource group {rg} (subscription {self.settings.subscription_id})"
        message = f"{reason}: could not delete {', '.join(left)} in {where}: {first.message}"
        if cause is not None:
            message += f" (after: {cause})"
        raise ProviderError(
            message,
            provider=self.name,
            code=first.code,
            hint=f"delete them by hand (az resource delete -g {rg} ...) or run destroy again",
        ) from first

    def _delete_all(self, names: dict[str, str]) -> tuple[list[str], ProviderError | None]:
        """Delete VM, NIC, public IP and OS disk, in that order (a NIC cannot go while a VM
        holds it, an IP while a NIC holds it, a disk while it is attached); a missing
        resource is fine. Returns what is left and the first error."""
        compute, network = self._clients()
        rg = self.settings.resource_group
        steps: list[tuple[str, str, Callable[[], Any]]] = [
            ("VM", names["vm"], lambda: compute.virtual_machines.begin_delete(rg, names["vm"])),
            (
                "NIC",
                names["nic"],
                lambda: network.network_interfaces.begin_delete(rg, names["nic"]),
            ),
            (
                "public IP",
                names["pip"],
                lambda: network.public_ip_addresses.begin_delete(rg, names["pip"]),
            ),
            ("OS disk", names["disk"], lambda: compute.disks.begin_delete(rg, names["disk"])),
        ]
        left: list[str] = []
        first: ProviderError | None = None
        for kind, name, begin in steps:
            try:
                self._lro(begin, f"delete {kind} {name}")
            except NotFound:
                continue
            except ProviderError as exc:
                first = first or exc
                if kind == "VM":
                    # NIC and disk are still attached to the VM: they cannot go either.
                    left += [f"{k} {n}" for k, n, _ in steps]
                    break
                left.append(f"{kind} {name}")
        return left, first

    # ----------------------------------------------------------------- doctor

    def check_account(self) -> AccountReport:
        checks: list[Check] = []
        try:
            compute, _ = self._clients()
        except Exception as exc:  # credential construction, missing SDK
            return AccountReport(
                state="unknown",
                checks=[Check("azure sdk", False, f"{type(exc).__name__}: {exc}")],
                reason=str(exc),
            )
        s = self.settings

        # 1. subscription state (also proves the API answers and accepts the credentials)
        try:
            sub = self._arm_get(
                compute,
                f"/subscriptions/{s.subscription_id}",
                SUBSCRIPTION_API,
                "read subscription",
            )
        except AccountBlocked as exc:
            checks.append(Check("subscription", False, str(exc)))
            return AccountReport(state="blocked", checks=checks, reason=exc.message)
        except ProviderError as exc:
            checks.append(Check("subscription", False, str(exc)))
            return AccountReport(state="unknown", checks=checks, reason=exc.message)
        check, blocked = _azure_arm.subscription_check(sub, s.subscription_id)
        checks.append(check)
        if blocked:
            return AccountReport(state="blocked", checks=checks, reason=blocked)

        # 2. resource group
        try:
            rg = self._arm_get(
                compute,
                f"/subscriptions/{s.subscription_id}/resourcegroups/{s.resource_group}",
                RESOURCE_GROUP_API,
                f"read resource group {s.resource_group}",
            )
            checks.append(
                Check("resource group", True, f"{s.resource_group} in {rg.get('location')}")
            )
        except AccountBlocked as exc:
            checks.append(Check("resource group", False, str(exc)))
            return AccountReport(state="blocked", checks=checks, reason=exc.message)
        except NotFound:
            checks.append(Check("resource group", False, f"{s.resource_group} does not exist"))
        except ProviderError as exc:
            checks.append(Check("resource group", False, str(exc)))

        # 3. VM size offered in the location (and zones) for this subscription
        try:
            checks.append(self._size_check(compute))
        except AccountBlocked as exc:
            checks.append(Check("vm size", False, str(exc)))
            return AccountReport(state="blocked", checks=checks, reason=exc.message)
        except ProviderError as exc:
            checks.append(Check("vm size", False, str(exc)))

        return AccountReport.from_checks(checks)

    def _arm_get(self, compute: Any, path: str, api_version: str, action: str) -> dict[str, Any]:
        from azure.core.exceptions import HttpResponseError
        from azure.core.rest import HttpRequest

        def call() -> dict[str, Any]:
            request = HttpRequest("GET", path, params={"api-version": api_version})
            response = compute.send_request(request)
            if response.status_code >= 400:
                raise HttpResponseError(response=response)
            body = response.json()
            return body if isinstance(body, dict) else {}

        return self._call(call, action)

    def _size_check(self, compute: Any) -> Check:
        s = self.settings
        skus = self._call(
            lambda: [
                as_json(sku)
                for sku in compute.resource_skus.list(filter=f"location eq '{s.location}'")
            ],
            f"list VM sizes in {s.location}",
        )
        return _azure_arm.size_check(s, skus)
