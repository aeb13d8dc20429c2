{{/* The chart's name. */}}
{{- define "titan-ray.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name. KubeRay appends suffixes (-raycluster-xxxxx, -head-svc, -serve-svc) and
Kubernetes names stop at 63 characters, so this stays at 40.
*/}}
{{- define "titan-ray.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "titan-ray.selectorLabels" -}}
app.kubernetes.io/name: {{ include "titan-ray.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "titan-ray.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "titan-ray.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: titan-ray
{{- end }}

{{- define "titan-ray.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Environment of every Ray container: secrets only by reference, never their values. */}}
{{- define "titan-ray.env" -}}
- name: TITAN_RAY_RELEASE
  value: {{ .Release.Name | quote }}
{{- if .Values.sharedStorage.existingClaim }}
- name: TITAN_RAY_REGISTRY
  value: {{ printf "%s/registry" .Values.sharedStorage.mountPath | quote }}
{{- end }}
{{- if .Values.auth.api.existingSecret }}
- name: {{ .Values.auth.api.env }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.api.existingSecret }}
      key: {{ .Values.auth.api.key }}
{{- end }}
{{- if .Values.auth.jwt.existingSecret }}
- name: {{ .Values.auth.jwt.env }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.auth.jwt.existingSecret }}
      key: {{ .Values.auth.jwt.key }}
{{- end }}
{{- if .Values.redis.existingSecret }}
- name: {{ .Values.redis.env }}
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.existingSecret }}
      key: {{ .Values.redis.key }}
{{- else if .Values.redis.url }}
- name: {{ .Values.redis.env }}
  value: {{ .Values.redis.url | quote }}
{{- end }}
{{- if .Values.serve.throughputOptimized }}
{{- /* Serve's throughput-optimized mode: Ray's bundled HAProxy takes port 8000 of every node and
forwards to the replicas' own HTTP servers (ports 30000-31000, gRPC 40000-41000, of their pod).
Read by `ray start`, so it must be in every Ray container, head and workers alike. A variable
also given in `env` or `secretEnv` is left to that value (one entry per name). */}}
{{- range $name := list "RAY_SERVE_THROUGHPUT_OPTIMIZED" "RAY_SERVE_ENABLE_HA_PROXY" }}
{{- if not (or (hasKey $.Values.env $name) (hasKey $.Values.secretEnv $name)) }}
- name: {{ $name }}
  value: "1"
{{- end }}
{{- end }}
{{- end }}
{{- range $name, $value := .Values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range $name, $ref := .Values.secretEnv }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secret }}
      key: {{ $ref.key }}
{{- end }}
{{- end }}

{{/*
The Serve config (serveConfigV2): files/serve-config.yaml (serve_configs/production.yaml) with this
release's values applied, listening on 0.0.0.0:8000 (where KubeRay's Serve service sends traffic).
The file holds several applications, told apart by their import_path:
- the main app (titan_ray.serve.app:build_app, one): serve.args deep-merged into its args, the API
  token's variable (auth.api.env) as args.auth.token_env, the JWT secret's (auth.jwt.env) as
  args.auth.jwt_secret_env, Redis (when set) as args.auth.redis_url, and the live arena's Redis in
  args.arena.config (with redis.* set: journal and fan-out on env:<redis.env>; without: the arena's
  default journal, no fan-out);
- each experiment app (build_experiment_app, named experiment-NAME): serve.weights.NAME in the
  user_config.weights of its router deployment experiment-NAME; its live arms are the non-shadow
  ones of its args.arms;
- the model apps (build_model_app): the main app's args.auth (every app checks the same tokens);
- any other app: as written.
A weight for an experiment or arm the config does not define fails the render with the key to fix.
*/}}
{{- define "titan-ray.serveConfig" -}}
{{- $config := .Files.Get "files/serve-config.yaml" | fromYaml }}
{{- if not $config.applications }}
{{- fail "files/serve-config.yaml has no `applications`: it must link to serve_configs/production.yaml" }}
{{- end }}
{{- $known := dict }}
{{- $mains := list }}
{{- $shared := dict }}
{{- range $app := $config.applications }}
{{- $importPath := toString $app.import_path }}
{{- if eq $importPath "titan_ray.serve.app:build_app" }}
{{- $mains = append $mains (toString $app.name) }}
{{- $args := default dict $app.args }}
{{- $args = mergeOverwrite $args (deepCopy $.Values.serve.args) }}
{{- $auth := default dict $args.auth }}
{{- $_ := set $auth "token_env" $.Values.auth.api.env }}
{{- $_ = set $auth "jwt_secret_env" $.Values.auth.jwt.env }}
{{- if or $.Values.redis.url $.Values.redis.existingSecret }}
{{- /* rate limits shared by every replica, and the audit trail, in the Redis every pod reaches */}}
{{- $_ = set $auth "redis_url" (printf "env:%s" $.Values.redis.env) }}
{{- else }}
{{- $_ = unset $auth "redis_url" }}
{{- end }}
{{- $_ = set $args "auth" $auth }}
{{- $_ = set $shared "auth" $auth }}
{{- $arena := default dict $args.arena }}
{{- $arenaConfig := $arena.config }}
{{- if $arenaConfig }}
{{- $ledger := default dict $arenaConfig.ledger }}
{{- if or $.Values.redis.url $.Values.redis.existingSecret }}
{{- /* the live arena journals to (and fans out on) the Redis every pod reaches */}}
{{- $_ = set $ledger "journal" (dict "backend" "redis" "url" (printf "env:%s" $.Values.redis.env)) }}
{{- $_ = set $arenaConfig "redis" (dict "url" (printf "env:%s" $.Values.redis.env)) }}
{{- else }}
{{- /* no Redis in this release: the default journal (a file beside the arena), no fan-out */}}
{{- $_ = unset $ledger "journal" }}
{{- $_ = unset $arenaConfig "redis" }}
{{- end }}
{{- $_ = set $arenaConfig "ledger" $ledger }}
{{- end }}
{{- $_ = set $app "args" $args }}
{{- else if eq $importPath "titan_ray.serve.app:build_experiment_app" }}
{{- $args := default dict $app.args }}
{{- $experiment := toString $args.name }}
{{- $_ := set $known $experiment true }}
{{- $weights := get $.Values.serve.weights $experiment }}
{{- if $weights }}
{{- $arms := dict }}
{{- range $arm := default list $args.arms }}
{{- if not $arm.shadow }}
{{- $_ = set $arms $arm.name (default 0 $arm.weight) }}
{{- end }}
{{- end }}
{{- range $arm, $weight := $weights }}
{{- if not (hasKey $arms $arm) }}
{{- fail (printf "serve.weights.%s.%s: experiment %s has no live arm %s; its arms are %s" $experiment $arm $experiment $arm (keys $arms | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- /* the router deployment of application experiment-NAME is named experiment-NAME too */}}
{{- $name := printf "experiment-%s" $experiment }}
{{- $deployments := default list $app.deployments }}
{{- $router := dict "name" $name }}
{{- $found := false }}
{{- range $d := $deployments }}
{{- if eq (toString $d.name) $name }}
{{- $router = $d }}
{{- $found = true }}
{{- end }}
{{- end }}
{{- if not $found }}
{{- $deployments = append $deployments $router }}
{{- end }}
{{- /* arms left out keep the live weight of the config's user_config, else their args weight */}}
{{- $userConfig := default dict $router.user_config }}
{{- range $arm, $weight := default dict $userConfig.weights }}
{{- if hasKey $arms $arm }}
{{- $_ = set $arms $arm $weight }}
{{- end }}
{{- end }}
{{- range $arm, $weight := $weights }}
{{- $_ = set $arms $arm $weight }}
{{- end }}
{{- $_ = set $userConfig "weights" $arms }}
{{- $_ = set $router "user_config" $userConfig }}
{{- $_ = set $app "deployments" $deployments }}
{{- end }}
{{- end }}
{{- end }}
{{- /* every app checks the same credentials, scopes and limits: the main app's auth, in each */}}
{{- range $app := $config.applications }}
{{- if has (toString $app.import_path) (list "titan_ray.serve.app:build_model_app" "titan_ray.serve.app:build_experiment_app") }}
{{- $args := default dict $app.args }}
{{- $_ := set $args "auth" (deepCopy (get $shared "auth")) }}
{{- $_ = set $app "args" $args }}
{{- end }}
{{- end }}
{{- if ne (len $mains) 1 }}
{{- fail (printf "files/serve-config.yaml must hold one main application (import_path titan_ray.serve.app:build_app) for serve.args and the Redis settings; it holds %d: %s" (len $mains) (join ", " $mains)) }}
{{- end }}
{{- /* KubeRay's <name>-serve-svc sends traffic to port 8000 of the pods: listen there on every address */}}
{{- $http := default dict $config.http_options }}
{{- $_ := set $http "host" "0.0.0.0" }}
{{- $_ = set $http "port" 8000 }}
{{- $_ = set $config "http_options" $http }}
{{- range $experiment, $weights := .Values.serve.weights }}
{{- if not (hasKey $known $experiment) }}
{{- fail (printf "serve.weights.%s: the Serve config has no experiment %s; its experiments are: %s" $experiment $experiment (keys $known | sortAlpha | join ", ")) }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/* One Ray container: image, ports, environment and resources (head or worker). */}}
{{- define "titan-ray.container" -}}
{{- $root := .root -}}
- name: {{ .name }}
  image: {{ include "titan-ray.image" $root }}
  imagePullPolicy: {{ $root.Values.image.pullPolicy }}
  {{- if .head }}
  ports:
    - {containerPort: 6379, name: gcs-server}
    - {containerPort: 8265, name: dashboard}
    - {containerPort: 10001, name: client}
    - {containerPort: 8000, name: serve}
    - {containerPort: {{ $root.Values.metrics.exportPort }}, name: metrics}
  {{- else }}
  ports:
    - {containerPort: 8000, name: serve}
    - {containerPort: {{ $root.Values.metrics.exportPort }}, name: metrics}
  {{- end }}
  env:
    {{- include "titan-ray.env" $root | nindent 4 }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  {{- with $root.Values.sharedStorage.existingClaim }}
  volumeMounts:
    - name: shared
      mountPath: {{ $root.Values.sharedStorage.mountPath }}
  {{- end }}
{{- end }}

{{/* The pod template of a Ray node (head or worker group). */}}
{{- define "titan-ray.podTemplate" -}}
{{- $root := .root -}}
metadata:
  labels:
    {{- include "titan-ray.selectorLabels" $root | nindent 4 }}
    titan-ray.io/node-type: {{ .nodeType }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $root.Values.podAnnotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $root.Values.serviceAccountName }}
  serviceAccountName: {{ . }}
  {{- end }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    {{- include "titan-ray.container" . | nindent 4 }}
  {{- with $root.Values.sharedStorage.existingClaim }}
  volumes:
    - name: shared
      persistentVolumeClaim:
        claimName: {{ . }}
  {{- end }}
  {{- with .group.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .group.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .group.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
