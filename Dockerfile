# The image `nasiko-nb schedule` runs as a CronJob: the package, its runbooks and the `nasiko-nb` CLI.
# Build from the repository root:  docker build -t nasiko-nb:0.1.0 .
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NASIKO_RUNBOOKS=/opt/nasiko-nb/runbooks \
    MPLBACKEND=Agg \
    HOME=/tmp

WORKDIR /opt/nasiko-nb
COPY pyproject.toml README.md ./
COPY nasiko_nb/ nasiko_nb/
RUN pip install --no-cache-dir . && rm -rf build nasiko_nb.egg-info
COPY runbooks/ runbooks/

# Numeric, so the kubelet can verify runAsNonRoot; HOME is /tmp, the pod's only writable path.
RUN groupadd --gid 10001 nasiko \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin nasiko
USER 10001:10001
WORKDIR /tmp

ENTRYPOINT ["nasiko-nb"]
CMD ["list"]
