# The DaemonSet's image: the static bulwark binary on distroless/static (no shell, no libc, CA certificates for
# feeds over HTTPS). Build the binary first, then the image (docker needs only this file and bin/bulwark):
#   make build VERSION=1.2.3 && docker build -t ghcr.io/bulwark-filter/bulwark:1.2.3 .
# bin/bulwark is built with CGO_ENABLED=0, so it runs without libc.
# The agent runs as root with the capabilities the DaemonSet grants (configs/kubernetes/daemonset.yaml).
FROM gcr.io/distroless/static-debian12
COPY bin/bulwark /usr/local/bin/bulwark
ENTRYPOINT ["/usr/local/bin/bulwark"]
CMD ["run", "--config", "/etc/bulwark/bulwark.hcl"]
