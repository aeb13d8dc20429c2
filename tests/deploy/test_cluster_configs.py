"""The `ray up` cluster configs pass Ray's own validation and start what the docs promise."""

from __future__ import annotations

import ast
import copy
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config

from titan_ray.config import load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = sorted((ROOT / "cluster").glob("*.yaml"))
RAY_UP = [p for p in CONFIGS if "provider" in yaml.safe_load(p.read_text())]
METRICS_PORT = 8080  # the one the Helm chart, the k8s manifests and docs/deploy.md name too
THROUGHPUT_ENV = {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "RAY_SERVE_ENABLE_HA_PROXY": "1"}
# Serve's throughput-optimized mode: HAProxy on 8000 of every node, replicas' HTTP and gRPC servers
SERVE_PORTS = [(8000, 8000), (30000, 31000), (40000, 41000)]


def _prepared(path: Path) -> dict:
    """What `ray up` does first with a config file: fill in Ray's defaults, then validate."""
    config = prepare_config(copy.deepcopy(yaml.safe_load(path.read_text())))
    validate_config(config)
    return config


def test_there_is_a_local_and_a_cloud_config():
    providers = {yaml.safe_load(p.read_text())["provider"]["type"] for p in RAY_UP}
    assert providers == {"local", "aws"}


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
def test_config_passes_rays_validation(path):
    config = _prepared(path)
    assert config["cluster_name"] == "titan-ray"
    assert config["head_node_type"] in config["available_node_types"]


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
def test_every_command_is_valid_shell(path):
    config = _prepared(path)
    keys = ("initialization_commands", "setup_commands", "head_setup_commands", "worker_setup_commands",
            "head_start_ray_commands", "worker_start_ray_commands")
    for key in keys:
        for command in config[key]:
            check = subprocess.run(["bash", "-n", "-c", command], capture_output=True, text=True, check=False)
            assert check.returncode == 0, f"{path.name} {key}: {command!r}: {check.stderr}"


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
def test_setup_installs_the_package_on_every_node(path):
    config = _prepared(path)
    mounts = {remote.rstrip("/"): local for remote, local in config["file_mounts"].items()}
    assert mounts["~/titan-ray-dist"] == "./dist"  # where `pip wheel --no-deps -w dist .` puts the wheel
    assert mounts["~/.ray/auth_token"] == "~/.ray/auth_token"  # every node gets the cluster's token
    assert mounts["~/.titan-ray.env"] == "~/.titan-ray/cluster.env"  # and its secrets, outside the repo
    for key in ("head_setup_commands", "worker_setup_commands"):  # setup_commands merged into both
        installs = [c for c in config[key] if re.search(r"pip install .*~/titan-ray-dist/titan_ray-\*\.whl", c)]
        assert installs, f"{path.name}: {key} does not install the TitanRay wheel"
    for remote, folder in (("~/titan-ray-cluster", "cluster"), ("~/titan-ray-serve", "serve_configs")):
        assert (ROOT / mounts[remote]).resolve() == ROOT / folder  # configs the commands on the nodes name


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
def test_head_starts_with_dashboard_metrics_port_and_token_auth(path):
    config = _prepared(path)
    head = " ".join(config["head_start_ray_commands"])
    worker = " ".join(config["worker_start_ray_commands"])
    assert "ray start --head" in head
    assert "--include-dashboard=true" in head and "--dashboard-host=0.0.0.0" in head
    assert "--dashboard-port=8265" in head
    for command in (head, worker):
        assert f"--metrics-export-port={METRICS_PORT}" in command
        assert "RAY_AUTH_MODE=token" in command
        # the secrets enter `ray start`'s environment, which every actor and Serve replica inherits
        assert command.index(". ~/.titan-ray.env") < command.index("ray start")
    assert "--address=$RAY_HEAD_IP:6379" in worker


@pytest.mark.parametrize("path", RAY_UP, ids=lambda p: p.name)
@pytest.mark.parametrize("key", ["head_start_ray_commands", "worker_start_ray_commands"])
def test_ray_start_runs_serve_throughput_optimized(path, key, tmp_path):
    """Run the start commands with a stand-in `ray` that prints its environment: `ray start` on
    the head and on every worker must see both variables (the Serve controller, HAProxy and
    the replicas inherit them from it)."""
    config = _prepared(path)
    home, bin_dir = tmp_path / "home", tmp_path / "bin"
    (home / "titan-ray-venv" / "bin").mkdir(parents=True)
    bin_dir.mkdir()
    (home / ".titan-ray.env").write_text("TITAN_RAY_REDIS_URL=redis://10.0.0.10:6379/0\n")
    fake = "#!/bin/sh\n[ \"$1\" = start ] && env | grep '^RAY_SERVE_' | sort > \"$HOME/ray-start.env\"\nexit 0\n"
    for ray in (bin_dir / "ray", home / "titan-ray-venv" / "bin" / "ray"):
        ray.write_text(fake)
        ray.chmod(0o755)
    env = {"HOME": str(home), "PATH": f"{bin_dir}:/usr/bin:/bin", "RAY_HEAD_IP": "10.0.0.10"}
    for command in config[key]:
        subprocess.run(["bash", "-c", command], env=env, cwd=tmp_path, capture_output=True, check=False)
    seen = home / "ray-start.env"
    assert seen.exists(), f"{path.name} {key}: no `ray start`"
    started = dict(line.split("=", 1) for line in seen.read_text().splitlines())
    for name, value in THROUGHPUT_ENV.items():
        assert started.get(name) == value, f"{path.name} {key}: `ray start` runs without {name}={value}"


def _allows(rules: list[dict], low: int, high: int) -> bool:
    """Whether EC2 inbound rules (IpPermissions) let the cluster's nodes reach TCP low..high."""
    for rule in rules:
        if rule.get("IpProtocol") in ("-1", "all"):
            return True
        if rule.get("IpProtocol") == "tcp" and rule.get("FromPort", 0) <= low and high <= rule.get("ToPort", -1):
            return True
    return False


def _ray_default_intracluster_rules() -> list[dict]:
    """The inbound rules Ray's AWS provider gives its own security group between the cluster's nodes,
    read from Ray's source (that module imports boto3, which only the head needs): the constant
    fields of each rule, and UserIdGroupPairs (the rule's source: the cluster's own group)."""
    import ray.autoscaler

    source = Path(ray.autoscaler.__file__).parent / "_private" / "aws" / "config.py"
    name = "_create_default_intracluster_inbound_rules"
    (function,) = [n for n in ast.parse(source.read_text()).body if isinstance(n, ast.FunctionDef) and n.name == name]
    rules = []
    for node in ast.walk(function):
        if isinstance(node, ast.Dict) and any(isinstance(k, ast.Constant) and k.value == "IpProtocol"
                                              for k in node.keys):
            rule = {}
            for key, value in zip(node.keys, node.values, strict=True):
                try:
                    rule[key.value] = ast.literal_eval(value)
                except ValueError:
                    rule[key.value] = ...  # computed (the group ids)
            rules.append(rule)
    return rules


def test_aws_nodes_reach_each_others_serve_ports():
    """HAProxy on any node forwards to replicas on any node: 8000, 30000-31000 and 40000-41000
    must be open between the nodes. With no security group of its own, the config gets the one
    Ray's AWS provider creates, whose intra-cluster rule allows everything; a custom one must
    allow the ports itself."""
    config = _prepared(ROOT / "cluster" / "aws.yaml")
    custom = config["provider"].get("security_group")
    node_groups = [t["node_config"].get("SecurityGroupIds") for t in config["available_node_types"].values()]
    if not custom and not any(node_groups):
        rules = _ray_default_intracluster_rules()
        assert rules and all("UserIdGroupPairs" in r for r in rules)  # between the cluster's nodes
    else:
        assert not any(node_groups), "SecurityGroupIds: open the Serve ports in provider.security_group"
        rules = custom.get("IpPermissions", [])
    for low, high in SERVE_PORTS:
        assert _allows(rules, low, high), f"cluster/aws.yaml: nodes cannot reach TCP {low}-{high}"


def test_the_arena_config_for_clusters_journals_to_redis():
    config = load_config(ROOT / "cluster" / "arena-cluster.yaml")
    assert config.ledger.journal.backend == "redis"
    assert config.ledger.journal.url == "env:TITAN_RAY_REDIS_URL"  # the secret stays in the environment
    assert config.data.path is None  # nothing read from one node's disk
    assert len(config.models) >= 4 and all(m.num_cpus >= 1 for m in config.models)
