#!/usr/bin/env bash
# `make dev`: a local cluster (hack/cluster-up.sh) with Agentry installed and everything a
# session needs served from this machine on the cluster bridge (10.203.0.1), which pods reach
# by name through the cluster DNS (hack/coredns.yaml):
#   S3      versitygw           http://s3.agentry.test:17070  (bucket agentry)
#   model   scriptedllm         http://model.agentry.test:18089/v1  (ModelProvider "default")
#   git     hack/gitserve       http://git.agentry.test:18088/sample.git
#   forge   Gitea (bin/gitea)   http://gitea.agentry.test:13000/agentry-dev/sample  (GitProvider "dev-gitea")
# then runs the sample session dev/hello: applies it, follows it to the end and prints its
# summary, diff and transcript location. Idempotent; `make dev-down` removes it all.
#
# With OPENAI_API_KEY set, the ModelProvider "default" points at OPENAI_BASE_URL (default
# https://api.openai.com/v1) instead of the scripted model, the key goes only into the Secret
# agentry-system/openai-api-key, and the sample session uses AGENTRY_MODEL (default
# gpt-4.1-mini). The gateway (in the manager pod) must be able to reach that endpoint: the dev
# cluster's DNS resolves no off-machine name and pod traffic has no route off this machine, so
# use a server on the bridge (an address, or a name under agentry.test in hack/coredns.yaml).
# AGENTRY_DEV_WAIT (seconds, default 300) bounds the wait for the sample session.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cluster-env.sh"
T0=$(date +%s)

S3_PORT=17070 GIT_PORT=18088 LLM_PORT=18089 GITEA_PORT=13000
S3_ACCESS=agentry-dev S3_SECRET=agentry-dev-secret
# The names pods use for the servers below (CoreDNS answers 10.203.0.1); this host uses the address.
S3_HOST=s3.agentry.test GIT_HOST=git.agentry.test MODEL_HOST=model.agentry.test GITEA_HOST=gitea.agentry.test
DEV_KEY_NEW="sk-dev-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
DEV="${CLUSTER_DIR}/dev"
HELM="${HELM:-$(ls "${REPO_ROOT}"/bin/tools/helm-v* 2>/dev/null | tail -1)}"
[[ -x "${HELM}" ]] || { log "helm is not built: run 'make setup' (or 'make dev')"; exit 1; }

"${REPO_ROOT}/hack/cluster-up.sh"
"${REPO_ROOT}/hack/build-versitygw.sh" >/dev/null
"${REPO_ROOT}/hack/build-gitea.sh" 2>/dev/null
manager_image() { grep -qx docker.io/agentry/manager:dev <<<"$("${CTR[@]}" images ls -q 2>/dev/null)" && "${CTR[@]}" images ls name==docker.io/agentry/manager:dev | awk 'NR==2 {print $3}'; }
before=$(manager_image || true)
"${REPO_ROOT}/hack/images.sh" runner manager e2e-tools
after=$(manager_image || true)
mkdir -p "${DEV}/s3" "${DEV}/git" "${REPO_ROOT}/bin/tools"
(cd "${REPO_ROOT}" && go build -o bin/tools/scriptedllm ./test/scriptedllm/cmd/scriptedllm && go build -o bin/tools/gitserve ./hack/gitserve)

# S3 (versitygw over a directory) and its bucket.
start versitygw "${REPO_ROOT}/bin/versitygw" --port "${HOST_IP}:${S3_PORT}" --access "${S3_ACCESS}" --secret "${S3_SECRET}" --quiet posix "${DEV}/s3"
for _ in $(seq 1 50); do curl -s -o /dev/null "http://${HOST_IP}:${S3_PORT}/" && break; sleep 0.2; done
curl -sf -o /dev/null -X PUT --aws-sigv4 "aws:amz:us-east-1:s3" --user "${S3_ACCESS}:${S3_SECRET}" "http://${HOST_IP}:${S3_PORT}/agentry" || true

# A tiny repository to work on.
if [[ ! -d "${DEV}/git/sample.git" ]]; then
  work=$(mktemp -d)
  git -C "${work}" init -q -b main
  printf '# sample\n\nA repository for trying Agentry.\n' >"${work}/README.md"
  printf 'package sample\n\nfunc Add(a, b int) int { return a + b }\n' >"${work}/add.go"
  git -C "${work}" add -A
  git -C "${work}" -c user.name=agentry -c user.email=dev@agentry.invalid commit -qm "Initial commit"
  git clone -q --bare "${work}" "${DEV}/git/sample.git"
  rm -rf "${work}"
fi
start gitserve "${REPO_ROOT}/bin/tools/gitserve" --listen "${HOST_IP}:${GIT_PORT}" --root "${DEV}/git"

# A forge for spec.delivery: Gitea (SQLite under bin/.. dev dir), user agentry-dev with an
# access token, the repository agentry-dev/sample (the same content), and a GitProvider.
GITEA_DIR="${DEV}/gitea" GITEA_URL="http://${HOST_IP}:${GITEA_PORT}"
mkdir -p "${GITEA_DIR}/custom/conf"
if [[ ! -f "${GITEA_DIR}/custom/conf/app.ini" ]]; then
  cat >"${GITEA_DIR}/custom/conf/app.ini" <<INI
APP_NAME = Agentry dev forge
RUN_MODE = prod
RUN_USER = $(id -un)
I_AM_BEING_UNSAFE_RUNNING_AS_ROOT = true
[server]
HTTP_ADDR = ${HOST_IP}
HTTP_PORT = ${GITEA_PORT}
ROOT_URL = http://${GITEA_HOST}:${GITEA_PORT}/
DISABLE_SSH = true
START_SSH_SERVER = false
LFS_START_SERVER = false
OFFLINE_MODE = true
APP_DATA_PATH = ${GITEA_DIR}/data
STATIC_ROOT_PATH = $(readlink -f "${REPO_ROOT}/bin/gitea")-static
[database]
DB_TYPE = sqlite3
PATH = ${GITEA_DIR}/data/gitea.db
[repository]
ROOT = ${GITEA_DIR}/repositories
[security]
INSTALL_LOCK = true
SECRET_KEY = $(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
INTERNAL_TOKEN = $(head -c 48 /dev/urandom | od -An -tx1 | tr -d ' \n')
[service]
DISABLE_REGISTRATION = true
[log]
MODE = file
ROOT_PATH = ${GITEA_DIR}/log
[indexer]
ISSUE_INDEXER_TYPE = db
REPO_INDEXER_ENABLED = false
[cron]
ENABLED = false
[cron.update_checker]
ENABLED = false
[mailer]
ENABLED = false
INI
fi
gitea() { GITEA_WORK_DIR="${GITEA_DIR}" HOME="${GITEA_DIR}" "${REPO_ROOT}/bin/gitea" --config "${GITEA_DIR}/custom/conf/app.ini" --work-path "${GITEA_DIR}" "$@"; }
if [[ ! -s "${GITEA_DIR}/token" ]]; then
  { gitea migrate
    gitea admin user create --username agentry-dev --password "$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
      --email agentry-dev@agentry.test --admin --must-change-password=false
  } >>"${LOGS}/gitea-setup.log" 2>&1 || { log "setting up gitea failed:"; tail -20 "${LOGS}/gitea-setup.log" >&2; exit 1; }
  gitea admin user generate-access-token --username agentry-dev --token-name "dev-$(date +%s)" --scopes all --raw \
    2>>"${LOGS}/gitea-setup.log" | tr -d '\n' >"${GITEA_DIR}/token"
fi
GITEA_TOKEN=$(cat "${GITEA_DIR}/token")
start gitea env GITEA_WORK_DIR="${GITEA_DIR}" HOME="${GITEA_DIR}" "${REPO_ROOT}/bin/gitea" web \
  --config "${GITEA_DIR}/custom/conf/app.ini" --work-path "${GITEA_DIR}"
for i in $(seq 1 120); do
  [[ "$(curl -s -o /dev/null -w '%{http_code}' "${GITEA_URL}/api/healthz")" == 200 ]] && break
  [[ ${i} == 120 ]] && { log "gitea did not answer on ${GITEA_URL} within 60s"; tail -20 "${LOGS}/gitea.log" >&2; exit 1; }
  sleep 0.5
done
if [[ "$(curl -s -o /dev/null -w '%{http_code}' -H "Authorization: token ${GITEA_TOKEN}" "${GITEA_URL}/api/v1/repos/agentry-dev/sample")" != 200 ]]; then
  curl -sf -o /dev/null -H "Authorization: token ${GITEA_TOKEN}" -H 'Content-Type: application/json' \
    -d '{"name":"sample","default_branch":"main","private":false}' "${GITEA_URL}/api/v1/user/repos"
  git -C "${DEV}/git/sample.git" -c "http.extraHeader=Authorization: token ${GITEA_TOKEN}" \
    push -q "${GITEA_URL}/agentry-dev/sample.git" main
fi

# The operator, its S3 credentials and the default ModelProvider.
# CRDs first, as the chart's README says to on every upgrade (helm never upgrades crds/).
kc apply --server-side --force-conflicts -f "${REPO_ROOT}/charts/agentry/crds/" >/dev/null
kc wait --for=condition=Established crd --all --timeout=60s >/dev/null
kc create namespace agentry-system --dry-run=client -o yaml | kc apply -f - >/dev/null
kc -n agentry-system create secret generic agentry-s3 --from-literal=endpoint="${S3_HOST}:${S3_PORT}" \
  --from-literal=accessKey="${S3_ACCESS}" --from-literal=secretKey="${S3_SECRET}" --dry-run=client -o yaml | kc apply -f - >/dev/null
[[ -f "${DEV}/provider-key" ]] || echo -n "${DEV_KEY_NEW}" >"${DEV}/provider-key"
PROVIDER_KEY=$(cat "${DEV}/provider-key")
kc -n agentry-system create secret generic dev-gitea --from-file=token="${GITEA_DIR}/token" --dry-run=client -o yaml \
  | kc apply --server-side --force-conflicts -f - >/dev/null
kc -n agentry-system create secret generic scripted-llm-key --from-literal=apiKey="${PROVIDER_KEY}" --dry-run=client -o yaml | kc apply -f - >/dev/null
# The chart, as a platform team installs it (hack/dev-values.yaml); --take-ownership adopts
# objects an older `make dev` applied with kustomize.
"${HELM}" --kubeconfig "${KUBECONFIG_ADMIN}" upgrade --install agentry "${REPO_ROOT}/charts/agentry" -n agentry-system \
  --skip-crds --take-ownership -f "${REPO_ROOT}/hack/dev-values.yaml" \
  --set-string "test.repository.url=http://${GIT_HOST}:${GIT_PORT}/sample.git" --set-string test.repository.ref=main >/dev/null
if [[ -n "${OPENAI_API_KEY:-}" ]]; then
  # A real OpenAI-compatible endpoint. The key travels on stdin (never argv) into one Secret.
  MODEL_URL="${OPENAI_BASE_URL:-https://api.openai.com/v1}" MODEL_URL="${MODEL_URL%/}"
  MODEL="${AGENTRY_MODEL:-gpt-4.1-mini}" KEY_SECRET=openai-api-key
  printf '%s' "${OPENAI_API_KEY}" | kc -n agentry-system create secret generic "${KEY_SECRET}" --from-file=apiKey=/dev/stdin \
    --dry-run=client -o yaml | kc apply --server-side --force-conflicts -f - >/dev/null # no last-applied copy of the key
  MODELS="" # any model the endpoint serves
else
  MODEL_URL="http://${MODEL_HOST}:${LLM_PORT}/v1" MODEL=scripted KEY_SECRET=scripted-llm-key MODELS="models: [scripted]"
  kc -n agentry-system delete secret openai-api-key --ignore-not-found >/dev/null # a key from an earlier run
fi
kc apply -f - >/dev/null <<YAML
apiVersion: agentry.dev/v1alpha1
kind: ModelProvider
metadata: {name: default}
spec:
  api: OpenAI
  baseURL: ${MODEL_URL}
  apiKeySecretRef: {name: ${KEY_SECRET}, key: apiKey}
  ${MODELS}
  defaultModel: ${MODEL}
YAML
kc apply -f - >/dev/null <<YAML
apiVersion: agentry.dev/v1alpha1
kind: GitProvider
metadata: {name: dev-gitea}
spec:
  type: Gitea
  url: http://${GITEA_HOST}:${GITEA_PORT}
  allowPlainHTTP: true # the dev forge only
  secretRef: {name: dev-gitea}
YAML
if [[ -n "${before}" && "${before}" != "${after}" ]] && kc -n agentry-system get deployment agentry-manager >/dev/null 2>&1; then
  kc -n agentry-system rollout restart deployment/agentry-manager >/dev/null # the same tag, a new image
fi
kc -n agentry-system rollout status deployment/agentry-manager --timeout=180s >/dev/null

# Runner pods reach the model through the session gateway (the agentry-gateway Service). The
# manager may still be starting, and kube-proxy may not have programmed the Service yet: wait
# for it, and fail loudly rather than run without it. This host does not use the cluster DNS:
# curl is told the Service's ClusterIP for the name in the certificate.
ROUTE=gateway
GATEWAY_IP=$(kc -n agentry-system get service agentry-gateway -o jsonpath='{.spec.clusterIP}')
for i in $(seq 1 120); do
  kc -n agentry-system get configmap agentry-gateway-ca -o jsonpath='{.data.ca\.crt}' >"${DEV}/gateway-ca.crt" 2>/dev/null || true
  [[ -s "${DEV}/gateway-ca.crt" ]] && [[ "$(curl -s -m 2 -o /dev/null -w '%{http_code}' --cacert "${DEV}/gateway-ca.crt" \
    --resolve "agentry-gateway.agentry-system.svc:8443:${GATEWAY_IP}" https://agentry-gateway.agentry-system.svc:8443/healthz)" == 200 ]] && break
  if [[ ${i} == 120 ]]; then
    log "the session gateway did not answer on ${GATEWAY_IP}:8443 within 2 minutes"
    kc -n agentry-system logs deployment/agentry-manager --tail=30 >&2 || true
    exit 1
  fi
  sleep 1
done
# Sessions are reconciled once the new pod holds the leader lease (the old one's must expire).
for _ in $(seq 1 240); do
  holder=$(kc -n agentry-system get lease agentry-manager.agentry.dev -o jsonpath='{.spec.holderIdentity}' 2>/dev/null || true)
  live=$(kc -n agentry-system get pods -l app.kubernetes.io/name=agentry-manager \
    -o jsonpath='{range .items[?(@.status.phase=="Running")]}{.metadata.name} {.metadata.deletionTimestamp}{"\n"}{end}' | awk 'NF==1 {print $1}')
  [[ -n "${holder}" && -n "${live}" ]] && grep -qx "${holder%%_*}" <<<"${live}" && break
  sleep 0.5
done

# A scripted model: it lists the workspace, writes a file and finishes, for a few sessions.
# Restarted on every run so the sample session below always gets a fresh script.
if running scriptedllm; then
  kill "$(cat "${PIDS}/scriptedllm")" || true
  for _ in $(seq 1 50); do running scriptedllm || break; sleep 0.1; done
fi
step='{"toolCalls":[{"name":"list_dir","args":{"path":"."}}]},{"toolCalls":[{"name":"write_file","args":{"path":"HELLO.md","content":"hello from the scripted model\n"}}]},{"content":"Listed the workspace and wrote HELLO.md."}'
echo "[${step},${step},${step},${step},${step}]" >"${DEV}/llm-script.json"
keyflag=(--require-key "${PROVIDER_KEY}")
[[ "${ROUTE}" == direct ]] && keyflag=() # the runner presents its projected token, not the key
start scriptedllm "${REPO_ROOT}/bin/tools/scriptedllm" --listen "${HOST_IP}:${LLM_PORT}" --script "${DEV}/llm-script.json" "${keyflag[@]}"
for _ in $(seq 1 50); do curl -s -o /dev/null "http://${HOST_IP}:${LLM_PORT}/v1/models" && break; sleep 0.1; done
kc create namespace dev --dry-run=client -o yaml | kc apply -f - >/dev/null
kc label namespace dev pod-security.kubernetes.io/enforce=restricted --overwrite >/dev/null

cat >"${DEV}/session.yaml" <<YAML
apiVersion: agentry.dev/v1alpha1
kind: AgentSession
metadata: {name: hello, namespace: dev}
spec:
  task: List the repository and write HELLO.md.
  repository: {url: "http://${GIT_HOST}:${GIT_PORT}/sample.git", ref: main}
  model: {provider: default, name: ${MODEL}}
  tools: [list_dir, read_file, write_file]
  limits: {timeout: 5m}
YAML

S3GET=(curl -sf --aws-sigv4 aws:amz:us-east-1:s3 --user "${S3_ACCESS}:${S3_SECRET}" -H "x-amz-content-sha256: UNSIGNED-PAYLOAD")
S3GET_SHOWN="curl -s --aws-sigv4 aws:amz:us-east-1:s3 --user ${S3_ACCESS}:${S3_SECRET} -H 'x-amz-content-sha256: UNSIGNED-PAYLOAD'"
s3_url() { echo "http://${HOST_IP}:${S3_PORT}/${1#s3://}"; }
cat <<MSG

Agentry dev cluster is up ($(( $(date +%s) - T0 ))s). Every server is on this machine's cluster bridge,
${HOST_IP}; pods find *.agentry.test there through the cluster DNS (kube-dns ${DNS_SERVICE_IP}).

  export KUBECONFIG=${KUBECONFIG_ADMIN}
  kubectl -n dev get agentsessions -w
  kubectl -n agentry-system logs deploy/agentry-manager

Route: runner -> ${ROUTE} ($( [[ ${ROUTE} == gateway ]] && echo "agentry-gateway ${GATEWAY_IP}:8443 -> ModelProvider default" || echo "model, no gateway yet"))
Model: ${MODEL} at ${MODEL_URL} ($( [[ ${MODEL} == scripted && -z "${OPENAI_API_KEY:-}" ]] && echo "${DEV}/llm-script.json, " )key in Secret agentry-system/${KEY_SECRET})
S3:    http://${S3_HOST}:${S3_PORT} (from this host http://${HOST_IP}:${S3_PORT}) bucket agentry (access ${S3_ACCESS} / ${S3_SECRET}), files under ${DEV}/s3
Git:   http://${GIT_HOST}:${GIT_PORT}/sample.git (from this host http://${HOST_IP}:${GIT_PORT}/sample.git)
Gitea: http://${GITEA_HOST}:${GITEA_PORT}/agentry-dev/sample (from this host ${GITEA_URL}; token in ${GITEA_DIR}/token; GitProvider dev-gitea)
Logs:  ${LOGS}/
Stop:  make dev-down
MSG

# The sample session: (re)apply it, follow it to the end, show what it did.
WAIT="${AGENTRY_DEV_WAIT:-300}"
T1=$(date +%s)
kc -n dev delete agentsession hello --ignore-not-found --wait=true --timeout=60s >/dev/null
kc apply -f "${DEV}/session.yaml" >/dev/null
echo
echo "Sample session dev/hello (kubectl apply -f ${DEV}/session.yaml), following it for up to ${WAIT}s:"
session_failed() {
  echo >&2
  echo "make dev: the sample session dev/hello $1. Its state:" >&2
  kc -n dev describe agentsession hello >&2 || true
  pod=$(kc -n dev get agentsession hello -o jsonpath='{.status.podName}' 2>/dev/null || true)
  [[ -n "${pod}" ]] && { echo "--- kubectl -n dev logs ${pod} --all-containers --tail=20" >&2; kc -n dev logs "${pod}" --all-containers --tail=20 >&2 || true; }
  echo "--- manager: kubectl -n agentry-system logs deploy/agentry-manager --tail=20" >&2
  kc -n agentry-system logs deploy/agentry-manager --tail=20 >&2 || true
  why=$(kc -n dev get agentsession hello -o jsonpath='{.status.conditions[?(@.type=="Succeeded")].message}' 2>/dev/null || true)
  echo >&2
  echo "make dev FAILED: the sample session dev/hello $1${why:+: ${why}}" >&2
  exit 1
}
last=""
while :; do
  state=$(kc -n dev get agentsession hello -o jsonpath='{.status.phase}|{.status.progress.turn}|{.status.progress.lastTool}' 2>/dev/null || true)
  IFS='|' read -r phase turn tool <<<"${state}"
  line="${phase:-(no status yet)}${turn:+  turn ${turn}}${tool:+  last tool ${tool}}"
  if [[ "${line}" != "${last}" ]]; then printf '  %4ss  %s\n' "$(( $(date +%s) - T1 ))" "${line}"; last="${line}"; fi
  case "${phase}" in
    Succeeded) break ;;
    Failed | Cancelled) session_failed "ended ${phase}" ;;
  esac
  (( $(date +%s) - T1 < WAIT )) || session_failed "did not finish within ${WAIT}s (AGENTRY_DEV_WAIT)"
  sleep 1
done
# The gateway archives the transcript and the patch as the session ends; give it a moment.
for _ in $(seq 1 30); do
  [[ -n "$(kc -n dev get agentsession hello -o jsonpath='{.status.transcript.uri}')" ]] && break
  sleep 1
done
jp() { kc -n dev get agentsession hello -o jsonpath="{$1}"; }
num() { local v; v=$(jp "$1"); echo "${v:-0}"; }
echo
kc -n dev get agentsession hello -o wide
echo
echo "Summary:    $(jp .status.result.summary)"
echo "Changes:    $(num .status.result.filesChanged) file(s) changed, +$(num .status.result.additions) −$(num .status.result.deletions)"
echo "Tokens:     $(num .status.usage.totalTokens) (prompt $(num .status.usage.promptTokens), completion $(num .status.usage.completionTokens)); $(num .status.usage.toolCalls) tool calls; model $(jp .status.resolved.model)"
patch_uri=$(jp .status.patch.uri)
if [[ -n "${patch_uri}" && "$(num .status.patch.sizeBytes)" == 0 ]]; then
  echo "Diff:       empty (${patch_uri})"
elif [[ -n "${patch_uri}" ]]; then
  echo "Diff:       ${patch_uri}"
  echo
  "${S3GET[@]}" "$(s3_url "${patch_uri}")" | sed 's/^/    /' || echo "    (could not fetch ${patch_uri})"
  echo
else
  echo "Diff:       none archived (no changes)"
fi
transcript_uri=$(jp .status.transcript.uri)
echo "Transcript: ${transcript_uri:-not archived} ($(jp .status.transcript.events) events)"
[[ -z "${transcript_uri}" ]] || echo "  fetch it:  ${S3GET_SHOWN} $(s3_url "${transcript_uri}")"
echo
echo "make dev done in $(( $(date +%s) - T0 ))s (sample session $(( $(date +%s) - T1 ))s). Run it again: make dev; stop: make dev-down"
