#!/bin/sh
# Entry point of the image for docker compose (KubeRay replaces it with its own `ray start` command).
# head:   start a Ray head (dashboard on 127.0.0.1 only), deploy $SERVE_CONFIG, stay up.
# worker: wait for the head's GCS, join $RAY_HEAD_ADDRESS, stay up.
# Both export Ray metrics on :8080 for Prometheus and offer the custom Ray resources in $RAY_RESOURCES
# (JSON; the Serve config places each deployment by them), with $RAY_NUM_CPUS logical CPUs where it is set
# (Ray counts the cores the container sees otherwise). The Ray token comes from RAY_AUTH_MODE and
# RAY_AUTH_TOKEN_PATH (a compose secret), the Ray settings from the image's ENV.
# SIGTERM (docker stop) drains first (python -m service.daemon.drain): the gateways answer what they hold, then Ray stops.
set -eu
role="${1:-head}"
resources="${RAY_RESOURCES:-{\}}"
case "$role" in
  head)
    ray start --head --port=6379 --dashboard-host=127.0.0.1 --metrics-export-port=8080 \
      --num-gpus="${RAY_NUM_GPUS:-0}" --resources="$resources" --disable-usage-stats \
      ${RAY_NUM_CPUS:+"--num-cpus=$RAY_NUM_CPUS"}
    trap 'python -m service.daemon.drain || true; ray stop; exit 0' TERM INT
    serve deploy "$SERVE_CONFIG"
    while ray status >/dev/null 2>&1; do sleep 10 & wait $!; done
    ;;
  worker)
    address="${RAY_HEAD_ADDRESS:?set RAY_HEAD_ADDRESS}"
    # Compose stops a worker before the head it depends on: its classifiers go once the gateways hold nothing.
    trap 'python -m service.daemon.drain --address "$address" --leave-serve-running || true; ray stop; exit 0' TERM INT
    # The head's health check waits for the whole app, which needs this worker: wait for its GCS only.
    until ray health-check --address "$address" >/dev/null 2>&1; do
      echo "waiting for the Ray head at $address"
      sleep 5 & wait $!
    done
    ray start --address="$address" --metrics-export-port=8080 --resources="$resources" --disable-usage-stats \
      ${RAY_NUM_CPUS:+"--num-cpus=$RAY_NUM_CPUS"}
    while ray status >/dev/null 2>&1; do sleep 10 & wait $!; done
    ;;
  *)
    exec "$@"
    ;;
esac
