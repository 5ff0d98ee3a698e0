{{/*
Combinations of values that would deploy a pimgate that cannot work, refused with a message
naming the values to change. values.schema.json checks each value alone; these check them
together. Included once, from the Deployment.
*/}}
{{- define "pimgate.validate" -}}
{{- $s := .Values.secrets }}
{{- if and $s.create $s.existingSecret }}
{{- fail "secrets.create and secrets.existingSecret are both set: use an existing Secret, or let the chart create one (development only), not both" }}
{{- end }}
{{- if not $s.create }}
{{- $v := $s.values }}
{{- if or $v.databaseUrl $v.redisUrl $v.accessToken $v.keyEncryptionKey $v.scimTokens $v.ssoClientSecrets $v.oidcClientSecrets }}
{{- fail "secrets.values is set but secrets.create is false: those values would be ignored. Put them in the Secret (secrets.existingSecret), or set secrets.create=true (development only)" }}
{{- end }}
{{- end }}
{{- if include "pimgate.multiReplica" . }}
{{- if not $s.databaseUrl.enabled }}
{{- fail "more than one replica (replicaCount > 1 or autoscaling) needs PostgreSQL: set secrets.databaseUrl.enabled=true (the embedded SQLite file is per pod)" }}
{{- end }}
{{- if not $s.redisUrl.enabled }}
{{- fail "more than one replica (replicaCount > 1 or autoscaling) needs Redis for the shared claims cache and sign-in state: set secrets.redisUrl.enabled=true" }}
{{- end }}
{{- end }}
{{- if include "pimgate.ssoEnabled" . }}
{{- if not (include "pimgate.publicUrl" .) }}
{{- fail "single sign-on is configured (config.oidc.clients or config.connections.NAME.sso) and needs a public URL, its issuer: set publicUrl, or enable the ingress with a host" }}
{{- end }}
{{- if not $s.keyEncryptionKey.enabled }}
{{- fail "single sign-on is configured and needs the key-encryption key from a Secret (secrets.keyEncryptionKey.enabled=true): a key generated in the pod is lost with it, and every replica must share one" }}
{{- end }}
{{- end }}
{{- range $name, $c := .Values.config.connections }}
{{- if and $c $c.sso (not (and $c.sso.issuer $c.sso.client_id)) }}
{{- fail (printf "config.connections.%s.sso needs issuer and client_id" $name) }}
{{- end }}
{{- end }}
{{- range $id, $c := .Values.config.oidc.clients }}
{{- if not (and $c $c.redirect_uris) }}
{{- fail (printf "config.oidc.clients.%s needs redirect_uris" $id) }}
{{- end }}
{{- end }}
{{- with .Values.config.access }}
{{- range $line := splitList "\n" . }}
{{- $t := trim $line }}
{{- if and (hasPrefix "[" $t) (not (regexMatch "^\\[\\[?\\s*\"?access[\\].\"\\s]" $t)) }}
{{- fail (printf "config.access may hold only [access...] tables, found %s" $t) }}
{{- end }}
{{- end }}
{{- end }}
{{- $pc := .Values.podSecurityContext }}
{{- if not (and $pc.runAsNonRoot $pc.seccompProfile) }}
{{- fail "podSecurityContext must keep runAsNonRoot: true and a seccompProfile" }}
{{- end }}
{{- $c := .Values.securityContext }}
{{- if or (not $c.runAsNonRoot) $c.allowPrivilegeEscalation (not $c.readOnlyRootFilesystem) (not (has "ALL" (default (list) ($c.capabilities).drop))) }}
{{- fail "securityContext must keep runAsNonRoot: true, allowPrivilegeEscalation: false, readOnlyRootFilesystem: true and capabilities.drop [ALL]" }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (kindIs "invalid" .Values.podDisruptionBudget.minAvailable) (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable" }}
{{- end }}
{{- end }}
