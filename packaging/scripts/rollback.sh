#!/usr/bin/env bash
# Rolls a quantbox cluster back, per target (the seed's rollback called
# kubectl from its docker branch; here each target uses only its own tool).
#
#   packaging/scripts/rollback.sh --target k8s --env production
#   packaging/scripts/rollback.sh --target compose
#
# k8s:     kubectl rollout undo of every quantbox Deployment (to the revision
#          before the last deploy), or with --to-tag TAG kubectl set image to
#          that tag; then rollout status and the health check.
# compose: docker-compose up -d with the previous tag recorded by deploy.sh
#          in the state file (or --to-tag TAG), the health checks, and the
#          state file updated (current <-> previous: running it again rolls
#          forward).
#
# Options: --target k8s|compose (required), --to-tag TAG, --env, --image,
# --health-url, --dry-run: as for deploy.sh.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=deploy.sh
source "$(dirname "${BASH_SOURCE[0]}")/deploy.sh"

TO_TAG=""

rollback_k8s() {
    log "k8s: rolling back $OVERLAY (namespace $NAMESPACE)${TO_TAG:+ to $IMAGE:$TO_TAG}"
    local d
    if [ -n "$TO_TAG" ]; then
        k8s_set_image "$TO_TAG"
    else
        for d in "${K8S_DEPLOYMENTS[@]}"; do
            run kubectl -n "$NAMESPACE" rollout undo "deployment/$d"
        done
    fi
    k8s_rollout_status
    k8s_health
}

rollback_compose() {
    local current target
    current="$(state_get current)"
    target="${TO_TAG:-$(state_get previous)}"
    [ -n "$target" ] || die "no previous tag in $STATE_FILE (deploy.sh records it); name one with --to-tag TAG"
    log "compose: project $COMPOSE_PROJECT, $IMAGE:${current:-?} -> $IMAGE:$target"
    state_put "$target" "$current"
    compose "$target" up -d --remove-orphans
    compose_health "$target"
}

rollback_main() {
    while [ $# -gt 0 ]; do
        parse_common "$@"
        if [ "$SHIFT" -gt 0 ]; then shift "$SHIFT"; continue; fi
        case "$1" in
            --to-tag) [ $# -ge 2 ] || die "--to-tag needs a value"; TO_TAG="$2"; shift 2 ;;
            -h|--help) sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
            *) die "unknown argument '$1' (see --help)" ;;
        esac
    done
    check_common
    if [ "$TARGET" = k8s ]; then rollback_k8s; else rollback_compose; fi
}

rollback_main "$@"
