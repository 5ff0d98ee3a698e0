{{/*
pimgate.toml from .Values.config. listen and public_url come from the environment
(PIMGATE_LISTEN, PIMGATE_PUBLIC_URL), and so do the database URL file, the Redis URL, the
access token file and the key-encryption key file (PIMGATE_*_FILE, PIMGATE_REDIS_URL). The
per-connection and per-client secrets have no variable: their *_file keys are written here and
point at the mounted Secret. No secret value is ever written here.
*/}}
{{- define "pimgate.config" -}}
{{- $cfg := .Values.config -}}
{{- $secretDir := include "pimgate.secretDir" . -}}
# pimgate.toml, rendered by the pimgate Helm chart (release {{ .Release.Name }}) from its
# values (config.*). Every key is described in config/pimgate.toml. Set by the environment:
# PIMGATE_LISTEN, PIMGATE_PUBLIC_URL, PIMGATE_METRICS_LISTEN and the secrets (PIMGATE_*_FILE,
# PIMGATE_REDIS_URL).

[server]
{{- include "pimgate.tomlTable" (dict "values" $cfg.server "skip" (list "allowed_hosts")) }}
{{- if not (include "pimgate.publicUrl" .) }}
allowed_hosts = {{ include "pimgate.allowedHosts" . }}
{{- end }}

[database]
{{- include "pimgate.tomlTable" (dict "values" $cfg.database) }}

[redis]
{{- include "pimgate.tomlTable" (dict "values" $cfg.redis) }}

[access_api]
{{- include "pimgate.tomlTable" (dict "values" $cfg.access_api) }}

[log]
{{- include "pimgate.tomlTable" (dict "values" $cfg.log) }}

[scim]
{{- include "pimgate.tomlTable" (dict "values" $cfg.scim) }}
{{- range $name, $c := $cfg.connections }}
{{- $c = default (dict) $c }}

[connections.{{ $name }}]
{{- include "pimgate.tomlTable" (dict "values" $c "skip" (list "scimTokenFromSecret" "sso")) }}
{{- if $c.scimTokenFromSecret }}
scim_token_file = {{ printf "%s/scim-token-%s" $secretDir $name | toJson }}
{{- end }}
{{- if $c.sso }}

[connections.{{ $name }}.sso]
{{- include "pimgate.tomlTable" (dict "values" $c.sso "skip" (list "clientSecretFromSecret")) }}
{{- if ne (toString $c.sso.clientSecretFromSecret) "false" }}
client_secret_file = {{ printf "%s/sso-client-secret-%s" $secretDir $name | toJson }}
{{- end }}
{{- end }}
{{- end }}

[oidc]
{{- include "pimgate.tomlTable" (dict "values" $cfg.oidc "skip" (list "clients")) }}
{{- range $id, $c := $cfg.oidc.clients }}
{{- $c = default (dict) $c }}

[oidc.clients.{{ toJson $id }}]
{{- include "pimgate.tomlTable" (dict "values" $c "skip" (list "clientSecretFromSecret")) }}
{{- if ne (toString $c.clientSecretFromSecret) "false" }}
client_secret_file = {{ printf "%s/oidc-client-secret-%s" $secretDir $id | toJson }}
{{- end }}
{{- end }}
{{- with $cfg.access }}

# The access model (config.access), as written.
{{ trim . }}
{{- end }}
{{ end -}}
