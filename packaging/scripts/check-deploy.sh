#!/usr/bin/env bash
# Checks the cluster deployment assets offline, each with the real tool:
#   ShellCheck            deploy.sh, rollback.sh, this script, the compose
#                         PostgreSQL scripts
#   docker-compose        `config -q` of packaging/compose/docker-compose.yml
#                         (Debian's docker-compose 1.29)
#   nginx -t              packaging/nginx/quantbox-cluster.conf (throwaway
#                         certificate, upstream names mapped to 127.0.0.1)
#   kubectl kustomize     every overlay of packaging/k8s renders
#   kubernetes-validate   --strict, the rendered objects and the Secret
#                         template against the Kubernetes $K8S_VERSION schemas
#   promtool              prometheus-cluster.yml with its file_sd targets, the
#                         rules and their unit tests, the dashboard's queries
#   yamllint              every YAML file of compose, k8s and monitoring
# and cross-checks (python3 over `docker-compose config` and the rendered
# manifests): roles, node lists, health checks and probes against
# QUANTBOX_BIND's port, labels/selectors, Service/PDB/HPA/Ingress targets,
# secrets only from files, nginx upstreams and Prometheus targets against the
# compose services; deploy.sh / rollback.sh --dry-run output per target,
# compared with what they run against stand-in kubectl / docker-compose /
# curl commands.
#
# With QUANTBOX_BIN=/path/to/quantbox, also: every environment key given to a
# quantbox container is one `quantbox config env-keys` prints. Without it
# that one check is skipped (said loudly).
#
# Installs nothing. CI installs the tools with:
#   apt-get install -y --no-install-recommends docker-compose nginx-light \
#       prometheus shellcheck yamllint openssl python3-yaml   (kubectl: the machine's)
#   pip install kubernetes-validate==1.32.0
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
K8S_VERSION="${K8S_VERSION:-1.30.0}"
OVERLAYS=(staging production)
COMPOSE_DIR=packaging/compose
COMPOSE_FILE="$COMPOSE_DIR/docker-compose.yml"
NGINX_CONF=packaging/nginx/quantbox-cluster.conf
PROM_DIR=packaging/monitoring/prometheus

step() { printf '\n--- %s\n' "$*"; }
fail() { echo "FAIL: $*" >&2; exit 1; }

step "tools"
missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$1 ($2)"); }
need shellcheck "apt-get install shellcheck"
need docker-compose "apt-get install docker-compose"
need nginx "apt-get install nginx-light"
need openssl "apt-get install openssl"
need kubectl "kubectl, e.g. from pkgs.k8s.io"
need kubernetes-validate "pip install kubernetes-validate==1.32.0"
need promtool "apt-get install prometheus"
need python3 "apt-get install python3"
need yamllint "apt-get install yamllint"
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import yaml' 2>/dev/null; then
    missing+=("python3 module yaml (apt-get install python3-yaml)")
fi
if [ ${#missing[@]} -gt 0 ]; then
    printf 'missing tool: %s\n' "${missing[@]}" >&2
    fail "install the tools above (this script installs nothing)"
fi
echo "all tools present; Kubernetes schemas $K8S_VERSION"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

step "shellcheck"
# Every shell script of the repository.
shellcheck -x packaging/scripts/*.sh packaging/bench/*.sh .ci/run
shellcheck -s sh "$COMPOSE_DIR"/postgres/*.sh
echo ok

step "yamllint (duplicate keys and syntax, which the YAML loaders let pass)"
yamllint -s -d '{extends: relaxed, rules: {line-length: disable}}' \
    "$COMPOSE_DIR" packaging/k8s "$PROM_DIR" packaging/monitoring/alertmanager packaging/monitoring/grafana/provisioning
echo ok

step "docker-compose config -q (with .env.example, and with the built-in defaults)"
# Without an env file the defaults in the compose file apply; the operator's
# own packaging/compose/.env must not decide the result, hence an empty one.
: > "$WORK/empty.env"
for envfile in "$COMPOSE_DIR/.env.example" "$WORK/empty.env"; do
    docker-compose -f "$COMPOSE_FILE" --env-file "$envfile" config -q 2>"$WORK/compose.err" \
        || fail "docker-compose config ($envfile): $(cat "$WORK/compose.err")"
    if grep -qi warn "$WORK/compose.err"; then
        fail "docker-compose config warns ($envfile): $(cat "$WORK/compose.err")"
    fi
done
docker-compose -f "$COMPOSE_FILE" --env-file "$COMPOSE_DIR/.env.example" config > "$WORK/compose.yml"
echo ok

# deploy.sh's lists of nodes and Deployments, for the cross-checks.
# shellcheck source-path=SCRIPTDIR source=deploy.sh
DEPLOY_LISTS="$(source packaging/scripts/deploy.sh; echo "${COMPOSE_NODES[*]}"; echo "${K8S_DEPLOYMENTS[*]}")"

step "compose cross-check: nodes, roles, health checks, secrets, nginx upstreams, Prometheus targets"
python3 - "$WORK/compose.yml" "$COMPOSE_DIR/.env.example" "$NGINX_CONF" \
    "$PROM_DIR/targets/quantbox-compose.yml" "$WORK/compose-env-keys" "$DEPLOY_LISTS" <<'PY'
import os, re, sys, urllib.parse, yaml
compose_path, env_example, nginx_conf, targets_path, keys_out, deploy_lists = sys.argv[1:7]
cfg = yaml.safe_load(open(compose_path))
services = cfg["services"]
errors = []
def err(msg): errors.append(msg)

env_defaults = dict(l.split("=", 1) for l in open(env_example).read().splitlines()
                    if l and not l.startswith("#"))
image_repo = env_defaults["QUANTBOX_IMAGE"]
nodes = {n: s for n, s in services.items() if s.get("image", "").rsplit(":", 1)[0] == image_repo}
ROLES = {"api", "worker", "scheduler", "trader"}

# Every service: a restart policy, a health check, named volumes for state.
for name, s in services.items():
    if s.get("restart") not in ("unless-stopped", "always", "on-failure"):
        err(f"{name}: no restart policy")
    hc = s.get("healthcheck")
    if not hc or hc.get("disable") or not hc.get("test"):
        err(f"{name}: no health check")
    for v in s.get("volumes", []):
        src, _, rest = v.partition(":")
        if src.startswith("/"):
            if not rest.endswith(":ro"):
                err(f"{name}: bind mount {v} is not read-only (state belongs in named volumes)")
            if not os.path.exists(src):
                err(f"{name}: bind mount source {src} does not exist")
        elif src not in cfg.get("volumes", {}):
            err(f"{name}: volume {src} is not declared")

# No secret in the environment of any service: secrets come from files.
SECRETISH = re.compile(r"(PASSWORD|SECRET|TOKEN|DATABASE_URL|DATABASE_READ_URL|REDIS_URL|PASS)$")
for name, s in services.items():
    for k in s.get("environment", {}) or {}:
        if SECRETISH.search(k) and not (k.endswith("_FILE") or k.endswith("__FILE")):
            err(f"{name}: {k} in the environment: use a *_FILE secret")
    for k, v in (s.get("environment") or {}).items():
        if (k.endswith("_FILE") or k.endswith("__FILE")) and v and v.startswith("/run/secrets/"):
            mounted = {}
            for sec in s.get("secrets", []):
                src = sec if isinstance(sec, str) else sec["source"]
                tgt = f"/run/secrets/{src}" if isinstance(sec, str) else sec.get("target", f"/run/secrets/{src}")
                mounted[tgt] = src
            if v not in mounted:
                err(f"{name}: {k}={v} is not a secret mounted in the service")
for sname, sdef in (cfg.get("secrets") or {}).items():
    f = sdef.get("file", "")
    if "/packaging/compose/secrets/" not in f:
        err(f"secret {sname}: file {f} is outside packaging/compose/secrets/")

# quantbox nodes: roles, node ids, health check on QUANTBOX_BIND's port.
expected_nodes, expected_deployments = (l.split() for l in deploy_lists.splitlines())
if sorted(nodes) != sorted(expected_nodes):
    err(f"quantbox services {sorted(nodes)} differ from deploy.sh's COMPOSE_NODES {sorted(expected_nodes)}")
by_role = {r: [] for r in ROLES}
node_ids = []
keys = set()
bind_port = {}
for name, s in nodes.items():
    env = s.get("environment") or {}
    keys.update(env)
    roles = [r.strip() for r in str(env.get("QUANTBOX_ROLE", "")).split(",") if r.strip()]
    if not roles or not set(roles) <= ROLES:
        err(f"{name}: QUANTBOX_ROLE {env.get('QUANTBOX_ROLE')!r} is not a list of {sorted(ROLES)}")
    for r in roles:
        by_role.setdefault(r, []).append(name)
    node_ids.append(env.get("QUANTBOX_CLUSTER__NODE_ID"))
    if not env.get("DATABASE_URL_FILE") or not env.get("REDIS_URL_FILE"):
        err(f"{name}: not in cluster mode (DATABASE_URL_FILE and REDIS_URL_FILE)")
    if not (env.get("SECRET_KEY_FILE") or env.get("JWT_SECRET_KEY_FILE")):
        err(f"{name}: no shared signing secret (SECRET_KEY_FILE)")
    bind = env.get("QUANTBOX_BIND", "")
    m = re.fullmatch(r"(.+):(\d+)", bind)
    if not m:
        err(f"{name}: QUANTBOX_BIND {bind!r} is not host:port")
        continue
    port = int(m.group(2))
    bind_port[name] = port
    test = s["healthcheck"]["test"]
    urls = [w for w in (test if isinstance(test, list) else test.split()) if "://" in w]
    if len(urls) != 1:
        err(f"{name}: health check {test} names no single URL")
        continue
    u = urllib.parse.urlparse(urls[0])
    if u.path != "/health" or u.port != port or u.hostname not in ("127.0.0.1", "localhost"):
        err(f"{name}: health check {urls[0]} is not /health on this node's port {port}")
    data_dir = env.get("QUANTBOX_DATA_DIR")
    mounts = {v.split(":")[1]: v.split(":")[0] for v in s.get("volumes", [])}
    if data_dir not in mounts or mounts[data_dir].startswith("/"):
        err(f"{name}: QUANTBOX_DATA_DIR {data_dir} is not a named volume")
    if not s.get("read_only"):
        err(f"{name}: root file system not read-only")
if len(node_ids) != len(set(node_ids)) or None in node_ids:
    err(f"node ids not unique: {node_ids}")
if len(by_role["api"]) != 3:
    err(f"expected 3 api nodes, found {by_role['api']}")
if len(by_role["trader"]) != 2:
    err(f"expected 2 traders (active + standby), found {by_role['trader']}")
if len(by_role["scheduler"]) != 1:
    err(f"expected 1 scheduler, found {by_role['scheduler']}")
queues = {}
for w in by_role["worker"]:
    env = nodes[w]["environment"]
    b, d = int(env.get("QUANTBOX_QUEUES__BACKTEST", 2)), int(env.get("QUANTBOX_QUEUES__DATA", 4))
    queues[w] = (b, d)
if not any(b > 0 and d == 0 for b, d in queues.values()):
    err(f"no backtest-only worker: {queues}")
if not any(d > 0 and b == 0 for b, d in queues.values()):
    err(f"no data-only worker: {queues}")
nginx = services.get("nginx", {})
for dep in by_role["api"] + by_role["trader"]:
    if dep not in (nginx.get("depends_on") or {}):
        err(f"nginx does not wait for {dep} (it resolves upstream names at start)")
open(keys_out, "w").write("\n".join(sorted(keys)) + "\n")

# nginx upstreams: the api nodes and the traders, on their bind ports.
conf = open(nginx_conf).read()
ups = {m.group(1): re.findall(r"^\s*server\s+([\w.-]+:\d+)", m.group(2), re.M)
       for m in re.finditer(r"upstream\s+(\w+)\s*\{(.*?)\}", conf, re.S)}
want_api = sorted(f"{n}:{bind_port[n]}" for n in by_role["api"] if n in bind_port)
want_trader = sorted(f"{n}:{bind_port[n]}" for n in by_role["trader"] if n in bind_port)
for up, want in (("quantbox_api", want_api), ("quantbox_ws", want_api), ("quantbox_trader", want_trader)):
    if sorted(ups.get(up, [])) != want:
        err(f"nginx upstream {up} {sorted(ups.get(up, []))} != {want}")
for path in ("trading", "strategies"):
    m = re.search(r"location ~ \^/api/v1/%s\(/\|\$\) \{(.*?)\n    \}" % path, conf, re.S)
    if not m:
        err(f"nginx: no location for /api/v1/{path}")
        continue
    body = m.group(1)
    if "proxy_pass http://quantbox_trader;" not in body:
        err(f"nginx: /api/v1/{path} does not go to the traders")
    nu = re.search(r"proxy_next_upstream\s+([^;]+);", body)
    if not nu or not {"error", "timeout", "http_503"} <= set(nu.group(1).split()):
        err(f"nginx: /api/v1/{path} does not retry the next trader on error timeout http_503")
for zone in ("zone=api:10m rate=10r/s", "zone=trading:10m rate=5r/s"):
    if zone not in conf:
        err(f"nginx: the seed's limit_req {zone} is missing")
if "client_max_body_size 50m;" not in conf:
    err("nginx: client_max_body_size is not 50m")

# Prometheus file_sd targets: exactly the quantbox nodes, with their roles.
groups = yaml.safe_load(open(targets_path))
seen = {}
for g in groups:
    for t in g["targets"]:
        seen[t] = g.get("labels", {}).get("role")
want = {f"{n}:{bind_port[n]}": nodes[n]["environment"]["QUANTBOX_ROLE"] for n in bind_port}
if seen != want:
    err(f"Prometheus targets {seen} != compose nodes {want}")

if errors:
    print("\n".join("  - " + e for e in errors), file=sys.stderr)
    sys.exit(f"compose cross-check: {len(errors)} problem(s)")
print(f"ok: {len(nodes)} quantbox nodes ({', '.join(f'{r}={len(v)}' for r, v in sorted(by_role.items()))}), "
      f"{len(services)} services")
PY

step "nginx -t (cluster config)"
# The upstream servers are compose service names, unknown to this machine's
# resolver: map each to 127.0.0.1 (same port) for the test.
# shellcheck source=packaging/scripts/nginx-check.sh
. packaging/scripts/nginx-check.sh
nginx_check "$NGINX_CONF" "$WORK/nginx" \
    's/^\(\s*server\s\+\)[A-Za-z][A-Za-z0-9-]*:\([0-9]\+\)/\1127.0.0.1:\2/'
grep -q 'server 127.0.0.1:8000' "$WORK/nginx/server.conf" || fail "upstream mapping did not apply"
echo ok

step "kubectl kustomize + kubernetes-validate --strict (Kubernetes $K8S_VERSION)"
for o in "${OVERLAYS[@]}"; do
    kubectl kustomize "packaging/k8s/overlays/$o" > "$WORK/k8s-$o.yaml" || fail "overlay $o does not render"
    kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$WORK/k8s-$o.yaml" \
        || fail "overlay $o: rendered objects do not validate"
    echo "overlay $o: $(grep -c '^kind:' "$WORK/k8s-$o.yaml") objects valid"
done
kubernetes-validate --strict --quiet -k "$K8S_VERSION" packaging/k8s/base/secret.template.yaml \
    || fail "the Secret template does not validate"
echo "secret template valid"

step "k8s cross-check: labels/selectors, Service/PDB/HPA/Ingress targets, probes and ports, security, secrets"
python3 - "$WORK/compose-env-keys" "$DEPLOY_LISTS" packaging/k8s/base/secret.template.yaml \
    packaging/k8s/base/kustomization.yaml "${OVERLAYS[@]/#/$WORK/k8s-}" <<'PY'
import re, sys, yaml
keys_out, deploy_lists, secret_template, base_kustomization = sys.argv[1:5]
rendered = [p + ".yaml" for p in sys.argv[5:]]
errors = []
def err(msg): errors.append(msg)
_, expected_deployments = (l.split() for l in deploy_lists.splitlines())
keys = set()

def matches(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())

# The template carries keys, never values, and is not applied by the base.
tmpl = yaml.safe_load(open(secret_template))
for k, v in {**(tmpl.get("stringData") or {}), **(tmpl.get("data") or {})}.items():
    if v:
        err(f"secret template: {k} has a value")
secret_keys = set((tmpl.get("stringData") or {}) | (tmpl.get("data") or {}))
if "secret.template.yaml" in open(base_kustomization).read().split("resources:")[1].split("\n\n")[0]:
    err("the base applies the Secret template")

for path in rendered:
    overlay = path.rsplit("k8s-", 1)[1][:-5]
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    kinds = {}
    for d in docs:
        kinds.setdefault(d["kind"], {})[d["metadata"]["name"]] = d
    where = f"[{overlay}]"
    nss = [d for d in docs if d["kind"] == "Namespace"]
    if len(nss) != 1:
        err(f"{where} expected one Namespace, found {len(nss)}")
        continue
    ns = nss[0]["metadata"]["name"]
    for d in docs:
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != ns:
            err(f"{where} {d['kind']}/{d['metadata']['name']} not in namespace {ns}")
    cms = kinds.get("ConfigMap", {})
    deps = kinds.get("Deployment", {})
    if sorted(deps) != sorted(expected_deployments):
        err(f"{where} Deployments {sorted(deps)} != deploy.sh's K8S_DEPLOYMENTS {sorted(expected_deployments)}")
    pod_labels = {}
    for name, d in deps.items():
        spec = d["spec"]
        tpl = spec["template"]
        labels = tpl["metadata"].get("labels", {})
        pod_labels[name] = labels
        sel = spec["selector"].get("matchLabels", {})
        if not matches(sel, labels) or spec["selector"].get("matchExpressions"):
            err(f"{where} Deployment {name}: selector {sel} does not match its pod labels {labels}")
        pod = tpl["spec"]
        psc = pod.get("securityContext", {})
        if not psc.get("runAsNonRoot") or not psc.get("runAsUser"):
            err(f"{where} {name}: pod not non-root")
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        cs = {c["name"]: c for c in pod["containers"]}
        if "quantbox" not in cs:
            err(f"{where} {name}: no container named quantbox (deploy.sh sets its image)")
            continue
        c = cs["quantbox"]
        csc = c.get("securityContext", {})
        if not csc.get("readOnlyRootFilesystem") or csc.get("allowPrivilegeEscalation") is not False \
                or "ALL" not in csc.get("capabilities", {}).get("drop", []):
            err(f"{where} {name}: container not read-only / no privilege escalation / capabilities dropped")
        res = c.get("resources", {})
        if not all(res.get(a, {}).get(b) for a in ("requests", "limits") for b in ("cpu", "memory")):
            err(f"{where} {name}: resources requests/limits incomplete: {res}")
        # The environment: envFrom ConfigMaps, then env (later wins).
        env = {}
        for ef in c.get("envFrom", []):
            ref = ef.get("configMapRef", {}).get("name")
            if ref not in cms:
                err(f"{where} {name}: envFrom ConfigMap {ref} not rendered")
                continue
            env.update(cms[ref].get("data", {}))
        for e in c.get("env", []):
            env[e["name"]] = e.get("value", "<from " + ",".join(e.get("valueFrom", {})) + ">")
        keys.update(env)
        roles = [r for r in env.get("QUANTBOX_ROLE", "").split(",") if r]
        if not roles or not set(roles) <= {"api", "worker", "scheduler", "trader"}:
            err(f"{where} {name}: QUANTBOX_ROLE {env.get('QUANTBOX_ROLE')!r}")
        for k in env:
            if re.search(r"(PASSWORD|SECRET_KEY|DATABASE_URL|DATABASE_READ_URL|REDIS_URL)$", k):
                err(f"{where} {name}: {k} in the environment: use the *_FILE variant")
        mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
        secret_mounts = {p: vols[n]["secret"] for p, n in mounts.items() if "secret" in vols.get(n, {})}
        for k, v in env.items():
            if k.endswith("_FILE"):
                ok = any(v.startswith(p.rstrip("/") + "/") and v.rsplit("/", 1)[1] in secret_keys
                         for p in secret_mounts)
                if not ok:
                    err(f"{where} {name}: {k}={v} is not a key of quantbox-secrets mounted in the pod")
        for d_ in (env.get("QUANTBOX_DATA_DIR"), "/tmp"):
            if d_ not in mounts or "emptyDir" not in vols.get(mounts[d_], {}):
                err(f"{where} {name}: {d_} is not an emptyDir (read-only root)")
        m = re.fullmatch(r".+:(\d+)", env.get("QUANTBOX_BIND", ""))
        bind_port = int(m.group(1)) if m else None
        ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
        if list(ports.values()) != [8000] or bind_port != 8000:
            err(f"{where} {name}: container ports {ports} / QUANTBOX_BIND port {bind_port}: expected 8000 and 8000")
        for probe, want in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
            hg = c.get(probe, {}).get("httpGet", {})
            port = hg.get("port")
            port = ports.get(port) if isinstance(port, str) else port
            if hg.get("path") != want or port != bind_port:
                err(f"{where} {name}: {probe} is {hg}, expected {want} on port {bind_port}")
    if overlay == "production":
        want = {"api": 3, "trader": 2, "scheduler": 1}
        for n, r in want.items():
            if deps.get(n, {}).get("spec", {}).get("replicas") != r:
                err(f"{where} {n}: expected {r} replicas")
    for name, s in kinds.get("Service", {}).items():
        hits = [n for n, l in pod_labels.items() if matches(s["spec"].get("selector"), l)]
        if len(hits) != 1:
            err(f"{where} Service {name}: selector matches Deployments {hits}")
            continue
        c = next(c for c in deps[hits[0]]["spec"]["template"]["spec"]["containers"] if c["name"] == "quantbox")
        names = {p.get("name") for p in c["ports"]} | {p["containerPort"] for p in c["ports"]}
        for p in s["spec"]["ports"]:
            if p.get("targetPort", p["port"]) not in names:
                err(f"{where} Service {name}: targetPort {p.get('targetPort')} is no container port")
    for name, p in kinds.get("PodDisruptionBudget", {}).items():
        hits = [n for n, l in pod_labels.items() if matches(p["spec"]["selector"].get("matchLabels"), l)]
        if len(hits) != 1:
            err(f"{where} PDB {name}: selector matches Deployments {hits}")
    for want in ("api", "trader"):
        if not any(matches(p["spec"]["selector"].get("matchLabels"), pod_labels.get(want, {"-": "-"}))
                   for p in kinds.get("PodDisruptionBudget", {}).values()):
            err(f"{where} no PodDisruptionBudget for {want}")
    hpas = kinds.get("HorizontalPodAutoscaler", {})
    for name, h in hpas.items():
        ref = h["spec"]["scaleTargetRef"]
        if ref["kind"] != "Deployment" or ref["name"] not in deps:
            err(f"{where} HPA {name}: target {ref} not rendered")
    h = hpas.get("api")
    if not h:
        err(f"{where} no HPA for api")
    else:
        spec = h["spec"]
        targets = {m["resource"]["name"]: m["resource"]["target"] for m in spec["metrics"]}
        if targets != {"cpu": {"type": "Utilization", "averageUtilization": 70},
                       "memory": {"type": "Utilization", "averageUtilization": 80}}:
            err(f"{where} HPA api metrics {targets}")
        b = spec.get("behavior", {})
        seed = {"scaleDown": (300, 10), "scaleUp": (60, 50)}
        for k, (window, pct) in seed.items():
            pol = b.get(k, {})
            if pol.get("stabilizationWindowSeconds") != window or pol.get("policies") != [
                    {"type": "Percent", "value": pct, "periodSeconds": 60}]:
                err(f"{where} HPA api {k} {pol} is not the seed's")
        if overlay == "production" and (spec["minReplicas"], spec["maxReplicas"]) != (3, 10):
            err(f"{where} HPA api {spec['minReplicas']}-{spec['maxReplicas']}, expected 3-10")
    services = kinds.get("Service", {})
    routes = {}
    for name, ing in kinds.get("Ingress", {}).items():
        spec, ann = ing["spec"], ing["metadata"].get("annotations", {})
        if not spec.get("tls"):
            err(f"{where} Ingress {name}: no TLS")
        for rule in spec["rules"]:
            if not any(rule["host"] in t.get("hosts", []) for t in spec.get("tls", [])):
                err(f"{where} Ingress {name}: host {rule['host']} not covered by TLS")
            for p in rule["http"]["paths"]:
                svc = p["backend"]["service"]
                routes[p["path"]] = (svc["name"], name)
                s = services.get(svc["name"])
                port = svc["port"].get("name", svc["port"].get("number"))
                if not s or port not in {q.get("name") for q in s["spec"]["ports"]} | {q["port"] for q in s["spec"]["ports"]}:
                    err(f"{where} Ingress {name}: backend {svc} is no rendered Service port")
        if name != "quantbox-ws" and ann.get("nginx.ingress.kubernetes.io/proxy-body-size") != "50m":
            err(f"{where} Ingress {name}: body limit is not 50m")
    want_routes = {"/": "api", "/api": "api", "/ws": "api", "/api/v1/trading": "trader", "/api/v1/strategies": "trader"}
    for path, svc in want_routes.items():
        if routes.get(path, (None,))[0] != svc:
            err(f"{where} Ingress path {path} goes to {routes.get(path)}, expected Service {svc}")
    ings = kinds.get("Ingress", {})
    for path, (rps, retry) in {"/api": ("10", False), "/api/v1/trading": ("5", True),
                               "/api/v1/strategies": ("10", True)}.items():
        ann = ings.get(routes.get(path, (None, None))[1], {}).get("metadata", {}).get("annotations", {})
        if ann.get("nginx.ingress.kubernetes.io/limit-rps") != rps \
                or ann.get("nginx.ingress.kubernetes.io/limit-burst-multiplier") != "2":
            err(f"{where} {path}: rate limit is not the seed's {rps} r/s, burst x2")
        nu = set(ann.get("nginx.ingress.kubernetes.io/proxy-next-upstream", "").split())
        if retry and not {"error", "timeout", "http_503"} <= nu:
            err(f"{where} {path}: no retry of the next trader on 503")
    ws = ings.get(routes.get("/ws", (None, None))[1], {}).get("metadata", {}).get("annotations", {})
    if int(ws.get("nginx.ingress.kubernetes.io/proxy-read-timeout", 0)) < 3600:
        err(f"{where} /ws: read timeout too short for WebSockets")

open(keys_out, "a").write("\n".join(sorted(keys)) + "\n")
if errors:
    print("\n".join("  - " + e for e in errors), file=sys.stderr)
    sys.exit(f"k8s cross-check: {len(errors)} problem(s)")
print(f"ok: {len(rendered)} overlays")
PY

step "environment keys against \`quantbox config env-keys\`"
sort -u "$WORK/compose-env-keys" | sed '/^$/d' > "$WORK/used-keys"
if [ -z "${QUANTBOX_BIN:-}" ]; then
    cat >&2 <<MSG
################################################################################
# SKIPPED: QUANTBOX_BIN is not set, so the $(wc -l < "$WORK/used-keys") environment keys given to
# quantbox containers were NOT checked against \`quantbox config env-keys\`.
# Run with QUANTBOX_BIN=/path/to/quantbox to include this check.
################################################################################
MSG
else
    [ -x "$QUANTBOX_BIN" ] || fail "QUANTBOX_BIN=$QUANTBOX_BIN is not an executable"
    "$QUANTBOX_BIN" config env-keys > "$WORK/env-keys" || fail "$QUANTBOX_BIN config env-keys failed"
    [ -s "$WORK/env-keys" ] || fail "$QUANTBOX_BIN config env-keys printed nothing"
    sort -u "$WORK/env-keys" -o "$WORK/env-keys"
    unknown="$(comm -23 "$WORK/used-keys" "$WORK/env-keys")"
    [ -z "$unknown" ] || fail "keys quantbox does not read (compose or k8s): $(echo "$unknown" | tr '\n' ' ')"
    echo "ok: all $(wc -l < "$WORK/used-keys") keys are read by quantbox"
fi

step "promtool: cluster config with its file_sd targets, rules, rule tests, dashboard queries"
promtool check config "$PROM_DIR/prometheus-cluster.yml"
promtool check config "$PROM_DIR/prometheus.yml" >/dev/null
(cd "$PROM_DIR" && promtool test rules quantbox.rules.test.yml)
# Every dashboard query parses: each becomes a recording rule promtool checks.
python3 - packaging/monitoring/grafana/dashboards/quantbox.json "$WORK/dashboard.rules.yml" <<'PY'
import json, sys, yaml
d = json.load(open(sys.argv[1]))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", []) if t.get("expr")]
if not any("quantbox_node_info" in e for e in exprs):
    sys.exit("the dashboard has no panel of nodes and roles (quantbox_node_info)")
rules = [{"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
PY
promtool check rules "$WORK/dashboard.rules.yml"

step "deploy.sh / rollback.sh --dry-run per target, and the same commands when run"
# Stand-ins for the tools the scripts drive: they record their arguments in
# the dry-run format and succeed, so a real run can be compared with the
# dry run, and the state file can be followed.
mkdir -p "$WORK/bin" "$WORK/dry"
for tool in kubectl docker-compose docker curl; do
    cat > "$WORK/bin/$tool" <<'STUB'
#!/usr/bin/env bash
{
    printf '+'
    [ "$(basename "$0")" != docker-compose ] || printf ' %q' env "QUANTBOX_IMAGE=$QUANTBOX_IMAGE" "QUANTBOX_TAG=$QUANTBOX_TAG"
    printf ' %q' "$(basename "$0")" "$@"
    printf '\n'
} >> "$STUB_LOG"
STUB
    chmod +x "$WORK/bin/$tool"
done
export STUB_LOG="$WORK/stub.log"
# The scripts' own knobs take their defaults here; the expected commands
# below assume them.
unset COMPOSE_PROJECT ROLLOUT_TIMEOUT QUANTBOX_IMAGE
STATE="$WORK/deploy-state"
export QUANTBOX_DEPLOY_STATE="$STATE"
dry() { "$@" --dry-run 2>/dev/null; }
# Runs a script for real against the stand-ins; its commands must be the dry
# run's, line for line (the dry run's "# record" lines are the state file).
real_equals_dry() {
    local expected="$1"; shift
    : > "$STUB_LOG"
    PATH="$WORK/bin:$PATH" "$@" 2>/dev/null || fail "$* failed against the stand-ins"
    diff <(grep -v '^#' "$expected") "$STUB_LOG" >&2 || fail "$*: the commands run differ from the dry run"
}
expect() {
    local name="$1" file="$2"
    diff "$WORK/want-$name" "$file" >&2 || fail "$name: the dry run differs from the expected commands (above)"
}

NODES=(api-1 api-2 api-3 worker-backtest worker-data scheduler trader-a trader-b)
DEPLOYMENTS=(api worker-backtest worker-data scheduler trader)
compose_cmd() { echo "+ env QUANTBOX_IMAGE=reg.example/qb QUANTBOX_TAG=$1 docker-compose -p quantbox -f packaging/compose/docker-compose.yml ${*:2}"; }
compose_health_cmds() {
    local n
    for n in "${NODES[@]}"; do
        compose_cmd "$1" exec -T "$n" curl -fsS -o /dev/null --retry 30 --retry-delay 2 --retry-all-errors http://127.0.0.1:8000/health
    done
    compose_cmd "$1" exec -T nginx nginx -s reload
    echo "+ curl -fsS -o /dev/null --retry 15 --retry-delay 2 --retry-all-errors https://qb.example/health"
}
k8s_status_health_cmds() {
    local d
    for d in "${DEPLOYMENTS[@]}"; do echo "+ kubectl -n $1 rollout status deployment/$d --timeout=10m"; done
    echo "+ kubectl -n $1 exec deployment/api -c quantbox -- curl -fsS -o /dev/null --retry 10 --retry-delay 2 --retry-all-errors http://127.0.0.1:8000/health"
}

# compose deploy: 1.1 running (1.0 before it) -> 1.2.
printf 'current=1.1\nprevious=1.0\n' > "$STATE"
{
    compose_cmd 1.2 pull "${NODES[*]}"
    echo "# record in $STATE: current=1.2 previous=1.1"
    compose_cmd 1.2 up -d --remove-orphans
    compose_health_cmds 1.2
} > "$WORK/want-compose-deploy"
COMPOSE_ARGS=(--target compose --image reg.example/qb --health-url https://qb.example/health)
dry packaging/scripts/deploy.sh "${COMPOSE_ARGS[@]}" --tag 1.2 > "$WORK/dry/compose-deploy"
expect compose-deploy "$WORK/dry/compose-deploy"
[ "$(cat "$STATE")" = "$(printf 'current=1.1\nprevious=1.0')" ] || fail "the dry run changed the state file"
real_equals_dry "$WORK/dry/compose-deploy" packaging/scripts/deploy.sh "${COMPOSE_ARGS[@]}" --tag 1.2
[ "$(grep -E '^(current|previous)=' "$STATE")" = "$(printf 'current=1.2\nprevious=1.1')" ] \
    || fail "deploy did not record 1.2 over 1.1: $(cat "$STATE")"

# compose rollback: back to 1.1 (the tag deploy.sh recorded), no kubectl.
{
    echo "# record in $STATE: current=1.1 previous=1.2"
    compose_cmd 1.1 up -d --remove-orphans
    compose_health_cmds 1.1
} > "$WORK/want-compose-rollback"
dry packaging/scripts/rollback.sh "${COMPOSE_ARGS[@]}" > "$WORK/dry/compose-rollback"
expect compose-rollback "$WORK/dry/compose-rollback"
real_equals_dry "$WORK/dry/compose-rollback" packaging/scripts/rollback.sh "${COMPOSE_ARGS[@]}"
[ "$(grep -E '^(current|previous)=' "$STATE")" = "$(printf 'current=1.1\nprevious=1.2')" ] \
    || fail "rollback did not record 1.1 over 1.2: $(cat "$STATE")"
# ... and --to-tag names any tag.
dry packaging/scripts/rollback.sh "${COMPOSE_ARGS[@]}" --to-tag 0.9 > "$WORK/dry/compose-rollback-to"
grep -Fqx "$(compose_cmd 0.9 up -d --remove-orphans)" "$WORK/dry/compose-rollback-to" \
    || fail "rollback --to-tag 0.9 does not bring up 0.9"
rm -f "$STATE"
if packaging/scripts/rollback.sh "${COMPOSE_ARGS[@]}" --dry-run >/dev/null 2>"$WORK/err"; then
    fail "compose rollback without a recorded tag succeeded"
fi
grep -q 'no previous tag' "$WORK/err" || fail "compose rollback without a state file: unclear error: $(cat "$WORK/err")"

# k8s deploy and rollback, per overlay: the overlay's own namespace.
for o in "${OVERLAYS[@]}"; do
    ns="$(python3 -c 'import sys, yaml; print(next(d["metadata"]["name"] for d in yaml.safe_load_all(open(sys.argv[1])) if d and d["kind"] == "Namespace"))' "$WORK/k8s-$o.yaml")"
    {
        echo "+ kubectl apply -k packaging/k8s/overlays/$o"
        for d in "${DEPLOYMENTS[@]}"; do echo "+ kubectl -n $ns set image deployment/$d quantbox=reg.example/qb:1.2"; done
        k8s_status_health_cmds "$ns"
        echo "+ curl -fsS -o /dev/null --retry 15 --retry-delay 2 --retry-all-errors https://qb.example/health"
    } > "$WORK/want-k8s-deploy-$o"
    K8S_ARGS=(--target k8s --env "$o" --image reg.example/qb --health-url https://qb.example/health)
    dry packaging/scripts/deploy.sh "${K8S_ARGS[@]}" --tag 1.2 > "$WORK/dry/k8s-deploy-$o"
    expect "k8s-deploy-$o" "$WORK/dry/k8s-deploy-$o"
    real_equals_dry "$WORK/dry/k8s-deploy-$o" packaging/scripts/deploy.sh "${K8S_ARGS[@]}" --tag 1.2
    {
        for d in "${DEPLOYMENTS[@]}"; do echo "+ kubectl -n $ns rollout undo deployment/$d"; done
        k8s_status_health_cmds "$ns"
        echo "+ curl -fsS -o /dev/null --retry 15 --retry-delay 2 --retry-all-errors https://qb.example/health"
    } > "$WORK/want-k8s-rollback-$o"
    dry packaging/scripts/rollback.sh "${K8S_ARGS[@]}" > "$WORK/dry/k8s-rollback-$o"
    expect "k8s-rollback-$o" "$WORK/dry/k8s-rollback-$o"
    real_equals_dry "$WORK/dry/k8s-rollback-$o" packaging/scripts/rollback.sh "${K8S_ARGS[@]}"
    dry packaging/scripts/rollback.sh "${K8S_ARGS[@]}" --to-tag 1.1 > "$WORK/dry/k8s-rollback-to-$o"
    grep -Fqx "+ kubectl -n $ns set image deployment/api quantbox=reg.example/qb:1.1" "$WORK/dry/k8s-rollback-to-$o" \
        || fail "k8s rollback --to-tag 1.1 does not set that image"
done
[ ! -e "$STATE" ] || fail "a k8s run wrote the compose state file"

# Each target's commands name only its own tool (the seed's rollback ran
# kubectl from its docker branch).
for f in "$WORK"/dry/compose-*; do
    ! grep -q kubectl "$f" || fail "$(basename "$f") mentions kubectl"
done
for f in "$WORK"/dry/k8s-*; do
    ! grep -Eq 'docker|compose' "$f" || fail "$(basename "$f") mentions docker/compose"
done
# --build adds the image build and push, to both targets alike.
dry packaging/scripts/deploy.sh --target k8s --image reg.example/qb --tag 1.2 --build > "$WORK/dry/build-all"
head -n 2 "$WORK/dry/build-all" > "$WORK/dry/build"
diff - "$WORK/dry/build" >&2 <<'WANT' || fail "--build: unexpected commands"
+ docker build -f packaging/docker/Dockerfile -t reg.example/qb:1.2 .
+ docker push reg.example/qb:1.2
WANT
# Usage errors exit 2 without running anything.
for args in "--tag 1.2" "--target docker --tag 1.2" "--target k8s" "--target k8s --env nowhere --tag 1"; do
    : > "$STUB_LOG"
    # shellcheck disable=SC2086 # the words of $args are the arguments
    if PATH="$WORK/bin:$PATH" packaging/scripts/deploy.sh $args 2>/dev/null; then
        fail "deploy.sh $args succeeded"
    fi
    [ ! -s "$STUB_LOG" ] || fail "deploy.sh $args ran commands"
done
echo "ok: deploy/rollback dry runs for compose and k8s (${OVERLAYS[*]}) match the expected commands and what runs"

echo
echo "deployment checks passed"
