#!/usr/bin/env bash
# Deploys a quantbox release to a cluster.
#
#   packaging/scripts/deploy.sh --target k8s --env production --tag 1.4.0
#   packaging/scripts/deploy.sh --target compose --tag 1.4.0
#
# k8s:     kubectl apply -k packaging/k8s/overlays/ENV, kubectl set image on
#          every quantbox Deployment, kubectl rollout status, health check.
#          Roll back with rollback.sh --target k8s (kubectl rollout undo).
# compose: docker-compose pull; the state file records the new tag as
#          current and the one it replaces as previous (before anything
#          changes, so a half-done deploy can still be rolled back); up -d
#          with the new tag (QUANTBOX_TAG); each node's /health; nginx reload
#          (it resolves the recreated nodes' addresses anew); health through
#          nginx. rollback.sh --target compose goes back to the previous tag.
#
# Options:
#   --target k8s|compose   required
#   --tag TAG              the release's image tag (required)
#   --image REPO           image repository (default: $QUANTBOX_IMAGE; for
#                          compose else QUANTBOX_IMAGE of packaging/compose/.env;
#                          else registry.example.com/quantbox)
#   --env staging|production   k8s overlay (default production)
#   --build                docker build + docker push the image first
#   --health-url URL       also check this URL (e.g. https://quantbox.example.com/health)
#   --dry-run              print the commands (one per line, "+ " and shell-quoted
#                          words) and run none
# Environment: COMPOSE_PROJECT (default quantbox), QUANTBOX_DEPLOY_STATE
# (default packaging/compose/.deploy-state), ROLLOUT_TIMEOUT (default 10m).
#
# rollback.sh sources this file for its helpers: nothing runs unless it is
# executed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

# The quantbox Deployments (k8s) and services (compose), in rollout order.
K8S_DEPLOYMENTS=(api worker-backtest worker-data scheduler trader)
COMPOSE_NODES=(api-1 api-2 api-3 worker-backtest worker-data scheduler trader-a trader-b)
COMPOSE_FILE=packaging/compose/docker-compose.yml
COMPOSE_PROJECT="${COMPOSE_PROJECT:-quantbox}"
STATE_FILE="${QUANTBOX_DEPLOY_STATE:-packaging/compose/.deploy-state}"
ROLLOUT_TIMEOUT="${ROLLOUT_TIMEOUT:-10m}"
DEFAULT_IMAGE=registry.example.com/quantbox

TARGET=""
TAG=""
IMAGE=""
ENV_NAME=production
BUILD=0
HEALTH_URL=""
DRY_RUN=0

die() { echo "$(basename "$0"): $*" >&2; exit 2; }
log() { printf '==> %s\n' "$*" >&2; }

# Runs a command, or in a dry run prints it.
run() {
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '+'
        printf ' %q' "$@"
        printf '\n'
    else
        "$@"
    fi
}

# Options shared by deploy.sh and rollback.sh; the caller handles the rest.
# Sets SHIFT to how many words were consumed (0: not a shared option).
parse_common() {
    SHIFT=0
    case "$1" in
        --target) [ $# -ge 2 ] || die "--target needs a value"; TARGET="$2"; SHIFT=2 ;;
        --image) [ $# -ge 2 ] || die "--image needs a value"; IMAGE="$2"; SHIFT=2 ;;
        --env) [ $# -ge 2 ] || die "--env needs a value"; ENV_NAME="$2"; SHIFT=2 ;;
        --health-url) [ $# -ge 2 ] || die "--health-url needs a value"; HEALTH_URL="$2"; SHIFT=2 ;;
        --dry-run) DRY_RUN=1; SHIFT=1 ;;
    esac
}

check_common() {
    case "$TARGET" in
        k8s|compose) ;;
        "") die "--target k8s|compose is required" ;;
        *) die "unknown target '$TARGET' (k8s or compose)" ;;
    esac
    cd "$ROOT"
    if [ "$TARGET" = k8s ]; then
        OVERLAY="packaging/k8s/overlays/$ENV_NAME"
        [ -f "$OVERLAY/kustomization.yaml" ] || die "no overlay $OVERLAY"
        # The namespace is the overlay's own, read from its kustomization.
        NAMESPACE="$(awk '$1 == "namespace:" { print $2; exit }' "$OVERLAY/kustomization.yaml")"
        [ -n "$NAMESPACE" ] || die "$OVERLAY/kustomization.yaml sets no namespace"
        [ -n "$IMAGE" ] || IMAGE="${QUANTBOX_IMAGE:-$DEFAULT_IMAGE}"
    else
        [ -f "$COMPOSE_FILE" ] || die "no $COMPOSE_FILE"
        [ -n "$IMAGE" ] || IMAGE="${QUANTBOX_IMAGE:-$(compose_env_value QUANTBOX_IMAGE)}"
        [ -n "$IMAGE" ] || IMAGE="$DEFAULT_IMAGE"
    fi
}

# A value from packaging/compose/.env (the operator's settings), if any.
compose_env_value() {
    local envfile
    envfile="$(dirname "$COMPOSE_FILE")/.env"
    [ -f "$envfile" ] || return 0
    sed -n "s/^$1=//p" "$envfile" | tail -n 1
}

# docker-compose with the project, the file and the image to run.
compose() {
    run env "QUANTBOX_IMAGE=$IMAGE" "QUANTBOX_TAG=$1" \
        docker-compose -p "$COMPOSE_PROJECT" -f "$COMPOSE_FILE" "${@:2}"
}

# The state file: current=TAG and previous=TAG lines.
state_get() {
    [ -f "$STATE_FILE" ] || return 0
    sed -n "s/^$1=//p" "$STATE_FILE" | tail -n 1
}

state_put() {
    local current="$1" previous="$2"
    if [ "$DRY_RUN" -eq 1 ]; then
        printf '# record in %s: current=%s previous=%s\n' "$STATE_FILE" "$current" "$previous"
        return 0
    fi
    printf 'image=%s\ncurrent=%s\nprevious=%s\n' "$IMAGE" "$current" "$previous" > "$STATE_FILE.tmp"
    mv "$STATE_FILE.tmp" "$STATE_FILE"
}

build_and_push() {
    run docker build -f packaging/docker/Dockerfile -t "$IMAGE:$1" .
    run docker push "$IMAGE:$1"
}

# Every node answers /health from inside its container, then nginx re-resolves
# the recreated nodes, then a request through nginx (its status port, or
# --health-url).
compose_health() {
    local tag="$1" node
    for node in "${COMPOSE_NODES[@]}"; do
        compose "$tag" exec -T "$node" curl -fsS -o /dev/null --retry 30 --retry-delay 2 \
            --retry-all-errors http://127.0.0.1:8000/health
    done
    compose "$tag" exec -T nginx nginx -s reload
    local port
    port="$(compose_env_value NGINX_STATUS_PORT)"
    run curl -fsS -o /dev/null --retry 15 --retry-delay 2 --retry-all-errors \
        "${HEALTH_URL:-http://127.0.0.1:${port:-8080}/health}"
}

k8s_rollout_status() {
    local d
    for d in "${K8S_DEPLOYMENTS[@]}"; do
        run kubectl -n "$NAMESPACE" rollout status "deployment/$d" --timeout="$ROLLOUT_TIMEOUT"
    done
}

k8s_set_image() {
    local d
    for d in "${K8S_DEPLOYMENTS[@]}"; do
        run kubectl -n "$NAMESPACE" set image "deployment/$d" "quantbox=$IMAGE:$1"
    done
}

# An api pod's /health from inside it, and --health-url from here if given.
k8s_health() {
    run kubectl -n "$NAMESPACE" exec deployment/api -c quantbox -- \
        curl -fsS -o /dev/null --retry 10 --retry-delay 2 --retry-all-errors http://127.0.0.1:8000/health
    if [ -n "$HEALTH_URL" ]; then
        run curl -fsS -o /dev/null --retry 15 --retry-delay 2 --retry-all-errors "$HEALTH_URL"
    fi
}

deploy_k8s() {
    log "k8s: $OVERLAY (namespace $NAMESPACE) -> $IMAGE:$TAG"
    [ "$BUILD" -eq 0 ] || build_and_push "$TAG"
    run kubectl apply -k "$OVERLAY"
    k8s_set_image "$TAG"
    k8s_rollout_status
    k8s_health
    log "deployed $IMAGE:$TAG; roll back with: packaging/scripts/rollback.sh --target k8s --env $ENV_NAME"
}

deploy_compose() {
    local current
    current="$(state_get current)"
    log "compose: project $COMPOSE_PROJECT, $IMAGE:${current:-?} -> $IMAGE:$TAG"
    [ "$BUILD" -eq 0 ] || build_and_push "$TAG"
    compose "$TAG" pull "${COMPOSE_NODES[@]}"
    # Recorded before the nodes change: if the deploy fails half-way,
    # rollback.sh still knows the tag to go back to.
    if [ "$current" = "$TAG" ]; then
        state_put "$TAG" "$(state_get previous)"
    else
        state_put "$TAG" "$current"
    fi
    compose "$TAG" up -d --remove-orphans
    compose_health "$TAG"
    log "deployed $IMAGE:$TAG; roll back with: packaging/scripts/rollback.sh --target compose"
}

deploy_main() {
    while [ $# -gt 0 ]; do
        parse_common "$@"
        if [ "$SHIFT" -gt 0 ]; then shift "$SHIFT"; continue; fi
        case "$1" in
            --tag) [ $# -ge 2 ] || die "--tag needs a value"; TAG="$2"; shift 2 ;;
            --build) BUILD=1; shift ;;
            -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown argument '$1' (see --help)" ;;
        esac
    done
    check_common
    [ -n "$TAG" ] || die "--tag TAG is required"
    if [ "$TARGET" = k8s ]; then deploy_k8s; else deploy_compose; fi
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    deploy_main "$@"
fi
