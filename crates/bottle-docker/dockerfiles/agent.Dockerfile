# The agent: node, git, curl, CA roots and Claude Code, user uid 1000.
# With --base-image, anything the base already has is kept as it is.
ARG BASE_IMAGE=node:22-bookworm-slim
FROM ${BASE_IMAGE}
USER root
RUN set -e; missing=""; \
    command -v git >/dev/null 2>&1 || missing="$missing git"; \
    command -v curl >/dev/null 2>&1 || missing="$missing curl"; \
    [ -e /etc/ssl/certs/ca-certificates.crt ] || missing="$missing ca-certificates"; \
    if ! command -v claude >/dev/null 2>&1 && ! command -v npm >/dev/null 2>&1; then \
      missing="$missing nodejs npm"; \
    fi; \
    if [ -n "$missing" ]; then \
      apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing \
      && rm -rf /var/lib/apt/lists/*; \
    fi
# A user with uid 1000, a home and a shell; images such as node's have one.
RUN set -e; \
    if ! getent passwd 1000 >/dev/null; then \
      (getent group 1000 >/dev/null || groupadd -g 1000 node) && \
      useradd -m -u 1000 -g 1000 -s /bin/bash node; \
    fi; \
    home=$(getent passwd 1000 | cut -d: -f6); \
    mkdir -p /workspace "$home/.local/bin" "$home/.claude" && \
    chown 1000:1000 /workspace "$home/.local" "$home/.local/bin" "$home/.claude"
# Claude Code from npm unless the base already has a `claude`; its native
# binary must sit at ~/.local/bin/claude or it warns that it is broken.
RUN set -e; home=$(getent passwd 1000 | cut -d: -f6); \
    if command -v claude >/dev/null 2>&1; then \
      ln -sf "$(command -v claude)" "$home/.local/bin/claude"; \
    else \
      npm install -g @anthropic-ai/claude-code && \
      ln -sf "$(command -v claude)" "$home/.local/bin/claude"; \
    fi; \
    chown -h 1000:1000 "$home/.local/bin/claude"
USER 1000
WORKDIR /workspace
