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
# Runs as a user of its own with no capabilities; the engine lets it bind
# port 53 by lowering net.ipv4.ip_unprivileged_port_start in its own
# network namespace. Not nobody (65534): a host process running as nobody
# would share the uid, and with it /proc access to the sidecar's git
# children (their environment holds the gate's tokens) and its tmpfs (the
# SSH keys). 65200 is in the range Debian reserves and never allocates
# (65000-65533), and below 65536 so user-namespaced and rootless engines
# map it. ssh needs the uid in passwd (a last line without its newline is
# ended first, or the entry would join it).
RUN sed -i -e '$a\' /etc/passwd /etc/group \
    && echo 'claude-bottle-sidecar:x:65200:65200:claude-bottle sidecar:/tmp:/usr/sbin/nologin' >> /etc/passwd \
    && echo 'claude-bottle-sidecar:x:65200:' >> /etc/group
USER 65200:65200
ENTRYPOINT ["/usr/local/bin/claude-bottle", "sidecar"]
