# The sidecar: git, ssh and CA roots, plus the claude-bottle binary itself.
# Built by `claude-bottle build --sidecar` from its own static executable.
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
# Install only what the base lacks, so a base that already has them builds
# with no network at all.
RUN set -e; missing=""; \
    command -v git >/dev/null 2>&1 || missing="$missing git"; \
    command -v ssh >/dev/null 2>&1 || missing="$missing openssh-client"; \
    [ -e /etc/ssl/certs/ca-certificates.crt ] || missing="$missing ca-certificates"; \
    if [ -n "$missing" ]; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing \
      && rm -rf /var/lib/apt/lists/*; \
    fi
# The static executable resolves upstream names with glibc, which would
# load any NSS module the base's nsswitch.conf names (a module of another
# glibc can crash it): only the built-in `files` and `dns` sources here.
RUN printf '%s\n' 'passwd: files' 'group: files' 'shadow: files' 'hosts: files dns' \
      'networks: files' 'protocols: files' 'services: files' 'ethers: files' 'rpc: files' \
      > /etc/nsswitch.conf
COPY claude-bottle /usr/local/bin/claude-bottle
# Runs as nobody with no capabilities; the engine lets it bind port 53 by
# lowering net.ipv4.ip_unprivileged_port_start in its own network namespace.
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/claude-bottle", "sidecar"]
