{{/*
Names, labels and the shared pod template of the Hookline chart.
*/}}

{{- define "hookline.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hookline.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "hookline.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The services: binary name -> values key and listener. Every service serves /healthz, /readyz and /metrics on
the ops port (named ops), where probes and scrapers go; "api" services also serve the API on the API port
(named http), which carries no /metrics (api.metrics_on_api_port stays off).
*/}}
{{- define "hookline.components" -}}
api-gateway:
  key: apiGateway
  listener: api
event-consumer:
  key: eventConsumer
  listener: ops
delivery-worker:
  key: deliveryWorker
  listener: ops
cleanup:
  key: cleanup
  listener: ops
{{- end -}}

{{/* Name of one service's objects: <fullname>-<service>, at most 63 characters. */}}
{{- define "hookline.componentName" -}}
{{- $full := include "hookline.fullname" .root -}}
{{- printf "%s-%s" ($full | trunc (int (sub 62 (len .name)))) .name | trimSuffix "-" -}}
{{- end -}}

{{- define "hookline.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hookline.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
{{- if .name }}
app.kubernetes.io/component: {{ .name }}
{{- end }}
{{- end -}}

{{- define "hookline.labels" -}}
helm.sh/chart: {{ include "hookline.chart" .root }}
{{ include "hookline.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: hookline
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- with .root.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "hookline.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hookline.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the JWT key, the delegation key and the Redis password. */}}
{{- define "hookline.secretName" -}}
{{- default (include "hookline.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "hookline.image" -}}
{{- $img := .root.Values.image -}}
{{- $repo := printf "%s/%s" (trimSuffix "/" $img.repository) .name -}}
{{- if $img.registry }}{{ $repo = printf "%s/%s" (trimSuffix "/" $img.registry) $repo }}{{ end -}}
{{- $digest := get ($img.digests | default dict) .name -}}
{{- if $digest -}}
{{- printf "%s@%s" $repo $digest -}}
{{- else -}}
{{- printf "%s:%s" $repo (default .root.Chart.AppVersion $img.tag) -}}
{{- end -}}
{{- end -}}

{{/* Where the rendered config file is mounted; HOOKLINE_CONFIG names it. */}}
{{- define "hookline.configDir" -}}/etc/hookline/config.d{{- end -}}
{{- define "hookline.configFile" -}}hookline.toml{{- end -}}

{{/* One TOML value. Helm reads every number in values as a float: integral ones are written as integers. */}}
{{- define "hookline.tomlValue" -}}
{{- $v := . -}}
{{- $k := kindOf $v -}}
{{- if eq $k "bool" -}}{{ $v }}
{{- else if has $k (list "int" "int8" "int16" "int32" "int64" "uint" "uint8" "uint16" "uint32" "uint64") -}}{{ $v }}
{{- else if eq $k "float64" -}}
{{- if eq (float64 (int64 $v)) $v -}}{{ int64 $v }}{{- else -}}{{ $v }}{{- end -}}
{{- else if eq $k "string" -}}{{ toJson $v }}
{{- else if eq $k "slice" -}}[{{ range $i, $e := $v }}{{ if $i }}, {{ end }}{{ include "hookline.tomlValue" $e }}{{ end }}]
{{- else -}}{{ fail (printf "config: unsupported value %v (%s); use strings, numbers, booleans or lists" $v $k) }}
{{- end -}}
{{- end -}}

{{/* The config file: values.config plus the listen addresses, as TOML. */}}
{{- define "hookline.configToml" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $chartOwned := dict "api" (list "listen") "ops" (list "listen") "redis" (list "url" "password" "password_file" "sentinels" "sentinel_master_name" "sentinel_username" "sentinel_password" "sentinel_password_file") "auth" (list "jwt_secret" "jwt_public_key_pem") "worker" (list "delegation_key" "consumer_name") "consumer" (list "consumer_name") "secret_keys" (list "current" "keys" "keys_file") -}}
{{- range $section, $kv := $cfg -}}
{{- if not (kindIs "map" $kv) -}}
{{- fail (printf "config.%s must be a map of keys (a [%s] section)" $section $section) -}}
{{- end -}}
{{- end -}}
{{- range $section, $keys := $chartOwned -}}
{{- $s := get $cfg $section | default dict -}}
{{- range $keys -}}
{{- if hasKey $s . -}}
{{- fail (printf "config.%s.%s is set by the chart (see the comments in values.yaml)" $section .) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $bind := .Values.ports.bindAddress | default "0.0.0.0" -}}
{{- $_ := set $cfg "api" (merge (get $cfg "api" | default dict) (dict "listen" (printf "%s:%d" $bind (int .Values.ports.api)))) -}}
{{- $_ := set $cfg "ops" (merge (get $cfg "ops" | default dict) (dict "listen" (printf "%s:%d" $bind (int .Values.ports.ops)))) -}}
# Rendered by the Hookline chart from .Values.config; layered over the defaults embedded in every binary
# (config/default.toml). Secrets and per-pod values come from environment variables.
{{- range $section, $kv := $cfg }}

[{{ $section }}]
{{- range $k, $v := $kv }}
{{ $k }} = {{ include "hookline.tomlValue" $v }}
{{- end }}
{{- end }}
{{ end -}}

{{/* Drain grace period plus the extra margin. */}}
{{- define "hookline.terminationGracePeriodSeconds" -}}
{{- $shutdown := get (.Values.config | default dict) "shutdown" | default dict -}}
{{- $grace := get $shutdown "grace_period_secs" | default 20 -}}
{{- add (int $grace) (int .Values.terminationGraceExtraSeconds) -}}
{{- end -}}

{{/* "true" when redis.url names a Redis Cluster (redis-cluster:// or rediss-cluster://), else empty. */}}
{{- define "hookline.redisCluster" -}}
{{- if has (urlParse .Values.redis.url).scheme (list "redis-cluster" "rediss-cluster") }}true{{ end -}}
{{- end -}}

{{/* Redis URL as the pods see it: no credentials (the user and password are variables of their own).
     redis.tls turns redis:// into rediss:// and redis-cluster:// into rediss-cluster://. What the services
     would refuse at start about the Redis mode is refused here, at render time, naming the values. */}}
{{- define "hookline.redisUrl" -}}
{{- $r := .Values.redis -}}
{{- $u := urlParse $r.url -}}
{{- if not (has $u.scheme (list "redis" "rediss" "redis-cluster" "rediss-cluster")) -}}
{{- fail (printf "redis.url must start with redis://, rediss://, redis-cluster:// or rediss-cluster:// (got %q)" $r.url) -}}
{{- end -}}
{{- if $u.userinfo -}}
{{- fail "redis.url must not hold credentials: use redis.username and redis.password" -}}
{{- end -}}
{{- if not $u.host -}}
{{- fail (printf "redis.url has no host (got %q)" $r.url) -}}
{{- end -}}
{{- $redisCfg := get (.Values.config | default dict) "redis" | default dict -}}
{{- $tls := eq (toString $r.tls) "true" -}}
{{- if include "hookline.redisCluster" . -}}
{{- include "hookline.redisClusterChecks" . -}}
{{- printf "%s://%s" (ternary "rediss-cluster" $u.scheme $tls) $u.host -}}
{{- else -}}
{{- if ne (toString (get $redisCfg "cluster_shards" | default 0)) "0" -}}
{{- fail "config.redis.cluster_shards needs a cluster redis.url (redis-cluster:// or rediss-cluster://); remove it for a single Redis or Sentinel" -}}
{{- end -}}
{{- printf "%s://%s%s" (ternary "rediss" $u.scheme $tls) $u.host $u.path -}}
{{- end -}}
{{- if $u.query }}?{{ $u.query }}{{ end -}}
{{- end -}}

{{/* What the services refuse at start with a cluster URL, refused here at render time with the values'
     names (service_common's config/cluster.rs and delivery_model's store/cluster.rs hold the same rules):
     a database path, a #fragment, query parameters but node=host:port (a port 1-65535, a host without
     ':', so no IPv6 literal), Sentinel (a cluster fails over by itself), a shard count outside 0-256,
     and a key prefix with a brace (it would become every key's hash tag). */}}
{{- define "hookline.redisClusterChecks" -}}
{{- $r := .Values.redis -}}
{{- $u := urlParse $r.url -}}
{{- $redisCfg := get (.Values.config | default dict) "redis" | default dict -}}
{{- if not (has $u.path (list "" "/")) -}}
{{- fail (printf "redis.url: a Redis Cluster has only database 0, so a cluster URL takes no database path (got %q)" $u.path) -}}
{{- end -}}
{{- if or $u.fragment (contains "#" $r.url) -}}
{{- fail "redis.url: a cluster URL cannot carry a #fragment" -}}
{{- end -}}
{{- range $param := splitList "&" ($u.query | default "") -}}
{{- if $param -}}
{{- $port := regexFind "[0-9]+$" $param -}}
{{- if not (and (regexMatch `^node=[^:]+:[0-9]+$` $param) (le 1 (int $port)) (le (int $port) 65535)) -}}
{{- fail (printf "redis.url: a cluster URL takes only node=host:port query parameters (more seed nodes; a host name or IPv4 address, a port from 1 to 65535; got %q)" $param) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if $r.sentinel.enabled -}}
{{- fail "redis.sentinel.enabled cannot be combined with a cluster redis.url (a Redis Cluster fails over by itself): set redis.sentinel.enabled=false, or a redis:// or rediss:// URL" -}}
{{- end -}}
{{- if hasKey $redisCfg "cluster_shards" -}}
{{- $n := toString (get $redisCfg "cluster_shards") -}}
{{- if not (and (regexMatch "^[0-9]+$" $n) (le (int $n) 256)) -}}
{{- fail (printf "config.redis.cluster_shards must be a whole number from 1 to 256, or 0 for the default 12 (got %s)" $n) -}}
{{- end -}}
{{- end -}}
{{- if regexMatch "[{}]" (toString (get $redisCfg "key_prefix" | default "")) -}}
{{- fail "config.redis.key_prefix must not contain '{' or '}' with a cluster redis.url: it would become the hash tag of every key" -}}
{{- end -}}
{{- end -}}

{{/* "true" when the pods reach Redis over TLS (redis.tls or a rediss:// / rediss-cluster:// URL), else empty. */}}
{{- define "hookline.redisTls" -}}
{{- $url := include "hookline.redisUrl" . -}}
{{- if or (hasPrefix "rediss://" $url) (hasPrefix "rediss-cluster://" $url) }}true{{ end -}}
{{- end -}}

{{/* "secret" or "configMap" when the pods get a CA bundle for Redis, else empty. TLS settings without TLS
     are refused, as the binaries would refuse them at start. */}}
{{- define "hookline.redisCaSource" -}}
{{- $r := .Values.redis -}}
{{- $ca := $r.tlsCa -}}
{{- if and $ca.secretName $ca.configMapName -}}
{{- fail "redis.tlsCa: set secretName or configMapName, not both" -}}
{{- end -}}
{{- if and (or $ca.secretName $ca.configMapName $r.tlsClientCert.secretName $r.tlsServerName) (not (include "hookline.redisTls" .)) -}}
{{- fail "redis.tlsCa, redis.tlsClientCert and redis.tlsServerName need TLS: set redis.tls or a rediss:// (rediss-cluster://) redis.url" -}}
{{- end -}}
{{- if $ca.secretName }}secret{{ else if $ca.configMapName }}configMap{{ end -}}
{{- end -}}

{{/* Where the Redis CA bundle and client certificate are mounted (read-only). */}}
{{- define "hookline.redisCaDir" -}}/etc/hookline/redis-ca{{- end -}}
{{- define "hookline.redisClientDir" -}}/etc/hookline/redis-client{{- end -}}

{{/* Environment for reaching Redis: URL, user, password from a Secret, TLS files. */}}
{{- define "hookline.redisEnv" -}}
{{- $r := .Values.redis -}}
- name: HOOKLINE__REDIS__URL
  value: {{ include "hookline.redisUrl" . | quote }}
{{- if $r.username }}
- name: HOOKLINE__REDIS__USERNAME
  value: {{ $r.username | quote }}
{{- end }}
{{- if $r.password.enabled }}
- name: HOOKLINE__REDIS__PASSWORD
  valueFrom:
    secretKeyRef:
      {{- include "hookline.redisPasswordSecret" . | nindent 6 }}
{{- end }}
{{- if include "hookline.redisCaSource" . }}
- name: HOOKLINE__REDIS__TLS_CA_FILE
  value: {{ printf "%s/%s" (include "hookline.redisCaDir" .) $r.tlsCa.key | quote }}
{{- end }}
{{- with $r.tlsClientCert }}
{{- if .secretName }}
- name: HOOKLINE__REDIS__TLS_CLIENT_CERT_FILE
  value: {{ printf "%s/%s" (include "hookline.redisClientDir" $) .certKey | quote }}
- name: HOOKLINE__REDIS__TLS_CLIENT_KEY_FILE
  value: {{ printf "%s/%s" (include "hookline.redisClientDir" $) .keyKey | quote }}
{{- end }}
{{- end }}
{{- if $r.tlsServerName }}
- name: HOOKLINE__REDIS__TLS_SERVER_NAME
  value: {{ $r.tlsServerName | quote }}
{{- end }}
{{- include "hookline.secretKeysEnv" . }}
{{- end -}}

{{/* Secrets at rest (issue #16): the key-encryption keys as a mounted file, the current id as a variable.
     Rendered with the Redis environment so that every pod that reads subscriptions gets them. */}}
{{- define "hookline.secretKeysDir" -}}/etc/hookline/secret-keys{{- end -}}
{{- define "hookline.secretKeysEnv" -}}
{{- $k := .Values.secretKeys -}}
{{- if $k.enabled }}
{{- if not $k.secretName -}}
{{- fail "secretKeys.enabled needs secretKeys.secretName (a Secret holding id=base64 lines)" -}}
{{- end -}}
{{- if not $k.current -}}
{{- fail "secretKeys.enabled needs secretKeys.current (the key id that encrypts)" -}}
{{- end }}
- name: HOOKLINE__SECRET_KEYS__CURRENT
  value: {{ $k.current | quote }}
- name: HOOKLINE__SECRET_KEYS__KEYS_FILE
  value: {{ printf "%s/%s" (include "hookline.secretKeysDir" .) $k.secretKey | quote }}
{{- end }}
{{- end -}}

{{/* Volume mounts for the Redis CA and client certificate. */}}
{{- define "hookline.redisVolumeMounts" -}}
{{- if include "hookline.redisCaSource" . }}
- name: redis-ca
  mountPath: {{ include "hookline.redisCaDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.redis.tlsClientCert.secretName }}
- name: redis-client-cert
  mountPath: {{ include "hookline.redisClientDir" . }}
  readOnly: true
{{- end }}
{{- if .Values.secretKeys.enabled }}
- name: secret-keys
  mountPath: {{ include "hookline.secretKeysDir" . }}
  readOnly: true
{{- end }}
{{- end -}}

{{/* Volumes for the Redis CA and client certificate. */}}
{{- define "hookline.redisVolumes" -}}
{{- $r := .Values.redis -}}
{{- $source := include "hookline.redisCaSource" . -}}
{{- if $source }}
- name: redis-ca
  {{- if eq $source "secret" }}
  secret:
    secretName: {{ $r.tlsCa.secretName }}
  {{- else }}
  configMap:
    name: {{ $r.tlsCa.configMapName }}
  {{- end }}
    defaultMode: 0444
    items:
      - key: {{ $r.tlsCa.key }}
        path: {{ $r.tlsCa.key }}
{{- end }}
{{- with $r.tlsClientCert }}
{{- if .secretName }}
- name: redis-client-cert
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
    items:
      - key: {{ .certKey }}
        path: {{ .certKey }}
      - key: {{ .keyKey }}
        path: {{ .keyKey }}
{{- end }}
{{- end }}
{{- with .Values.secretKeys }}
{{- if .enabled }}
- name: secret-keys
  secret:
    secretName: {{ .secretName }}
    defaultMode: 0440
    items:
      - key: {{ .secretKey }}
        path: {{ .secretKey }}
{{- end }}
{{- end }}
{{- end -}}

{{/* TCP port of the Redis server (a cluster URL's first seed node). */}}
{{- define "hookline.redisPort" -}}
{{- $u := urlParse .Values.redis.url -}}
{{- $p := regexFind ":[0-9]+$" $u.host | trimPrefix ":" -}}
{{- default "6379" $p -}}
{{- end -}}

{{/* TCP ports the pods reach Redis on, as a JSON list: the URL's port, plus every seed node's
     (node=host:port) with a cluster URL. */}}
{{- define "hookline.redisPorts" -}}
{{- $ports := list (include "hookline.redisPort" . | int) -}}
{{- if include "hookline.redisCluster" . -}}
{{- range splitList "&" ((urlParse .Values.redis.url).query | default "") -}}
{{- with regexFind ":[0-9]+$" . -}}
{{- $ports = append $ports (trimPrefix ":" . | int) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- uniq $ports | toJson -}}
{{- end -}}

{{/* The ports of the NetworkPolicy's Redis egress rule: hookline.redisPorts, then
     networkPolicy.redis.extraPorts (a port, or {port, endPort} for a range). A Redis Cluster's client
     connects to every node at the address the node announces (CLUSTER SLOTS), not only to the seeds, so
     nodes listening on ports the URL does not name must be listed there. */}}
{{- define "hookline.redisEgressPorts" -}}
{{- $named := list -}}
{{- range include "hookline.redisPorts" . | fromJsonArray -}}
{{- $named = append $named (int .) -}}
{{- end -}}
{{- range $named }}
- port: {{ . | int }}
  protocol: TCP
{{- end }}
{{- range .Values.networkPolicy.redis.extraPorts }}
{{- if kindIs "map" . }}
{{- if and .endPort (lt (int .endPort) (int .port)) -}}
{{- fail (printf "networkPolicy.redis.extraPorts: endPort %d is below port %d" (int .endPort) (int .port)) -}}
{{- end }}
- port: {{ .port | int }}
  {{- with .endPort }}
  endPort: {{ . | int }}
  {{- end }}
  protocol: TCP
{{- else if not (has (int .) $named) }}
- port: {{ . | int }}
  protocol: TCP
{{- end }}
{{- end }}
{{- end -}}

{{- define "hookline.redisPasswordSecret" -}}
{{- $p := .Values.redis.password -}}
{{- if $p.secretName -}}
name: {{ $p.secretName }}
key: {{ $p.secretKey | default "redis-password" }}
{{- else -}}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.redisPassword) -}}
{{- fail "redis.password.enabled needs secrets.redisPassword, secrets.existingSecret or redis.password.secretName" -}}
{{- end -}}
name: {{ include "hookline.secretName" . }}
key: {{ .Values.secrets.keys.redisPassword }}
{{- end -}}
{{- end -}}

{{/* The Secret key holding hookline-migrate's PostgreSQL connection string. */}}
{{- define "hookline.migratePostgresUrlSecret" -}}
{{- $m := .Values.migrate.postgresUrlSecret -}}
{{- if $m.name -}}
name: {{ $m.name }}
key: {{ $m.key | default "postgres-url" }}
{{- else -}}
{{- if and (not .Values.secrets.existingSecret) (not .Values.secrets.postgresUrl) -}}
{{- fail "migrate.enabled needs secrets.postgresUrl, secrets.existingSecret or migrate.postgresUrlSecret.name" -}}
{{- end -}}
name: {{ include "hookline.secretName" . }}
key: {{ .Values.secrets.keys.postgresUrl }}
{{- end -}}
{{- end -}}

{{/* "secret" or "configMap" when hookline-migrate gets a CA bundle for PostgreSQL, else empty. */}}
{{- define "hookline.migrateCaSource" -}}
{{- $ca := .Values.migrate.postgresCa -}}
{{- if and $ca.secretName $ca.configMapName -}}
{{- fail "migrate.postgresCa: set secretName or configMapName, not both" -}}
{{- end -}}
{{- if $ca.secretName }}secret{{ else if $ca.configMapName }}configMap{{ end -}}
{{- end -}}

{{/* Where the PostgreSQL CA bundle is mounted (read-only). */}}
{{- define "hookline.migrateCaDir" -}}/etc/hookline/postgres-ca{{- end -}}

{{/* Environment of one service's container. */}}
{{- define "hookline.env" -}}
{{- $root := .root -}}
{{- $secret := include "hookline.secretName" $root -}}
- name: HOOKLINE_CONFIG
  value: {{ printf "%s/%s" (include "hookline.configDir" $root) (include "hookline.configFile" $root) | quote }}
{{ include "hookline.redisEnv" $root }}
{{- include "hookline.sentinelEnv" $root }}
- name: HOOKLINE__AUTH__JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $root.Values.secrets.keys.jwtSecret }}
      optional: true
- name: HOOKLINE__AUTH__JWT_PUBLIC_KEY_PEM
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $root.Values.secrets.keys.jwtPublicKeyPem }}
      optional: true
{{- if eq .name "event-consumer" }}
# Stable consumer name = pod name, so a restarted replica resumes its own pending entries.
- name: HOOKLINE__CONSUMER__CONSUMER_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
# Keys fan-out delivery ids (issue #16).
- name: HOOKLINE__CONSUMER__FANOUT_ID_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $root.Values.secrets.keys.fanoutIdKey }}
      optional: true
{{- end }}
{{- if eq .name "delivery-worker" }}
- name: HOOKLINE__WORKER__CONSUMER_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: HOOKLINE__WORKER__DELEGATION_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $root.Values.secrets.keys.delegationKey }}
      optional: true
{{- end }}
{{- if eq .name "migrate" }}
# TMI's database: the whole connection string (with its password and sslmode) from a Secret.
- name: HOOKLINE__MIGRATE__POSTGRES_URL
  valueFrom:
    secretKeyRef:
      {{- include "hookline.migratePostgresUrlSecret" $root | nindent 6 }}
{{- if include "hookline.migrateCaSource" $root }}
- name: HOOKLINE__MIGRATE__POSTGRES_CA_FILE
  value: {{ printf "%s/%s" (include "hookline.migrateCaDir" $root) $root.Values.migrate.postgresCa.key | quote }}
{{- end }}
{{- end }}
{{- with $root.Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- with .comp.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod annotations: config/secret checksums (roll pods on change) and Prometheus scrape hints. */}}
{{- define "hookline.podAnnotations" -}}
{{- $root := .root -}}
checksum/config: {{ include "hookline.configToml" $root | sha256sum }}
{{- if not $root.Values.secrets.existingSecret }}
checksum/secret: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
{{- end }}
{{- if and $root.Values.metrics.podAnnotations .listener }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ $root.Values.ports.ops | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- with $root.Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- with .comp.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The pod template shared by the Deployments, the cleanup CronJob and the migrate Job.
Params: root, name (service), comp (its values), listener (api|ops; empty: no port, no scrape annotations),
job (bool: restartPolicy Never, no probes), args (optional list), image (optional image name, default name).
*/}}
{{- define "hookline.podTemplate" -}}
{{- $root := .root -}}
metadata:
  labels:
    {{- include "hookline.labels" . | nindent 4 }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with .comp.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    {{- include "hookline.podAnnotations" . | nindent 4 }}
spec:
  serviceAccountName: {{ include "hookline.serviceAccountName" $root }}
  automountServiceAccountToken: false
  # Service links would add <SERVICE>_PORT… variables (HOOKLINE_… for a release named hookline).
  enableServiceLinks: false
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  {{- if .job }}
  restartPolicy: Never
  {{- end }}
  terminationGracePeriodSeconds: {{ include "hookline.terminationGracePeriodSeconds" $root }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  containers:
    - name: {{ .name }}
      image: {{ include "hookline.image" (dict "root" $root "name" (.image | default .name)) | quote }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      {{- with .args }}
      args: {{ toJson . }}
      {{- end }}
      {{- if .listener }}
      ports:
        {{- if eq .listener "api" }}
        - name: http
          containerPort: {{ $root.Values.ports.api }}
          protocol: TCP
        {{- end }}
        - name: ops
          containerPort: {{ $root.Values.ports.ops }}
          protocol: TCP
      {{- end }}
      env:
        {{- include "hookline.env" . | nindent 8 }}
      {{- if not .job }}
      startupProbe:
        httpGet:
          path: /healthz
          port: ops
        {{- toYaml $root.Values.probes.startup | nindent 8 }}
      livenessProbe:
        httpGet:
          path: /healthz
          port: ops
        {{- toYaml $root.Values.probes.liveness | nindent 8 }}
      readinessProbe:
        httpGet:
          path: /readyz
          port: ops
        {{- toYaml $root.Values.probes.readiness | nindent 8 }}
      {{- end }}
      {{- with .comp.lifecycle }}
      lifecycle:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .comp.resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: {{ include "hookline.configDir" $root }}
          readOnly: true
        {{- if and (eq .name "migrate") (include "hookline.migrateCaSource" $root) }}
        - name: postgres-ca
          mountPath: {{ include "hookline.migrateCaDir" $root }}
          readOnly: true
        {{- end }}
        {{- with include "hookline.redisVolumeMounts" $root | trim }}
        {{- . | nindent 8 }}
        {{- end }}
  volumes:
    - name: config
      configMap:
        name: {{ include "hookline.fullname" $root }}-config
    {{- with include "hookline.redisVolumes" $root | trim }}
    {{- . | nindent 4 }}
    {{- end }}
    {{- if and (eq .name "migrate") (include "hookline.migrateCaSource" $root) }}
    {{- $ca := $root.Values.migrate.postgresCa }}
    - name: postgres-ca
      {{- if $ca.secretName }}
      secret:
        secretName: {{ $ca.secretName }}
        defaultMode: 0444
        items:
          - key: {{ $ca.key }}
            path: {{ $ca.key }}
      {{- else }}
      configMap:
        name: {{ $ca.configMapName }}
        defaultMode: 0444
        items:
          - key: {{ $ca.key }}
            path: {{ $ca.key }}
      {{- end }}
    {{- end }}
  {{- with (.comp.nodeSelector | default $root.Values.nodeSelector) }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with (.comp.affinity | default $root.Values.affinity) }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- $tolerations := concat ($root.Values.tolerations | default list) (.comp.tolerations | default list) }}
  {{- with $tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .comp.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The services this release runs as Deployments, in a fixed order. */}}
{{- define "hookline.deploymentServices" -}}
{{- $out := list "api-gateway" "event-consumer" "delivery-worker" -}}
{{- if eq .Values.cleanup.mode "deployment" }}{{ $out = append $out "cleanup" }}{{ end -}}
{{- toJson $out -}}
{{- end -}}

{{/* Sentinel settings (redis.sentinel) as environment variables; nothing when disabled. */}}
{{- define "hookline.sentinelEnv" -}}
{{- $s := .Values.redis.sentinel -}}
{{- if $s.enabled }}
{{- if not $s.masterName -}}
{{- fail "redis.sentinel.enabled needs redis.sentinel.masterName" -}}
{{- end -}}
{{- if not $s.hosts -}}
{{- fail "redis.sentinel.enabled needs redis.sentinel.hosts (host:port of each sentinel)" -}}
{{- end }}
- name: HOOKLINE__REDIS__SENTINELS
  value: {{ join "," $s.hosts | quote }}
- name: HOOKLINE__REDIS__SENTINEL_MASTER_NAME
  value: {{ $s.masterName | quote }}
{{- with $s.username }}
- name: HOOKLINE__REDIS__SENTINEL_USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if $s.password.enabled }}
{{- if not $s.password.secretName -}}
{{- fail "redis.sentinel.password.enabled needs redis.sentinel.password.secretName" -}}
{{- end }}
- name: HOOKLINE__REDIS__SENTINEL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.password.secretName }}
      key: {{ $s.password.secretKey | default "sentinel-password" }}
{{- end }}
{{- end }}
{{- end -}}

{{/* NetworkPolicy egress rules to the sentinels' ports (redis.sentinel); nothing when disabled. */}}
{{- define "hookline.sentinelEgress" -}}
{{- $s := .root.Values.redis.sentinel -}}
{{- if $s.enabled }}
{{- $ports := list -}}
{{- range $s.hosts -}}
{{- $ports = append $ports (regexFind "[0-9]+$" .) -}}
{{- end }}
# Redis Sentinel
- ports:
    {{- range uniq $ports }}
    - port: {{ . | int }}
      protocol: TCP
    {{- end }}
  {{- with .to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
{{- end -}}

{{/* What the delivery-worker's replica count follows (deliveryWorker.autoscaling.mode), resolved: "keda" (a
     KEDA ScaledObject on the queue's length), "hpa" (an HPA: explicit metrics, an External metric or CPU),
     or empty (autoscaling off). `auto` picks KEDA when the Kubernetes cluster serves keda.sh/v1alpha1, no
     explicit HPA metrics are set and redis.url is not a Redis Cluster, else the HPA on CPU. */}}
{{- define "hookline.workerScaling" -}}
{{- $as := .Values.deliveryWorker.autoscaling -}}
{{- if $as.enabled -}}
{{- $mode := $as.mode | default "auto" -}}
{{- if and (eq $mode "keda") (include "hookline.redisCluster" .) -}}
{{- fail "deliveryWorker.autoscaling.mode keda cannot follow a Redis Cluster's queue (one stream per shard, under computed hash tags, which KEDA's scaler cannot name): use mode external (hookline_worker_queue_length sums every shard) or cpu" -}}
{{- else if eq $mode "keda" -}}keda
{{- else if eq $mode "auto" -}}
{{- if and (not $as.metrics) (not (include "hookline.redisCluster" .)) (or (.Capabilities.APIVersions.Has "keda.sh/v1alpha1/ScaledObject") (.Capabilities.APIVersions.Has "keda.sh/v1alpha1")) -}}keda{{- else -}}hpa{{- end -}}
{{- else -}}hpa
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The queue stream's name as the services spell it: config.redis.key_prefix + hookline:queue
     (crates/delivery-model/src/keys.rs). */}}
{{- define "hookline.queueStream" -}}
{{- $prefix := dig "redis" "key_prefix" "" (.Values.config | default dict) -}}
{{- printf "%shookline:queue" $prefix -}}
{{- end -}}
