#!/usr/bin/env bash
# Checks everything in deploy/ as far as this machine allows (no Docker engine, no systemd as
# PID 1): the systemd unit with systemd-analyze, the nginx site (and its TLS example) with
# nginx -t, the Kubernetes manifests (single node and cluster), compose files and Grafana
# dashboard as data, the Dockerfile's health check and the manifests' probe paths against a real
# ferryd, every metric the dashboard and README name against a real /metrics, and a real nginx
# proxying a WebSocket session that resumes (the NginxProxyTests suite). Installs nginx, systemd's
# tools and PyYAML when missing (apt-get, with sudo when not root), as scripts/install-deps.sh
# does for LMDB.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
if [ ${#missing[@]} -gt 0 ]; then
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
    echo "installed ${missing[*]}"
fi
# A python3 other than Debian's (pyenv, say) does not see python3-yaml: give it PyYAML.
python3 -c 'import yaml' 2>/dev/null || python3 -m pip install -q pyyaml

work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
ok() { echo "ok   $*"; }
fail() { echo "FAIL $*" >&2; exit 1; }

for product in ferryd ferryctl; do
    swift build --product "$product" >/dev/null 2>"$work/build.err" || { cat "$work/build.err" >&2; fail "swift build --product $product"; }
done
bin="$(swift build --show-bin-path)"

# systemd: verify needs ExecStart to exist, so point it at the built ferryd. verify exits 0 on
# unknown keys and bad values (it only warns), so any line naming the unit is a failure.
sed "s#^ExecStart=/usr/local/bin/ferryd\$#ExecStart=$bin/ferryd#" deploy/systemd/ferryd.service >"$work/ferryd.service"
grep -q "^ExecStart=$bin/ferryd\$" "$work/ferryd.service" || fail "deploy/systemd/ferryd.service: no ExecStart=/usr/local/bin/ferryd line"
if ! verify="$(systemd-analyze verify "$work/ferryd.service" 2>&1)" || grep -q "ferryd.service" <<<"$verify"; then
    fail "systemd-analyze verify deploy/systemd/ferryd.service:"$'\n'"$verify"
fi
ok "systemd-analyze verify deploy/systemd/ferryd.service"

# nginx: the site as shipped (addresses made local, as NginxProxyTests does), then its TLS
# example uncommented with a throwaway certificate.
mkdir -p "$work/nginx/temp"
cp deploy/nginx/local.conf "$work/nginx/"
sed -e 's/listen 80;/listen 127.0.0.1:18080;/' -e '/listen \[::\]:80;/d' deploy/nginx/ferry.conf >"$work/nginx/ferry.conf"
nginx -t -q -p "$work/nginx/" -c local.conf -e "$work/nginx/error.log" || fail "nginx -t deploy/nginx/ferry.conf"
ok "nginx -t deploy/nginx/ferry.conf"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ferry.example.com \
    -keyout "$work/nginx/key.pem" -out "$work/nginx/cert.pem" 2>/dev/null
sed -n '/^# server {/,$p' deploy/nginx/ferry.conf | sed -e 's/^# \{0,1\}//' \
    -e "s#/etc/letsencrypt/live/ferry.example.com/fullchain.pem#$work/nginx/cert.pem#" \
    -e "s#/etc/letsencrypt/live/ferry.example.com/privkey.pem#$work/nginx/key.pem#" \
    -e 's/listen 443 ssl http2;/listen 127.0.0.1:18443 ssl http2;/' -e '/listen \[::\]:443/d' >>"$work/nginx/ferry.conf"
grep -q "listen 127.0.0.1:18443 ssl" "$work/nginx/ferry.conf" || fail "deploy/nginx/ferry.conf: TLS example not found"
nginx -t -q -p "$work/nginx/" -c local.conf -e "$work/nginx/error.log" 2>"$work/nginx/tls.err" \
    || fail "nginx -t with the TLS example: $(cat "$work/nginx/tls.err")"
ok "nginx -t deploy/nginx/ferry.conf with its TLS example uncommented"

# Manifests, compose file and dashboard: parse them and require what each kind needs.
python3 - <<'EOF' || fail "deploy/k8s, deploy/docker/compose.yaml or deploy/grafana/ferry.json"
import glob, json, sys, yaml
sys.path.insert(0, "deploy")
from manifests import need, load_kinds

kinds = load_kinds("deploy/k8s")

for kind in ("StatefulSet", "Service", "PodDisruptionBudget", "ConfigMap", "Kustomization"):
    if kind not in kinds:
        sys.exit(f"deploy/k8s: no {kind}")
for where, set_ in kinds["StatefulSet"]:
    spec = need(set_, "spec", where)
    if spec.get("replicas") != 1:
        sys.exit(f"{where}: replicas must be 1 (LMDB has one writer)")
    selector = need(spec, "selector.matchLabels", where)
    labels = need(spec, "template.metadata.labels", where)
    if any(labels.get(k) != v for k, v in selector.items()):
        sys.exit(f"{where}: selector does not match the pod labels")
    need(spec, "serviceName", where)
    if not isinstance(need(spec, "template.spec.terminationGracePeriodSeconds", where), int):
        sys.exit(f"{where}: terminationGracePeriodSeconds is not a number")
    claims = {c["metadata"]["name"]: c for c in need(spec, "volumeClaimTemplates", where)}
    (container,) = need(spec, "template.spec.containers", where)
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        if need(container, f"{probe}.httpGet.path", where) != path:
            sys.exit(f"{where}: {probe} must GET {path}")
    need(container, "resources.requests.cpu", where)
    need(container, "resources.requests.memory", where)
    need(container, "resources.limits.memory", where)
    mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
    for claim in claims:
        if claim not in mounts:
            sys.exit(f"{where}: volume claim {claim} is not mounted")
    env = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            for cwhere, config in kinds["ConfigMap"]:
                if config["metadata"]["name"] == source["configMapRef"]["name"]:
                    env.update(config.get("data", {}))
    if env.get("FERRY_DATA") not in mounts.values():
        sys.exit(f"{where}: FERRY_DATA ({env.get('FERRY_DATA')}) is not the data volume's mount")
    if env.get("FERRY_HOST") != "0.0.0.0":
        sys.exit(f"{where}: FERRY_HOST must be 0.0.0.0 for the probes and the Service to reach it")
    if any(not key.startswith("FERRY_") for key in env):
        sys.exit(f"{where}: the ConfigMap holds a setting that is not FERRY_*")
    for swhere, service in kinds["Service"]:
        if any(labels.get(k) != v for k, v in need(service, "spec.selector", swhere).items()):
            sys.exit(f"{swhere}: selector does not match the StatefulSet's pods")
        need(service, "spec.ports", swhere)
    for pwhere, budget in kinds["PodDisruptionBudget"]:
        if need(budget, "spec.selector.matchLabels", pwhere) != selector:
            sys.exit(f"{pwhere}: selector does not match the StatefulSet")
(_, kustomization), = kinds["Kustomization"]
listed = set(kustomization["resources"])
present = {n.split("/")[-1] for n in glob.glob("deploy/k8s/*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
if listed != present:
    sys.exit(f"deploy/k8s/kustomization.yaml lists {sorted(listed)}, the folder has {sorted(present)}")
print("ok   deploy/k8s: " + ", ".join(f"{len(v)} {k}" for k, v in sorted(kinds.items())))

compose = yaml.safe_load(open("deploy/docker/compose.yaml"))
services = need(compose, "services", "compose.yaml")
if need(services, "ferry.build.dockerfile", "compose.yaml") != "deploy/docker/Dockerfile" or "nginx" not in services:
    sys.exit("deploy/docker/compose.yaml: needs the ferry service built from deploy/docker/Dockerfile, and nginx")
print("ok   deploy/docker/compose.yaml: services " + ", ".join(services))

cluster = yaml.safe_load(open("deploy/docker/compose.cluster.yaml"))
cservices = need(cluster, "services", "compose.cluster.yaml")
brokers = [n for n, s in cservices.items() if str((s.get("environment") or {}).get("FERRY_POSTGRES_URL", "")).startswith("postgres://")]
if len(brokers) < 2 or "postgres" not in cservices or "nginx" not in cservices:
    sys.exit("deploy/docker/compose.cluster.yaml: needs postgres, two brokers with FERRY_POSTGRES_URL, and nginx")
if any(cservices[b].get("build", {}).get("dockerfile") != "deploy/docker/Dockerfile" for b in brokers):
    sys.exit("deploy/docker/compose.cluster.yaml: brokers must be built from deploy/docker/Dockerfile")
print("ok   deploy/docker/compose.cluster.yaml: services " + ", ".join(cservices) + f" ({len(brokers)} brokers on postgres)")

dashboard = json.load(open("deploy/grafana/ferry.json"))
variables = {v["name"]: v for v in dashboard["templating"]["list"]}
if variables.get("datasource", {}).get("type") != "datasource" or variables["datasource"].get("query") != "prometheus":
    sys.exit("deploy/grafana/ferry.json: no Prometheus datasource variable")
ids = [p["id"] for p in dashboard["panels"]]
if len(ids) != len(set(ids)):
    sys.exit("deploy/grafana/ferry.json: duplicate panel ids")
for panel in dashboard["panels"]:
    if panel["type"] != "row" and (panel["datasource"]["uid"] != "${datasource}" or not panel["targets"]):
        sys.exit(f"deploy/grafana/ferry.json: panel {panel['title']} has no query on ${{datasource}}")
print(f"ok   deploy/grafana/ferry.json: {len(ids)} panels")
EOF

# Cluster mode's manifests: stateless brokers on PostgreSQL, the URL from a Secret.
python3 - <<'EOF' || fail "deploy/k8s/cluster"
import glob, re, sys, yaml
sys.path.insert(0, "deploy")
from manifests import need, load_kinds

folder = "deploy/k8s/cluster"
kinds = load_kinds(folder)
for kind in ("Deployment", "Service", "PodDisruptionBudget", "ConfigMap", "Secret", "Kustomization"):
    if kind not in kinds:
        sys.exit(f"{folder}: no {kind}")
if "StatefulSet" in kinds or "PersistentVolumeClaim" in kinds:
    sys.exit(f"{folder}: brokers on PostgreSQL keep no state: no StatefulSet or volume claim")

(where, deployment), = kinds["Deployment"]
spec = need(deployment, "spec", where)
replicas = spec.get("replicas")
if not isinstance(replicas, int) or replicas < 2:
    sys.exit(f"{where}: replicas must be 2 or more")
selector = need(spec, "selector.matchLabels", where)
labels = need(spec, "template.metadata.labels", where)
if any(labels.get(k) != v for k, v in selector.items()):
    sys.exit(f"{where}: selector does not match the pod labels")
pod = need(spec, "template.spec", where)
if pod.get("volumes"):
    sys.exit(f"{where}: a broker on PostgreSQL needs no volume")
if not isinstance(pod.get("terminationGracePeriodSeconds"), int):
    sys.exit(f"{where}: terminationGracePeriodSeconds is not a number")
(container,) = need(pod, "containers", where)
if container.get("volumeMounts"):
    sys.exit(f"{where}: a broker on PostgreSQL mounts nothing")
ports = {p.get("name"): p.get("containerPort") for p in need(container, "ports", where)}
for probe, path in (("startupProbe", "/healthz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
    if need(container, f"{probe}.httpGet.path", where) != path:
        sys.exit(f"{where}: {probe} must GET {path}")
    if container[probe]["httpGet"].get("port") not in ports:
        sys.exit(f"{where}: {probe} names a port the container does not declare")
need(container, "resources.requests.cpu", where)
need(container, "resources.requests.memory", where)
need(container, "resources.limits.memory", where)

env, secrets = {}, []
for source in container.get("envFrom", []):
    if "configMapRef" in source:
        names = [c for w, c in kinds["ConfigMap"] if c["metadata"]["name"] == source["configMapRef"]["name"]]
        if not names:
            sys.exit(f"{where}: ConfigMap {source['configMapRef']['name']} is not in {folder}")
        env.update(names[0].get("data", {}))
    if "secretRef" in source:
        secrets.append(source["secretRef"])
if env.get("FERRY_HOST") != "0.0.0.0":
    sys.exit(f"{where}: FERRY_HOST must be 0.0.0.0 for the probes and the Service to reach it")
if str(ports.get("http")) != str(env.get("FERRY_PORT", "8080")):
    sys.exit(f"{where}: the http port is not FERRY_PORT ({env.get('FERRY_PORT')})")
if any(not key.startswith("FERRY_") for key in env):
    sys.exit(f"{where}: the ConfigMap holds a setting that is not FERRY_*")
for key in ("FERRY_POSTGRES_URL", "FERRY_ADMIN_TOKEN", "FERRY_JWT_SECRET", "FERRY_DATA"):
    if key in env:
        sys.exit(f"{where}: {key} must not be in the ConfigMap (secrets go in a Secret; FERRY_DATA is LMDB's)")
examples = {s["metadata"]["name"]: s for w, s in kinds["Secret"]}
url_secrets = [ref for ref in secrets if "FERRY_POSTGRES_URL" in examples.get(ref["name"], {}).get("stringData", {})]
if len(url_secrets) != 1 or url_secrets[0].get("optional"):
    sys.exit(f"{where}: FERRY_POSTGRES_URL must come from one required Secret shown in {folder}/secret.example.yaml")
url = examples[url_secrets[0]["name"]]["stringData"]["FERRY_POSTGRES_URL"]
# What ferryd accepts (PostgresStoreConfiguration(url:)): no query string, one database.
if not re.fullmatch(r"postgres(ql)?://[^:@/?#]+(:[^@/?#]*)?@[^/?#]+/[^/?#]+", url):
    sys.exit(f"{folder}/secret.example.yaml: {url} is not postgres://user[:password]@host[:port]/database")

for swhere, service in kinds["Service"]:
    if any(labels.get(k) != v for k, v in need(service, "spec.selector", swhere).items()):
        sys.exit(f"{swhere}: selector does not match the Deployment's pods")
    if service["spec"].get("sessionAffinity", "None") != "None":
        sys.exit(f"{swhere}: no session affinity: a client resumes on any broker")
    for port in need(service, "spec.ports", swhere):
        if port.get("targetPort") not in ports:
            sys.exit(f"{swhere}: targetPort {port.get('targetPort')} is not a container port")
for pwhere, budget in kinds["PodDisruptionBudget"]:
    if need(budget, "spec.selector.matchLabels", pwhere) != selector:
        sys.exit(f"{pwhere}: selector does not match the Deployment")
    allowed = budget["spec"].get("maxUnavailable", replicas - budget["spec"].get("minAvailable", replicas))
    if not isinstance(allowed, int) or not 1 <= allowed < replicas:
        sys.exit(f"{pwhere}: must let one broker at a time be evicted, not all")

(_, kustomization), = kinds["Kustomization"]
listed = set(kustomization["resources"])
present = {n.split("/")[-1] for n in glob.glob(f"{folder}/*.yaml")} - {"kustomization.yaml", "secret.example.yaml"}
if listed != present:
    sys.exit(f"{folder}/kustomization.yaml lists {sorted(listed)}, the folder has {sorted(present)}")
print(f"ok   {folder}: " + ", ".join(f"{len(v)} {k}" for k, v in sorted(kinds.items())) + f" ({replicas} brokers, no volume, URL from Secret {url_secrets[0]['name']})")
EOF

# Where kubectl is installed, its kustomize must build both folders as they list them.
if command -v kubectl >/dev/null; then
    for folder in deploy/k8s deploy/k8s/cluster; do
        kubectl kustomize "$folder" >"$work/kustomize.yaml" 2>"$work/kustomize.err" || fail "kubectl kustomize $folder: $(cat "$work/kustomize.err")"
        ok "kubectl kustomize $folder: $(grep -c '^kind:' "$work/kustomize.yaml") objects"
    done
fi

# compose's nginx rewrites the shipped site for the container network: run its rewrite here.
python3 - "$work/compose-site.conf" <<'EOF' || fail "deploy/docker/compose.yaml: the nginx command's rewrite of ferry.conf"
import subprocess, sys, yaml
command = yaml.safe_load(open("deploy/docker/compose.yaml"))["services"]["nginx"]["command"][2]
rewrite = command.split(" && exec ")[0].replace("/etc/ferry/ferry.conf", "deploy/nginx/ferry.conf").replace(
    "/etc/nginx/conf.d/default.conf", sys.argv[1])
subprocess.run(["sh", "-c", rewrite], check=True)
site = open(sys.argv[1]).read()
if "127.0.0.1:8080" in site or "[::]:80" in site or site.count("server ferry:8080;") != 1:
    sys.exit("the rewritten site still names loopback or IPv6, or its upstream is not ferry:8080")
EOF
ok "deploy/docker/compose.yaml: nginx's rewrite points the upstream at the ferry service"

python3 - "$work/compose-cluster-site.conf" <<'EOF' || fail "deploy/docker/compose.cluster.yaml: the nginx command's rewrite of ferry.conf"
import subprocess, sys, yaml
services = yaml.safe_load(open("deploy/docker/compose.cluster.yaml"))["services"]
command = services["nginx"]["command"][2]
rewrite = command.split(" && exec ")[0].replace("/etc/ferry/ferry.conf", "deploy/nginx/ferry.conf").replace(
    "/etc/nginx/conf.d/default.conf", sys.argv[1])
subprocess.run(["sh", "-c", rewrite], check=True)
site = open(sys.argv[1]).read()
brokers = [n for n, s in services.items() if "FERRY_POSTGRES_URL" in (s.get("environment") or {})]
if "127.0.0.1:8080" in site or "[::]:80" in site or any(site.count(f"server {b}:8080;") != 1 for b in brokers):
    sys.exit("the rewritten site still names loopback or IPv6, or its upstream is not every broker")
EOF
ok "deploy/docker/compose.cluster.yaml: nginx's rewrite points the upstream at both brokers"

# The Dockerfile builds with CI's steps (no engine here to run it).
grep -q '^RUN ./scripts/install-deps.sh$' deploy/docker/Dockerfile && grep -q 'scripts/install-deps.sh' .ci/run \
    || fail "deploy/docker/Dockerfile does not install dependencies as .ci/run does (scripts/install-deps.sh)"
grep -q 'swift build -c release --static-swift-stdlib --product ferryd' deploy/docker/Dockerfile \
    || fail "deploy/docker/Dockerfile does not build ferryd with the static Swift runtime"
ok "deploy/docker/Dockerfile: dependencies from scripts/install-deps.sh as in .ci/run, static Swift runtime"

# A real ferryd: the Dockerfile's HEALTHCHECK command, then some traffic and a durable session,
# then every ferry_* metric the dashboard and deploy/README.md's Metrics section name must be in /metrics.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
FERRY_ADMIN_TOKEN=check "$bin/ferryd" --port "$port" --data "$work/data" >"$work/ferryd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    curl -sf "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
health="$(python3 - <<'EOF'
import json, re
text = open("deploy/docker/Dockerfile").read().replace("\\\n", " ")
print(json.loads(re.search(r"^HEALTHCHECK .*?CMD (\[.*\])$", text, re.M).group(1))[2])
EOF
)"
FERRY_PORT="$port" bash -c "$health" || fail "the Dockerfile's HEALTHCHECK fails against a running ferryd: $health"
FERRY_PORT="$((port + 1))" bash -c "$health" 2>/dev/null && fail "the Dockerfile's HEALTHCHECK passes with no broker"
ok "Dockerfile HEALTHCHECK: passes against a running ferryd, fails without one"

probes="$(python3 - <<'EOF'
import glob, yaml
paths = set()
for name in glob.glob("deploy/k8s/*.yaml") + glob.glob("deploy/k8s/cluster/*.yaml"):
    for doc in yaml.safe_load_all(open(name)):
        if doc.get("kind") in ("StatefulSet", "Deployment"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                    if probe in container:
                        paths.add(container[probe]["httpGet"]["path"])
print(" ".join(sorted(paths)))
EOF
)"
for path in $probes; do
    curl -sf "http://127.0.0.1:$port$path" >/dev/null || fail "the probe path $path of deploy/k8s does not answer 200 on a running ferryd"
done
ok "deploy/k8s probes: $probes answer 200 on a running ferryd"

curl -sf -X POST -H 'Content-Type: application/json' -d '{"n":1}' "http://127.0.0.1:$port/v1/topics/check/messages" >/dev/null
FERRY_URL="http://127.0.0.1:$port" "$bin/ferryctl" tail check --client check-client >"$work/tail.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
    grep -q '^ferry_durable_sessions 1' <(curl -s "http://127.0.0.1:$port/metrics") && break
    sleep 0.1
done
# The durable client leaves and falls behind, so it has a lag series.
kill "${pids[-1]}"
curl -sf -X POST -H 'Content-Type: application/json' -d '{"n":2}' "http://127.0.0.1:$port/v1/topics/check/messages" >/dev/null
curl -s "http://127.0.0.1:$port/metrics" >"$work/metrics.txt"
named="$( (cat deploy/grafana/ferry.json; sed -n '/^## Metrics/,/^## [^M]/p' deploy/README.md) \
    | grep -oE 'ferry_[a-z_]+' | sed -E 's/_(bucket|count|sum)$//' | sort -u)"
absent=""
for metric in $named; do
    grep -qE "^${metric}(_bucket|_count|_sum)?[{ ]" "$work/metrics.txt" || absent="$absent $metric"
done
[ -z "$absent" ] || fail "named in deploy/ but not in /metrics:$absent"
ok "/metrics of a live ferryd has all $(wc -w <<<"$named") ferry_* metrics named by the dashboard and deploy/README.md"

# A real nginx with the shipped site, a real ferryd, a WebSocket session resumed through them.
swift test --filter NginxProxyTests 2>&1 | tee "$work/nginx-tests.log" | grep -E '✘|Test run with' || true
grep -q 'Test run with .* passed' "$work/nginx-tests.log" || fail "NginxProxyTests (log above)"
grep -q 'skipped' "$work/nginx-tests.log" && fail "NginxProxyTests were skipped"
ok "NginxProxyTests: a durable WebSocket session resumed through nginx, heartbeat vs proxy timeout"
