"""cluster.yaml (``ray up``): checked offline with Ray's own config code.

``ray up`` runs ``prepare_config`` (merge with the provider's defaults.yaml) and then
``validate_config`` (ray-schema.json and cross-field checks). Both run here without AWS credentials
or boto3. The AWS-specific bootstrap (key pair, IAM role, subnets, security group) is not run here,
because it needs boto3 and an AWS account. The commented local-provider variant at the end of the
file is extracted and checked the same way.
"""

from __future__ import annotations

import copy
import inspect
import ipaddress
import pathlib
import re
import shutil
import subprocess

import pytest
import yaml

ray = pytest.importorskip("ray")
pytest.importorskip("jsonschema")
from ray.autoscaler._private.util import prepare_config, validate_config  # noqa: E402

from raysfu.actors.api import create_worker  # noqa: E402
from raysfu.actors.webrtc_transport import SOCKET_BUFFER_BYTES  # noqa: E402

CLUSTER_YAML = pathlib.Path(__file__).resolve().parents[2] / "cluster.yaml"
BEGIN = "# ==== BEGIN local-provider variant ===="
END = "# ==== END local-provider variant ===="
MEDIA_LABEL = ("raysfu-role", "media")


@pytest.fixture(scope="module")
def text() -> str:
    return CLUSTER_YAML.read_text()


@pytest.fixture(scope="module")
def aws(text) -> dict:
    return yaml.safe_load(text)


def _local_variant(text: str) -> dict:
    """The marked commented block with each line's leading "# " (or bare "#") removed, parsed."""
    lines = text.splitlines()
    start, end = lines.index(BEGIN), lines.index(END)
    body = []
    for line in lines[start + 1:end]:
        assert line.startswith("#"), f"uncommented line inside the local variant: {line!r}"
        body.append(line[2:] if line.startswith("# ") else line[1:])
    return yaml.safe_load("\n".join(body))


@pytest.fixture(scope="module")
def local(text) -> dict:
    return _local_variant(text)


def _all_commands(cfg: dict) -> list[str]:
    out = []
    for key in ("initialization_commands", "setup_commands", "head_setup_commands",
                "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        out += cfg.get(key) or []
    return out


def _ray_start(cmds: list[str]) -> str:
    (cmd,) = [c for c in cmds if "ray start" in c]
    return cmd


def _int_flag(cmd: str, flag: str) -> int:
    m = re.search(rf"{flag}[= ](\d+)", cmd)
    assert m, f"{flag} missing in {cmd!r}"
    return int(m.group(1))


# ---- AWS config -----------------------------------------------------------------------------------

def test_aws_config_passes_rays_prepare_and_validate(aws):
    validate_config(copy.deepcopy(aws))            # the raw file against ray-schema.json
    prepared = prepare_config(copy.deepcopy(aws))  # what `ray up` does before bootstrapping
    validate_config(prepared)
    assert prepared["provider"]["type"] == "aws"
    # Our setup commands replace the defaults' (DLAMI conda, ray nightly wheel), not add to them.
    assert not any("anaconda3" in c or "ray-wheels" in c for c in prepared["head_setup_commands"])
    assert prepared["available_node_types"]["raysfu.head"]["max_workers"] == 0


def test_security_group_opens_rtc_udp_range_and_signalling_ports(aws):
    rules = aws["provider"]["security_group"]["IpPermissions"]

    def world(rule):
        return any(ipaddress.ip_network(r["CidrIp"]).prefixlen == 0 for r in rule.get("IpRanges", []))

    def covered(proto, lo, hi):
        return any(r["IpProtocol"] == proto and r["FromPort"] <= lo and hi <= r["ToPort"] and world(r)
                   for r in rules)

    params = inspect.signature(create_worker).parameters
    rtc_min, rtc_max = params["rtc_min_port"].default, params["rtc_max_port"].default
    assert covered("udp", rtc_min, rtc_max), "the default RTC port range must be open over UDP"
    assert covered("tcp", 8080, 8080) and covered("tcp", 443, 443)
    # Ray's own ports (GCS 6379, dashboard 8265, client 10001) stay closed to the world.
    assert not any(covered("tcp", p, p) for p in (6379, 8265, 10001))


def test_head_runs_without_cpus_and_launches_with_the_autoscaling_config(aws):
    head = aws["available_node_types"][aws["head_node_type"]]
    assert head["resources"].get("CPU") == 0
    assert "raysfu_media_slot" not in head["resources"]
    start = _ray_start(aws["head_start_ray_commands"])
    assert _int_flag(start, "--num-cpus") == 0
    assert "--head" in start and "--autoscaling-config=~/ray_bootstrap_config.yaml" in start
    assert "--dashboard-host=127.0.0.1" in start
    assert "boto3" in " ".join(aws["head_setup_commands"])  # the head's autoscaler launches workers


def test_media_node_type_is_marked_and_gets_a_public_address(aws):
    media = {k: v for k, v in aws["available_node_types"].items() if k != aws["head_node_type"]}
    assert len(media) == 1
    (node,) = media.values()
    assert node["labels"].get(MEDIA_LABEL[0]) == MEDIA_LABEL[1]
    assert node["resources"]["raysfu_media_slot"] == node["resources"]["CPU"] > 0
    assert node["node_config"]["InstanceType"].startswith("c7i.")
    assert 1 <= node["min_workers"] <= node["max_workers"] <= aws["max_workers"]
    # Public IP from a MapPublicIpOnLaunch subnet: Ray refuses SubnetId/SecurityGroupIds next to
    # NetworkInterfaces and then creates no security group, so the active config must not set them.
    assert "NetworkInterfaces" not in node["node_config"]
    assert not aws["provider"].get("use_internal_ips", False)


def test_start_commands_export_announced_address_from_imdsv2(aws):
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = _ray_start(aws[key])
        token_at = start.index("-X PUT http://169.254.169.254/latest/api/token")
        ip_at = start.index("X-aws-ec2-metadata-token: $IMDS_TOKEN")
        assert token_at < ip_at < start.index("meta-data/public-ipv4")
        export_at = start.index("export RAYSFU_ANNOUNCED_ADDRESS=")
        # Same shell command as `ray start`, before it: the raylet and its actors inherit it.
        assert export_at < start.index("ray start")
        assert start.index("export RAY_AUTH_MODE=token") < start.index("ray start")
        assert "ulimit -n 65536" in start


def test_setup_installs_raysfu_from_the_mount_with_the_local_ray_version(aws):
    assert aws["file_mounts"]["/home/ubuntu/raysfu"] == "."
    setup = " ".join(aws["setup_commands"])
    assert "pip install -q -e /home/ubuntu/raysfu" in setup
    pinned = re.search(r'ray\[default\]==([\w.]+)', setup)
    assert pinned and pinned.group(1) == ray.__version__
    assert {".venv", ".git", "node_modules"} <= set(aws["rsync_exclude"])
    assert not aws["rsync_filter"], ".gitignore filtering would drop demo/static/bundle.js"


def test_initialization_raises_socket_buffer_caps(aws):
    init = " ".join(aws["initialization_commands"])
    for key in ("net.core.rmem_max", "net.core.wmem_max"):
        m = re.search(rf"{re.escape(key)} = (\d+)", init)
        assert m and int(m.group(1)) >= SOCKET_BUFFER_BYTES, key
    assert "sysctl" in init


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_every_command_is_valid_bash(aws, local):
    for cmd in _all_commands(aws) + _all_commands(local):
        res = subprocess.run(["bash", "-n", "-c", cmd], capture_output=True, text=True)
        assert res.returncode == 0, f"{cmd!r}: {res.stderr}"


# ---- commented local-provider variant -------------------------------------------------------------

def test_local_variant_passes_rays_prepare_and_validate(local):
    assert local["provider"]["type"] == "local"
    assert "available_node_types" not in local and "head_node_type" not in local
    prepared = prepare_config(copy.deepcopy(local))
    validate_config(prepared)
    (node_type,) = prepared["available_node_types"]
    assert node_type == "local.cluster.node"
    workers = prepared["available_node_types"][node_type]
    assert workers["min_workers"] == workers["max_workers"] == len(local["provider"]["worker_ips"])


def test_local_provider_rejects_node_types(local):
    # Why the variant carries its roles in the start commands.
    bad = copy.deepcopy(local)
    bad["available_node_types"] = {"raysfu.media": {"resources": {}, "node_config": {}}}
    with pytest.raises(Exception, match="available_node_types"):
        prepare_config(bad)


def test_local_variant_roles_come_from_start_commands(local):
    head = _ray_start(local["head_start_ray_commands"])
    assert _int_flag(head, "--num-cpus") == 0
    assert f"--node-ip-address={local['provider']['head_ip']}" in head
    worker = _ray_start(local["worker_start_ray_commands"])
    assert f"--labels={MEDIA_LABEL[0]}={MEDIA_LABEL[1]}" in worker and "raysfu_media_slot" in worker
    for start in (head, worker):
        assert start.index("export RAYSFU_ANNOUNCED_ADDRESS=") < start.index("ray start")
        assert start.index("export RAY_AUTH_MODE=token") < start.index("ray start")
    assert "pip install -q -e /home/ubuntu/raysfu" in " ".join(local["setup_commands"])
    assert "net.core.rmem_max" in " ".join(local["initialization_commands"])
