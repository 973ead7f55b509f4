#!/bin/sh
# head:   start a Ray head (no dashboard exposed beyond the container), deploy $SERVE_CONFIG, stay up.
# worker: join $RAY_HEAD_ADDRESS and stay up.
# Both export Ray metrics on :8080 for Prometheus. RAY_AUTH_MODE/RAY_AUTH_TOKEN come from the environment.
set -eu
role="${1:-head}"
case "$role" in
  head)
    ray start --head --port=6379 --dashboard-host=127.0.0.1 --metrics-export-port=8080 \
      --num-gpus="${RAY_NUM_GPUS:-0}" --disable-usage-stats
    serve deploy "$SERVE_CONFIG"
    trap 'serve shutdown -y || true; ray stop; exit 0' TERM INT
    while ray status >/dev/null 2>&1; do sleep 10 & wait $!; done
    ;;
  worker)
    trap 'ray stop; exit 0' TERM INT
    ray start --address="${RAY_HEAD_ADDRESS:?set RAY_HEAD_ADDRESS}" --metrics-export-port=8080 --disable-usage-stats
    while ray status >/dev/null 2>&1; do sleep 10 & wait $!; done
    ;;
  *)
    exec "$@"
    ;;
esac
