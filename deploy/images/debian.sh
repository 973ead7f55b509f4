#!/bin/sh
# Images built from Debian's packages (mmdebstrap + docker import), for machines that cannot pull from a registry.
# Needs root, docker and mmdebstrap; apt's sources (or MIRROR) give the packages.
#   deploy/images/debian.sh python TAG       python3 with venv, ca-certificates, wget: a BASE for deploy/Dockerfile
#                                            (Debian 12 runs Python 3.11: build the wheelhouse for that Python)
#   deploy/images/debian.sh prometheus TAG   Debian's prometheus, run as nobody, data in /prometheus
set -eu
kind="${1:?python or prometheus}"
tag="${2:?image tag}"
suite="${DEBIAN_SUITE:-bookworm}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
set -- --variant=minbase --aptopt='APT::Install-Recommends "false"' \
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
  --dpkgopt='path-exclude=/usr/share/locale/*'
case "$kind" in
  python)
    mmdebstrap "$@" --include=python3,python3-venv,ca-certificates,wget "$suite" "$work/rootfs.tar" ${MIRROR:+"$MIRROR"}
    docker import --change 'CMD ["python3"]' "$work/rootfs.tar" "$tag"
    ;;
  prometheus)
    # shellcheck disable=SC2016  # $1 is the hook's own argument (the root), expanded by mmdebstrap's shell
    mmdebstrap "$@" --include=prometheus,wget \
      --customize-hook='mkdir -p "$1/prometheus" && chown 65534:65534 "$1/prometheus"' \
      "$suite" "$work/rootfs.tar" ${MIRROR:+"$MIRROR"}
    docker import --change 'USER nobody' --change 'WORKDIR /prometheus' --change 'EXPOSE 9090' \
      --change 'ENTRYPOINT ["/usr/bin/prometheus"]' "$work/rootfs.tar" "$tag"
    ;;
  *)
    echo "unknown image kind: $kind (python or prometheus)" >&2
    exit 2
    ;;
esac
