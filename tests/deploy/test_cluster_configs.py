"""The `ray up` cluster configs pass Ray's own validation and start what the docs promise."""

from __future__ import annotations

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


def test_the_arena_config_for_clusters_journals_to_redis():
    config = load_config(ROOT / "cluster" / "arena-cluster.yaml")
    assert config.ledger.journal.backend == "redis"
    assert config.ledger.journal.url == "env:TITAN_RAY_REDIS_URL"  # the secret stays in the environment
    assert config.data.path is None  # nothing read from one node's disk
    assert len(config.models) >= 4 and all(m.num_cpus >= 1 for m in config.models)
