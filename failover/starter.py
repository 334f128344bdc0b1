"""Starter configs written by ``failover init``."""

from __future__ import annotations

_HEAD = """\
# failover.yaml: one file describes the service once; failover moves it between providers.
# Reference: README.md ("Configuration"); JSON Schema: `failover schema`.
version: 1
state:
  backend: sqlite            # the journal, health counters and lock, in .failover/ beside this file
"""

_DNS_LOCAL = """\
dns:
  type: local                # local | route53 | clouddns | azuredns | rfc2136 | cloudflare
  zone: example.test
  ttl: 30                    # keep it short: clients cache the old address this long
"""

_PROVIDERS = {
    "local": """\
providers:                   # every place a host can live, in default priority order
  - name: alpha
    type: local              # a process on its own 127.77.x.y address; no root, no network
  - name: beta
    type: local
""",
    "aws": """\
providers:
  - name: aws-main
    type: aws                # credentials: the usual AWS chain (env, ~/.aws, instance role)
    region: us-east-1
    zones: [us-east-1a, us-east-1b]   # tried in order when one has no capacity
    instance_type: t3.small
    image: ${FAILOVER_AWS_IMAGE}      # an AMI with cloud-init, e.g. ami-0123456789abcdef0:
                                      # set it here or in the environment
  - name: standby
    type: local
""",
    "gcp": """\
providers:
  - name: gcp-main
    type: gcp                # credentials: Application Default Credentials or credentials_file
    project: ${GOOGLE_CLOUD_PROJECT}  # your project id: set it here or in the environment
    zones: [europe-west1-b, europe-west1-c]
    machine_type: e2-small
    image: projects/debian-cloud/global/images/family/debian-12
  - name: standby
    type: local
""",
    "azure": """\
providers:
  - name: azure-main
    type: azure              # credentials: DefaultAzureCredential (env, managed identity, az login)
    subscription_id: 00000000-0000-0000-0000-000000000000
    resource_group: failover
    location: westeurope
    size: Standard_B1s
    image: Canonical:0001-com-ubuntu-server-jammy:22_04-lts-gen2:latest
    # subnet_id: the full ARM id of an existing subnet
    subnet_id: ${AZURE_SUBNET_ID}
    admin_username: failover
    ssh_public_key: ${FAILOVER_SSH_PUBLIC_KEY}
  - name: standby
    type: local
""",
    "ssh": """\
providers:
  - name: standby
    type: local
  - name: rented
    type: ssh                # machines you rent or own; needs the [ssh] extra (asyncssh)
    identity_file: ~/.ssh/failover   # the private key to log in with (default: the SSH agent)
    known_hosts: ~/.ssh/known_hosts   # for machines without host_key (@cert-authority ok)
    # dir: ~/.failover       # hosts live under DIR/<service>/ in the login's home
    # supervisor: auto       # auto: systemd unit where systemd runs, else setsid + pid file
    machines:                # tried in order; one that already serves the service is skipped
      - address: 203.0.113.10          # where the service answers (probes, DNS)
        ssh: deploy@203.0.113.10:22    # how to reach it (default root@ADDRESS:22)
        # or its own pinned key, never trusted on first use: the line
        # `ssh-keyscan -p 22 203.0.113.10` prints, checked against the machine's console
        # host_key: "203.0.113.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI..."
  - name: own
    type: static             # the service already runs there: probed, DNS moved, nothing
    machines:                # started or stopped (fencing is by DNS only)
      - address: 198.51.100.7
""",
}

_SERVICE = """\
services:
  web:
    domain: www.example.test # the DNS name users reach
    port: 8080
    run:
      command: "{python} -m http.server {port} --bind {address}"   # runs in the foreground
      setup: []              # commands run once on a new host before the service starts
      restore: []            # commands that bring the data back on a new host
    health:
      interval: 10s          # x fall = the time to notice; keep dns.ttl at most that
      timeout: 2s
      fall: 3                # failed rounds in a row before the host is declared down
      rise: 2                # good rounds in a row before it counts as up again
      http: {path: /, expect_status: [200]}
      # canary: http://192.0.2.1/   # something the watcher must reach to trust its own view
    policy:
      auto_failover: true
      # providers: [...]     # priority order; default: the order of `providers`
      ready_timeout: 10m     # a new host not healthy by then is destroyed; next provider
      max_moves_per_hour: 3  # circuit breaker against ping-pong
"""


def starter(provider: str) -> str:
    return _HEAD + _DNS_LOCAL + _PROVIDERS[provider] + _SERVICE
