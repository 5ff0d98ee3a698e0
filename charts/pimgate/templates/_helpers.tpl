{{/*
Names, labels and the derived settings every template shares.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "pimgate.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full resource name: fullnameOverride, else RELEASE-pimgate (RELEASE when it already
contains the chart name). */}}
{{- define "pimgate.fullname" -}}
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

{{- define "pimgate.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. */}}
{{- define "pimgate.labels" -}}
helm.sh/chart: {{ include "pimgate.chart" . }}
{{ include "pimgate.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: pimgate
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The labels pods are selected by (never change them: a Deployment's selector is fixed). */}}
{{- define "pimgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "pimgate.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "pimgate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "pimgate.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image reference: repository:tag, or repository@digest. */}}
{{- define "pimgate.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/* The main Secret: existingSecret, else named like the release. */}}
{{- define "pimgate.secretName" -}}
{{- default (include "pimgate.fullname" .) .Values.secrets.existingSecret }}
{{- end }}

{{/* Where secret files are mounted, and the config file. */}}
{{- define "pimgate.secretDir" -}}/run/secrets/pimgate{{- end }}
{{- define "pimgate.configDir" -}}/etc/pimgate{{- end }}
{{- define "pimgate.workDir" -}}/var/lib/pimgate{{- end }}

{{/* "true" when single sign-on is configured: an OIDC client, or a connection with sso. */}}
{{- define "pimgate.ssoEnabled" -}}
{{- $on := gt (len (default (dict) .Values.config.oidc.clients)) 0 }}
{{- range $name, $c := .Values.config.connections }}
{{- if and $c $c.sso }}{{ $on = true }}{{ end }}
{{- end }}
{{- if $on }}true{{ end }}
{{- end }}

{{/* "true" when more than one pod may run at once. */}}
{{- define "pimgate.multiReplica" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) }}true{{ end }}
{{- end }}

{{/* The public URL: publicUrl, else derived from the first ingress host. */}}
{{- define "pimgate.publicUrl" -}}
{{- if .Values.publicUrl }}
{{- trimSuffix "/" .Values.publicUrl }}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts }}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) (first .Values.ingress.hosts).host }}
{{- end }}
{{- end }}

{{/* The Host names accepted without a public URL: the configured list, else the Service's. */}}
{{- define "pimgate.allowedHosts" -}}
{{- if .Values.config.server.allowed_hosts }}
{{- toJson .Values.config.server.allowed_hosts }}
{{- else }}
{{- $svc := include "pimgate.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- toJson (list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.%s" $svc $ns .Values.clusterDomain) "localhost" "127.0.0.1") }}
{{- end }}
{{- end }}

{{/*
Secret wiring. pimgate.secretFiles lists, as JSON, every file mounted under the secret
directory: {"secret": NAME, "key": KEY, "path": FILE}. The environment and the rendered
pimgate.toml name these files; the Deployment projects exactly these keys.
*/}}
{{- define "pimgate.secretFiles" -}}
{{- $main := include "pimgate.secretName" . }}
{{- $files := list }}
{{- range $item, $file := dict "databaseUrl" "database-url" "accessToken" "access-token" "keyEncryptionKey" "key-encryption-key" }}
{{- $s := index $.Values.secrets $item }}
{{- if $s.enabled }}
{{- $files = append $files (dict "secret" (default $main $s.secretName) "key" $s.key "path" $file) }}
{{- end }}
{{- end }}
{{- range $name, $c := .Values.config.connections }}
{{- if and $c $c.scimTokenFromSecret }}
{{- $files = append $files (dict "secret" $main "key" (printf "scim-token-%s" $name) "path" (printf "scim-token-%s" $name)) }}
{{- end }}
{{- if and $c $c.sso (ne (toString $c.sso.clientSecretFromSecret) "false") }}
{{- $files = append $files (dict "secret" $main "key" (printf "sso-client-secret-%s" $name) "path" (printf "sso-client-secret-%s" $name)) }}
{{- end }}
{{- end }}
{{- range $id, $c := .Values.config.oidc.clients }}
{{- if ne (toString (default (dict) $c).clientSecretFromSecret) "false" }}
{{- $files = append $files (dict "secret" $main "key" (printf "oidc-client-secret-%s" $id) "path" (printf "oidc-client-secret-%s" $id)) }}
{{- end }}
{{- end }}
{{- toJson $files }}
{{- end }}

{{/*
A TOML value from a values scalar or list: strings are JSON-quoted (a JSON string is a TOML
basic string), numbers are integers (Helm reads every number as a float; pimgate's numeric
settings are all integers), booleans as they are.
*/}}
{{- define "pimgate.tomlValue" -}}
{{- if kindIs "string" . }}
{{- toJson . }}
{{- else if kindIs "bool" . }}
{{- ternary "true" "false" . }}
{{- else if or (kindIs "float64" .) (kindIs "int" .) (kindIs "int64" .) }}
{{- int64 . }}
{{- else if kindIs "slice" . }}
{{- $out := list }}
{{- range . }}{{ $out = append $out (include "pimgate.tomlValue" .) }}{{ end }}
{{- printf "[%s]" (join ", " $out) }}
{{- else }}
{{- fail (printf "pimgate.toml: cannot write %v (%s) as a TOML value" . (kindOf .)) }}
{{- end }}
{{- end }}

{{/*
The key = value lines of one flat table: (dict "values" MAP "skip" LIST). Nulls, nested maps
and the keys in skip (the chart's own keys, or subtables written separately) are left out.
*/}}
{{- define "pimgate.tomlTable" -}}
{{- $skip := default list .skip }}
{{- range $k, $v := .values }}
{{- if not (or (has $k $skip) (kindIs "invalid" $v) (kindIs "map" $v)) }}
{{ $k }} = {{ include "pimgate.tomlValue" $v }}
{{- end }}
{{- end }}
{{- end }}
