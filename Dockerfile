# The jobsd runtime image: the static binary that `make image` builds
# (CGO_ENABLED=0) and a CA bundle for TLS to AWS, on an empty base, so the
# build pulls nothing. No shell, no package manager, nothing writable: the
# container runs read-only. The worker's document parser re-executes this
# same binary (internal/sandbox, through /proc/self/exe) and passes the
# document over pipes, so it needs neither a shell nor a /tmp.
#
# Build with `make image` (IMAGE=jobsd:dev); it puts bin/jobsd and
# bin/ca-certificates.crt in the context first.
FROM scratch

COPY bin/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY bin/jobsd /usr/local/bin/jobsd

# A numeric user without a passwd entry: Kubernetes' runAsNonRoot can check
# it, and nothing in the image runs as root.
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/jobsd"]
CMD ["serve"]
