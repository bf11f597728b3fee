{{/*
Names, labels, and the pieces the Deployment, the migration Job and the
test pod share, so they cannot drift apart.
*/}}

{{- define "proctor.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "proctor.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "proctor.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "proctor.selectorLabels" -}}
app.kubernetes.io/name: {{ include "proctor.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "proctor.labels" -}}
helm.sh/chart: {{ include "proctor.chart" . }}
{{ include "proctor.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: proctor
{{- end }}

{{- define "proctor.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "proctor.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "proctor.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* Secret holding the database URL: the one named, else the chart's. */}}
{{- define "proctor.databaseSecret" -}}
{{- default (printf "%s-database" (include "proctor.fullname" .)) .Values.database.existingSecret }}
{{- end }}

{{- define "proctor.jwksName" -}}
{{- default (printf "%s-jwks" (include "proctor.fullname" .)) .Values.auth.jwks.existingName }}
{{- end }}

{{/* A chart-made JWKS is a ConfigMap (public keys); a named one is of auth.jwks.kind. */}}
{{- define "proctor.jwksKind" -}}
{{- if .Values.auth.jwks.json }}ConfigMap{{ else }}{{ .Values.auth.jwks.kind }}{{ end }}
{{- end }}

{{- define "proctor.tlsServerName" -}}
{{- default (printf "%s.%s.svc" (include "proctor.fullname" .) .Release.Namespace) .Values.tls.serverName }}
{{- end }}

{{/* Where secrets and config are mounted inside the container. */}}
{{- define "proctor.paths" -}}
config: /etc/proctor/config/config.toml
jwks: /etc/proctor/jwks
identifierKeys: /etc/proctor/identifier-keys
receiptSigning: /etc/proctor/receipt-signing
auditSigning: /etc/proctor/audit-signing
tls: /etc/proctor/tls
clientCa: /etc/proctor/tls-client-ca
outboundCa: /etc/proctor/outbound-ca
data: /var/lib/proctor
{{- end }}

{{/*
`proctor healthcheck` arguments for exec probes and the test pod.
Call with (dict "root" $ "addr" "HOST:PORT" "service" "NAME").
*/}}
{{- define "proctor.healthcheckArgs" -}}
{{- $v := .root.Values }}
{{- $p := include "proctor.paths" .root | fromYaml }}
- healthcheck
- --addr
- {{ .addr | quote }}
{{- if .service }}
- --service
- {{ .service | quote }}
{{- end }}
{{- if $v.tls.enabled }}
- --tls-ca
- {{ printf "%s/%s" $p.tls $v.tls.caKey | quote }}
- --tls-domain
- {{ include "proctor.tlsServerName" .root | quote }}
{{- if $v.tls.clientCa.enabled }}
- --tls-cert
- {{ printf "%s/tls.crt" $p.tls | quote }}
- --tls-key
- {{ printf "%s/tls.key" $p.tls | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/* OpenTelemetry variables (standard OTEL_* names the SDK reads). */}}
{{- define "proctor.otelEnv" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: OTEL_SERVICE_NAME
  value: {{ .Values.otel.serviceName | quote }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),service.version={{ .Chart.AppVersion }}"
{{- with .Values.otel.endpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ . | quote }}
{{- end }}
- name: OTEL_METRICS_EXPORTER
  value: {{ ternary "otlp" "none" .Values.otel.metrics.enabled | quote }}
- name: OTEL_METRIC_EXPORT_INTERVAL
  value: {{ mul .Values.otel.metrics.exportIntervalSeconds 1000 | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .Values.otel.sampler | quote }}
{{- with .Values.otel.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/* The database URL, from its Secret. */}}
{{- define "proctor.databaseEnv" -}}
- name: PROCTOR_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "proctor.databaseSecret" . }}
      key: {{ .Values.database.secretKey }}
{{- end }}

{{/* Pod-level settings shared by the Deployment, the Job and the test pod. */}}
{{- define "proctor.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}

{{/* Rules between values that the schema cannot state; failing here stops the install. */}}
{{- define "proctor.validate" -}}
{{- if and .Values.autoscaling.enabled (lt (int .Values.autoscaling.maxReplicas) (int .Values.autoscaling.minReplicas)) }}
{{- fail "autoscaling.maxReplicas must be at least autoscaling.minReplicas" }}
{{- end }}
{{- if and .Values.tls.clientCa.enabled (not .Values.tls.enabled) }}
{{- fail "tls.clientCa.enabled needs tls.enabled" }}
{{- end }}
{{- if not (or .Values.database.existingSecret .Values.database.url) }}
{{- fail "set database.existingSecret (a Secret with the PostgreSQL URL under database.secretKey) or database.url: without it the migration Job and every replica wait for a Secret nobody made" }}
{{- end }}
{{- if .Values.devKeys }}
{{- if or .Values.autoscaling.enabled (ne (int .Values.replicaCount) 1) }}
{{- fail "devKeys gives each pod keys of its own: it needs replicaCount=1 and autoscaling.enabled=false; for several replicas set identifierKeys, receiptSigning and auditSigning (enabled=true, existingSecret) instead" }}
{{- end }}
{{- else }}
{{- range $name := list "identifierKeys" "receiptSigning" "auditSigning" }}
{{- $k := index $.Values $name }}
{{- if not (and $k.enabled $k.existingSecret) }}
{{- fail (printf "set %s.enabled=true and %s.existingSecret: every replica must run with the same server keys, from a Secret (docs/OPERATIONS.md, \"Secrets for several replicas\"); devKeys=true is for a single development replica" $name $name) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
