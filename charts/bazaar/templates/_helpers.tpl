{{/* Names and labels. */}}
{{- define "bazaar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-bazaar (or fullnameOverride), whatever its length: the stem of every name. */}}
{{- define "bazaar.fullnameStem" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name }}
{{- end }}
{{- end }}
{{- end }}

{{/*
The name of one of the release's objects, <stem><suffix>, within the 63 characters of a DNS label.
A longer one keeps its suffix and trades the stem's end for a hash of the whole name,
<stem cut>-<8 hex><suffix>: names cut short stay unique and still say what they name.
(dict "root" $ "suffix" "-orders"); the suffix may be empty.
*/}}
{{- define "bazaar.objectName" -}}
{{- $stem := include "bazaar.fullnameStem" .root }}
{{- $full := printf "%s%s" $stem .suffix }}
{{- if le (len $full) 63 }}
{{- $full }}
{{- else }}
{{- $hash := sha256sum $full | trunc 8 }}
{{- $room := sub 54 (len .suffix) | int }}
{{- if gt $room 0 }}
{{- printf "%s-%s%s" ($stem | trunc $room | trimSuffix "-") $hash .suffix }}
{{- else }}
{{- printf "%s-%s" ($full | trunc 54 | trimSuffix "-") $hash }}
{{- end }}
{{- end }}
{{- end }}

{{- define "bazaar.fullname" -}}
{{- include "bazaar.objectName" (dict "root" . "suffix" "") }}
{{- end }}

{{- define "bazaar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "bazaar.labels" -}}
helm.sh/chart: {{ include "bazaar.chart" . }}
{{ include "bazaar.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bazaar
{{- end }}

{{/* The release's pods, whatever their Deployment. */}}
{{- define "bazaar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bazaar.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* One Deployment's pods, stable and canary: (dict "root" $ "key" $key). */}}
{{- define "bazaar.componentSelectorLabels" -}}
{{ include "bazaar.selectorLabels" .root }}
app.kubernetes.io/component: {{ .key }}
{{- end }}

{{/* The Deployment and Service name of a key in `deployments`: (dict "root" $ "key" $key). */}}
{{- define "bazaar.componentName" -}}
{{- include "bazaar.objectName" (dict "root" .root "suffix" (printf "-%s" .key)) }}
{{- end }}

{{- define "bazaar.canaryName" -}}
{{- include "bazaar.objectName" (dict "root" .root "suffix" (printf "-%s-canary" .key)) }}
{{- end }}

{{- define "bazaar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "bazaar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "bazaar.secretName" -}}
{{- default (include "bazaar.fullname" .) .Values.existingSecret }}
{{- end }}

{{/* The Secret the migration hooks read: it exists before the release's own resources do. */}}
{{- define "bazaar.hookSecretName" -}}
{{- if .Values.existingSecret }}
{{- .Values.existingSecret }}
{{- else }}
{{- include "bazaar.objectName" (dict "root" . "suffix" "-migrations") }}
{{- end }}
{{- end }}

{{/* repository@digest or repository:tag: (dict "image" $image "root" $). */}}
{{- define "bazaar.image" -}}
{{- $repository := .image.repository | default .root.Values.image.repository }}
{{- if .image.digest }}
{{- printf "%s@%s" $repository .image.digest }}
{{- else }}
{{- printf "%s:%s" $repository (.image.tag | default .root.Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
The module registry: files/modules.json, the output of `bazaar modules --format json` (CI checks
that it is), one object per module in registry order. Everything the chart knows of the modules
comes from here: a new module needs no edit of the chart.
*/}}
{{- define "bazaar.registry" -}}
{{- $regenerate := "write it with `bazaar modules --format json > charts/bazaar/files/modules.json`" }}
{{- $text := .Files.Get "files/modules.json" }}
{{- if not $text }}
{{- fail (printf "files/modules.json: missing or empty; %s" $regenerate) }}
{{- end }}
{{- $registry := $text | fromJsonArray }}
{{- if not $registry }}
{{- fail (printf "files/modules.json: names no module; %s" $regenerate) }}
{{- end }}
{{- range $registry }}
{{- /* fromJsonArray returns the parser's error as the list's one element. */}}
{{- if not (and (kindIs "map" .) (kindIs "string" .name) (kindIs "slice" .path_prefixes)) }}
{{- fail (printf "files/modules.json: not what `bazaar modules --format json` prints (%v); %s" . $regenerate) }}
{{- end }}
{{- end }}
{{- toJson $registry }}
{{- end }}

{{/* The registry's module names, in registry order, as JSON. */}}
{{- define "bazaar.moduleNames" -}}
{{- $names := list }}
{{- range include "bazaar.registry" . | fromJsonArray }}
{{- $names = append $names .name }}
{{- end }}
{{- toJson $names }}
{{- end }}

{{/* module -> the path prefixes it serves, as JSON. */}}
{{- define "bazaar.modulePrefixes" -}}
{{- $prefixes := dict }}
{{- range include "bazaar.registry" . | fromJsonArray }}
{{- $_ := set $prefixes .name .path_prefixes }}
{{- end }}
{{- toJson $prefixes }}
{{- end }}

{{/*
The modules a Deployment's entry names, "*" standing for every module no other Deployment names
(in registry order, after the entry's own names): (dict "modules" $entry.modules "others" $named "root" $),
`others` being the modules the other Deployments name. As JSON.
*/}}
{{- define "bazaar.resolveModules" -}}
{{- $own := list }}
{{- $rest := false }}
{{- range .modules }}
{{- if eq (toString .) "*" }}
{{- $rest = true }}
{{- else }}
{{- $own = append $own . }}
{{- end }}
{{- end }}
{{- if $rest }}
{{- range include "bazaar.moduleNames" .root | fromJsonArray }}
{{- if not (or (has . $own) (has . $.others)) }}
{{- $own = append $own . }}
{{- end }}
{{- end }}
{{- end }}
{{- toJson $own }}
{{- end }}

{{/* The enabled entries of `deployments` (not null, not enabled: false), as JSON: key -> entry. */}}
{{- define "bazaar.enabledEntries" -}}
{{- $entries := dict }}
{{- range $key, $entry := .Values.deployments }}
{{- if and $entry (dig "enabled" true $entry) }}
{{- $_ := set $entries $key $entry }}
{{- end }}
{{- end }}
{{- toJson $entries }}
{{- end }}

{{/*
deploymentDefaults under each enabled entry of `deployments`, as JSON: key -> settings, with
`modules` resolved to module names ("*" replaced).
*/}}
{{- define "bazaar.deployments" -}}
{{- $entries := include "bazaar.enabledEntries" . | fromJson }}
{{- $all := dict }}
{{- range $key, $entry := $entries }}
{{- $others := list }}
{{- range $other, $o := $entries }}
{{- if ne $other $key }}
{{- range $o.modules }}
{{- $others = append $others (toString .) }}
{{- end }}
{{- end }}
{{- end }}
{{- $d := mergeOverwrite (deepCopy $.Values.deploymentDefaults) (deepCopy $entry) }}
{{- $_ := set $d "modules" (include "bazaar.resolveModules" (dict "modules" ($entry.modules | default list) "others" $others "root" $) | fromJsonArray) }}
{{- $_ := set $all $key $d }}
{{- end }}
{{- toJson $all }}
{{- end }}

{{/* module -> the key of the Deployment hosting it, as JSON. */}}
{{- define "bazaar.hosts" -}}
{{- $hosts := dict }}
{{- range $key, $d := include "bazaar.deployments" . | fromJson }}
{{- range $d.modules }}
{{- $_ := set $hosts . $key }}
{{- end }}
{{- end }}
{{- toJson $hosts }}
{{- end }}

{{/* The deployment key that gets the canary. */}}
{{- define "bazaar.canaryKey" -}}
{{- $deployments := include "bazaar.deployments" . | fromJson }}
{{- if .Values.canary.deployment }}
{{- .Values.canary.deployment }}
{{- else if eq (len $deployments) 1 }}
{{- keys $deployments | first }}
{{- end }}
{{- end }}

{{/*
The rules values.schema.json cannot express across entries, checked on every render (and the ones
it does express, again, for `--skip-schema-validation`).
*/}}
{{- define "bazaar.validate" -}}
{{- $known := include "bazaar.moduleNames" . | fromJsonArray }}
{{- $entries := include "bazaar.enabledEntries" . | fromJson }}
{{- $deployments := include "bazaar.deployments" . | fromJson }}
{{- $seen := dict }}
{{- $rest := "" }}
{{- if not $deployments }}
{{- fail "deployments: name at least one Deployment and its modules" }}
{{- end }}
{{- range $key, $entry := $entries }}
{{- if not (regexMatch "^[a-z]([-a-z0-9]*[a-z0-9])?$" $key) }}
{{- fail (printf "deployments.%s: a Deployment key is a DNS label (lower-case letters, digits and '-')" $key) }}
{{- end }}
{{- if or (eq $key "migrate") (hasSuffix "-canary" $key) }}
{{- fail (printf "deployments.%s: 'migrate' and names ending in '-canary' are the chart's own" $key) }}
{{- end }}
{{- if not $entry.modules }}
{{- fail (printf "deployments.%s.modules: names no module" $key) }}
{{- end }}
{{- range $entry.modules }}
{{- if eq (toString .) "*" }}
{{- if and $rest (ne $rest $key) }}
{{- fail (printf "deployments: both '%s' and '%s' host \"*\" (every module no other Deployment names); one Deployment at most may" $rest $key) }}
{{- end }}
{{- $rest = $key }}
{{- else }}
{{- if not (has . $known) }}
{{- fail (printf "deployments.%s.modules: unknown module '%s' (known, from files/modules.json: %s; \"*\": every module no other Deployment names)" $key . (join ", " $known)) }}
{{- end }}
{{- if hasKey $seen . }}
{{- fail (printf "deployments: module '%s' is hosted by both '%s' and '%s'; a module is hosted by exactly one Deployment" . (get $seen .) $key) }}
{{- end }}
{{- $_ := set $seen . $key }}
{{- end }}
{{- end }}
{{- end }}
{{- if and $rest (not (get $deployments $rest).modules) }}
{{- fail (printf "deployments.%s.modules: \"*\" (every module no other Deployment names) is left with none: the other Deployments name them all; leave %s out or name fewer modules elsewhere" $rest $rest) }}
{{- end }}
{{- range $known }}
{{- if not (or (hasKey $seen .) $rest) }}
{{- fail (printf "deployments: no Deployment hosts module '%s'; every module is hosted by exactly one (name it, or give one Deployment modules: [\"*\"])" .) }}
{{- end }}
{{- end }}
{{- /* SIGKILL must not come before the delay and the drain are over (env may override either). */}}
{{- range $key, $d := $deployments }}
{{- $delay := dig "BAZAAR__SERVER__SHUTDOWN_DELAY_SECS" (dig "BAZAAR__SERVER__SHUTDOWN_DELAY_SECS" $.Values.server.shutdownDelaySecs $.Values.env) ($d.env | default dict) | int }}
{{- $timeout := dig "BAZAAR__SERVER__SHUTDOWN_TIMEOUT_SECS" (dig "BAZAAR__SERVER__SHUTDOWN_TIMEOUT_SECS" $.Values.server.shutdownTimeoutSecs $.Values.env) ($d.env | default dict) | int }}
{{- $grace := int $d.terminationGracePeriodSeconds }}
{{- if le $grace (add $delay $timeout) }}
{{- $where := ternary (printf "deployments.%s.terminationGracePeriodSeconds" $key) (printf "deploymentDefaults.terminationGracePeriodSeconds (Deployment %s)" $key) (hasKey (get $.Values.deployments $key) "terminationGracePeriodSeconds") }}
{{- fail (printf "%s: %d s leaves no time to drain after server.shutdownDelaySecs (%d) + server.shutdownTimeoutSecs (%d): give it more than %d s, or shorten those" $where $grace $delay $timeout (add $delay $timeout)) }}
{{- end }}
{{- end }}
{{- $several := gt (len $deployments) 1 }}
{{- if and $several (ne .Values.bus.kind "rabbitmq") }}
{{- fail (printf "bus.kind: '%s' cannot connect %d Deployments; several Deployments need bus.kind rabbitmq" .Values.bus.kind (len $deployments)) }}
{{- end }}
{{- if and (eq .Values.bus.kind "rabbitmq") (not .Values.bus.rabbitmq.url) (not .Values.existingSecret) }}
{{- fail "bus.rabbitmq.url: the RabbitMQ bus needs the broker's URL (or existingSecret with key rabbitmq-url)" }}
{{- end }}
{{- if eq .Values.database.kind "sqlite" }}
{{- if $several }}
{{- fail "database.kind: sqlite keeps the files on one volume of one Deployment; several Deployments need database.kind external" }}
{{- end }}
{{- range $key, $d := $deployments }}
{{- if or (ne (int $d.replicas) 1) $d.autoscaling.enabled }}
{{- fail (printf "deployments.%s: with database.kind sqlite the Deployment runs exactly one replica (replicas: 1, autoscaling off)" $key) }}
{{- end }}
{{- end }}
{{- if $.Values.canary.enabled }}
{{- fail "canary.enabled: a canary cannot share the SQLite volume; use database.kind external" }}
{{- end }}
{{- else }}
{{- if and (not .Values.database.url) (not .Values.existingSecret) }}
{{- range $known }}
{{- if not (get $.Values.database.modules .) }}
{{- fail (printf "database.url: module '%s' has no database: set database.url (a template with {module}), database.modules.%s or existingSecret" . .) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}
{{- if not .Values.existingSecret }}
{{- $placeholders := list }}
{{- if contains "CHANGE-ME" .Values.bus.rabbitmq.url }}
{{- $placeholders = append $placeholders "bus.rabbitmq.url" }}
{{- end }}
{{- if contains "CHANGE-ME" .Values.database.url }}
{{- $placeholders = append $placeholders "database.url" }}
{{- end }}
{{- range $module, $url := .Values.database.modules }}
{{- if contains "CHANGE-ME" (toString $url) }}
{{- $placeholders = append $placeholders (printf "database.modules.%s" $module) }}
{{- end }}
{{- end }}
{{- if $placeholders }}
{{- fail (printf "%s: still values-split.yaml's CHANGE-ME placeholder; give the real URL (--set %s=…) or put the URLs in a Secret of yours (existingSecret)" (join ", " $placeholders) (first $placeholders)) }}
{{- end }}
{{- end }}
{{- if and .Values.database.existingSecretModules (not .Values.existingSecret) }}
{{- fail "database.existingSecretModules: names keys of existingSecret, which is not set (the chart's own Secret takes database.modules)" }}
{{- end }}
{{- range .Values.database.existingSecretModules }}
{{- if not (has . $known) }}
{{- fail (printf "database.existingSecretModules: unknown module '%s' (known: %s)" . (join ", " $known)) }}
{{- end }}
{{- end }}
{{- range $module, $url := .Values.database.modules }}
{{- if not (has $module $known) }}
{{- fail (printf "database.modules: unknown module '%s' (known: %s)" $module (join ", " $known)) }}
{{- end }}
{{- end }}
{{- if .Values.canary.enabled }}
{{- $canary := include "bazaar.canaryKey" . }}
{{- if not $canary }}
{{- fail "canary.deployment: name the Deployment that gets the canary (there are several)" }}
{{- end }}
{{- if not (hasKey $deployments $canary) }}
{{- fail (printf "canary.deployment: '%s' is not a key of deployments" $canary) }}
{{- end }}
{{- if not (or .Values.canary.image.tag .Values.canary.image.digest) }}
{{- fail "canary.image: give the canary's image a tag or a digest" }}
{{- end }}
{{- end }}
{{- $mail := .Values.notifications }}
{{- if eq $mail.transport "smtp" }}
{{- if not $mail.smtp.host }}
{{- fail "notifications.smtp.host: transport smtp needs the mail server's host name" }}
{{- end }}
{{- if and $mail.smtp.password (not $mail.smtp.username) }}
{{- fail "notifications.smtp.password: given without notifications.smtp.username; the server's login takes both (or neither)" }}
{{- end }}
{{- if and $mail.smtp.username (not $mail.smtp.password) (not .Values.existingSecret) }}
{{- fail "notifications.smtp.password: the SMTP login (notifications.smtp.username) needs a password, or existingSecret with key smtp-password" }}
{{- end }}
{{- end }}
{{- include "bazaar.validateSecrets" (dict "root" . "deployments" $deployments) }}
{{- end }}

{{/*
"true" when the notifications module logs in to its SMTP server (transport smtp with a username),
else "": its password is then the Secret's smtp-password. Reads .Values alone (validateSecrets
passes its own).
*/}}
{{- define "bazaar.smtpLogin" -}}
{{- $mail := .Values.notifications }}
{{- if and (eq $mail.transport "smtp") $mail.smtp.username }}true{{ end }}
{{- end }}

{{/*
`secrets` (the operator's keys of the chart's Secret) and `secretEnv` (variables read from the
Secret): (dict "root" $ "deployments" $deployments). A variable has one source: secretEnv may name
no variable the chart or `env` already sets, nor one of the sections the chart's own values set.
*/}}
{{- define "bazaar.validateSecrets" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $secretKey := "^[-._a-zA-Z0-9]+$" }}
{{- /* The keys the chart writes itself, whatever the values: its Secret's data with every URL, the admin and the SMTP login set. */}}
{{- $every := deepCopy $values }}
{{- $_ := set $every "secrets" dict }}
{{- $_ := set $every.bus.rabbitmq "url" "x" }}
{{- $_ := set $every.database "url" "x" }}
{{- $_ := set $every.users "bootstrapAdmin" (dict "email" "x" "password" "x") }}
{{- $_ := set $every.notifications "transport" "smtp" }}
{{- $_ := set $every.notifications "smtp" (dict "username" "x" "password" "x") }}
{{- $_ := set $every.database "modules" dict }}
{{- range include "bazaar.moduleNames" $root | fromJsonArray }}
{{- $_ := set $every.database.modules . "x" }}
{{- end }}
{{- $own := include "bazaar.secretData" (dict "root" (dict "Values" $every) "signingKey" "x") | fromYaml | keys | sortAlpha }}
{{- range $key, $value := $values.secrets }}
{{- if not (regexMatch $secretKey $key) }}
{{- fail (printf "secrets.%s: a Secret key is letters, digits, '-', '_' and '.'" $key) }}
{{- end }}
{{- if has $key $own }}
{{- fail (printf "secrets.%s: a key of the chart's own (%s); give this value where the chart takes it, or the key another name" $key (join ", " $own)) }}
{{- end }}
{{- if or (kindIs "map" $value) (kindIs "slice" $value) (kindIs "invalid" $value) }}
{{- fail (printf "secrets.%s: the value is a string" $key) }}
{{- end }}
{{- end }}
{{- /* Sections the chart's values set; the migration Jobs, which get no secretEnv, read them too. */}}
{{- $sections := dict "DATABASE" "database.*" "MODULES" "deployments.<key>.modules and database.modules" "BUS" "bus.*" }}
{{- /* Every variable the chart sets for a process of this release, and where it comes from. */}}
{{- $set := dict }}
{{- range $name, $_ := include "bazaar.sharedEnv" $root | fromYaml }}
{{- $_ := set $set $name (ternary "env" "the chart (its ConfigMap)" (hasKey $values.env $name)) }}
{{- end }}
{{- range $key, $d := .deployments }}
{{- range include "bazaar.moduleEnv" (dict "root" $root "modules" $d.modules "secret" "x") | fromYamlArray }}
{{- $_ := set $set .name (printf "the chart (Deployment %s, from its own values)" $key) }}
{{- end }}
{{- range $name, $_ := $d.env }}
{{- $_ := set $set $name (ternary (printf "deployments.%s.env" $key) "deploymentDefaults.env" (hasKey (dig "env" dict (get $values.deployments $key)) $name)) }}
{{- end }}
{{- end }}
{{- $available := list }}
{{- if not $values.existingSecret }}
{{- $available = include "bazaar.secretData" (dict "root" $root "signingKey" "x" "extra" $values.secrets) | fromYaml | keys | sortAlpha }}
{{- end }}
{{- range $name, $key := $values.secretEnv }}
{{- if not (regexMatch "^BAZAAR__[A-Z0-9][A-Z0-9_]*$" $name) }}
{{- fail (printf "secretEnv.%s: not a Bazaar setting; a name is BAZAAR__SECTION__KEY in upper case (BAZAAR__PAYMENTS__STRIPE__API_KEY)" $name) }}
{{- end }}
{{- $section := regexReplaceAll "^BAZAAR__([A-Z0-9]+).*$" $name "${1}" }}
{{- if hasKey $sections $section }}
{{- fail (printf "secretEnv.%s: the BAZAAR__%s__… variables are the chart's, set from %s (with existingSecret, from its keys)" $name $section (get $sections $section)) }}
{{- end }}
{{- if hasKey $set $name }}
{{- fail (printf "secretEnv.%s: %s already sets it; a variable has one source" $name (get $set $name)) }}
{{- end }}
{{- if not (and (kindIs "string" $key) (regexMatch $secretKey $key)) }}
{{- fail (printf "secretEnv.%s: '%v' is not a Secret key (letters, digits, '-', '_' and '.')" $name $key) }}
{{- end }}
{{- if and (not $values.existingSecret) (not (has $key $available)) }}
{{- fail (printf "secretEnv.%s: key '%s' is not in the chart's Secret (its keys: %s); add it to secrets (secrets.%s), or use existingSecret" $name $key (join ", " $available) $key) }}
{{- end }}
{{- end }}
{{- end }}

{{/* Settings every process shares: the ConfigMap's data, and the migration Jobs' environment. */}}
{{- define "bazaar.sharedEnv" -}}
{{- $env := dict
  "BAZAAR_ENV" .Values.environment
  "BAZAAR__SERVER__HOST" "0.0.0.0"
  "BAZAAR__SERVER__PORT" (toString .Values.server.port)
  "BAZAAR__SERVER__SHUTDOWN_DELAY_SECS" (toString .Values.server.shutdownDelaySecs)
  "BAZAAR__SERVER__SHUTDOWN_TIMEOUT_SECS" (toString .Values.server.shutdownTimeoutSecs)
  "BAZAAR__TELEMETRY__FORMAT" .Values.telemetry.format
  "BAZAAR__BUS__KIND" .Values.bus.kind
  "BAZAAR__DATABASE__MAX_CONNECTIONS" (toString .Values.database.maxConnections)
  "BAZAAR__AUTH__ISSUER" .Values.auth.issuer
  "BAZAAR__AUTH__AUDIENCE" .Values.auth.audience
}}
{{- if .Values.telemetry.filter }}
{{- $_ := set $env "BAZAAR__TELEMETRY__FILTER" .Values.telemetry.filter }}
{{- end }}
{{- with .Values.server.trustedProxies }}
{{- $_ := set $env "BAZAAR__SERVER__TRUSTED_PROXIES" (join "," .) }}
{{- end }}
{{- with .Values.webhooks }}
{{- $_ := set $env "BAZAAR__WEBHOOKS__ALLOW_PRIVATE_NETWORKS" (toString .allowPrivateNetworks) }}
{{- $_ := set $env "BAZAAR__WEBHOOKS__RETRY_FOR_HOURS" (toString .retryForHours) }}
{{- $_ := set $env "BAZAAR__WEBHOOKS__DISABLE_AFTER_FAILURES" (toString .disableAfterFailures) }}
{{- end }}
{{- with .Values.notifications }}
{{- $_ := set $env "BAZAAR__NOTIFICATIONS__TRANSPORT" .transport }}
{{- range $name, $value := dict "FROM" .from "SHOP_NAME" .shopName "SHOP_URL" .shopUrl "ADMIN_EMAIL" .adminEmail }}
{{- if $value }}
{{- $_ := set $env (printf "BAZAAR__NOTIFICATIONS__%s" $name) $value }}
{{- end }}
{{- end }}
{{- if eq .transport "smtp" }}
{{- $_ := set $env "BAZAAR__NOTIFICATIONS__SMTP__HOST" .smtp.host }}
{{- $_ := set $env "BAZAAR__NOTIFICATIONS__SMTP__PORT" (toString .smtp.port) }}
{{- $_ := set $env "BAZAAR__NOTIFICATIONS__SMTP__TLS" .smtp.tls }}
{{- with .smtp.username }}
{{- $_ := set $env "BAZAAR__NOTIFICATIONS__SMTP__USERNAME" . }}
{{- end }}
{{- end }}
{{- end }}
{{- if eq .Values.database.kind "sqlite" }}
{{- $_ := set $env "BAZAAR__DATABASE__URL" "sqlite:///data/{module}.db?mode=rwc" }}
{{- $_ := set $env "BAZAAR__DATABASE__AUTO_MIGRATE" "true" }}
{{- else }}
{{- $_ := set $env "BAZAAR__DATABASE__AUTO_MIGRATE" (ternary "false" "true" .Values.migrations.enabled) }}
{{- end }}
{{- range $name, $value := .Values.env }}
{{- $_ := set $env $name (toString $value) }}
{{- end }}
{{- toYaml $env }}
{{- end }}

{{/*
The environment of the processes hosting `modules`, beyond the shared settings: which modules,
how tokens are signed or verified, and the secrets they need.
(dict "root" $ "modules" $modules "secret" $secretName)
*/}}
{{- define "bazaar.moduleEnv" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $secret := .secret }}
- name: BAZAAR__MODULES__ENABLED
  value: {{ join "," .modules | quote }}
{{- if has "users" .modules }}
- name: BAZAAR__AUTH__SIGNING_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: signing-key
{{- with $values.users.bootstrapAdmin.email }}
- name: BAZAAR__USERS__BOOTSTRAP_ADMIN__EMAIL
  value: {{ . | quote }}
- name: BAZAAR__USERS__BOOTSTRAP_ADMIN__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: bootstrap-admin-password
{{- end }}
{{- else }}
{{- $hosts := include "bazaar.hosts" $root | fromJson }}
- name: BAZAAR__AUTH__JWKS_URL
  value: {{ printf "http://%s:%v/.well-known/jwks.json" (include "bazaar.componentName" (dict "root" $root "key" (get $hosts "users"))) $values.service.port | quote }}
{{- end }}
{{- if and (has "notifications" .modules) (include "bazaar.smtpLogin" $root) }}
- name: BAZAAR__NOTIFICATIONS__SMTP__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: smtp-password
{{- end }}
{{- if eq $values.bus.kind "rabbitmq" }}
- name: BAZAAR__BUS__RABBITMQ__URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: rabbitmq-url
{{- end }}
{{- if eq $values.database.kind "external" }}
{{- /*
Each module's URL: its own key, or the template's. Every key is required: a missing one stops the
pod rather than leave a module on the image's SQLite default.
*/}}
{{- $own := list }}
{{- range .modules }}
{{- if include "bazaar.hasOwnDatabaseUrl" (dict "root" $root "module" .) }}
{{- $own = append $own . }}
{{- end }}
{{- end }}
{{- /* The chart's own Secret has the template whenever database.url is set: passed as it always was. */}}
{{- if or (lt (len $own) (len .modules)) (and $values.database.url (not $values.existingSecret)) }}
- name: BAZAAR__DATABASE__URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: database-url
{{- end }}
{{- range $own }}
- name: BAZAAR__MODULES__{{ upper . }}__DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}-database-url
{{- end }}
{{- end }}
{{- end }}

{{/* "true" when `module` has a URL of its own (else ""): (dict "root" $ "module" $module). */}}
{{- define "bazaar.hasOwnDatabaseUrl" -}}
{{- $values := .root.Values }}
{{- if $values.existingSecret }}
{{- if has .module $values.database.existingSecretModules }}true{{ end }}
{{- else if get $values.database.modules .module }}true{{ end }}
{{- end }}

{{/*
The Secret's data, base64-encoded: (dict "root" $ "signingKey" $pem "extra" $.Values.secrets).
`extra`, the operator's own keys, is left out of the migration hooks' copy: the Jobs get no secretEnv.
*/}}
{{- define "bazaar.secretData" -}}
{{- $values := .root.Values -}}
signing-key: {{ .signingKey }}
{{- if $values.bus.rabbitmq.url }}
rabbitmq-url: {{ $values.bus.rabbitmq.url | b64enc }}
{{- end }}
{{- if $values.database.url }}
database-url: {{ $values.database.url | b64enc }}
{{- end }}
{{- range $module, $url := $values.database.modules }}
{{- if $url }}
{{ $module }}-database-url: {{ $url | b64enc }}
{{- end }}
{{- end }}
{{- if $values.users.bootstrapAdmin.email }}
bootstrap-admin-password: {{ required "users.bootstrapAdmin.password: the bootstrap admin needs a password" $values.users.bootstrapAdmin.password | b64enc }}
{{- end }}
{{- if include "bazaar.smtpLogin" .root }}
smtp-password: {{ required "notifications.smtp.password: the SMTP login (notifications.smtp.username) needs a password, or existingSecret with key smtp-password" $values.notifications.smtp.password | b64enc }}
{{- end }}
{{- range $key, $value := .extra }}
{{ $key | quote }}: {{ toString $value | b64enc }}
{{- end }}
{{- end }}

{{/* What a change of forces the pods to restart: the Secret's inputs, not its (generated) key. */}}
{{- define "bazaar.secretChecksum" -}}
{{- list .Values.existingSecret .Values.auth .Values.bus .Values.database .Values.users .Values.notifications.smtp .Values.secrets | toJson | sha256sum }}
{{- end }}

{{/*
One Deployment, stable or canary.
(dict "root" $ "key" $key "d" $settings "name" $name "track" "stable"|"canary" "image" $image "replicas" $n)
*/}}
{{- define "bazaar.deployment" -}}
{{- $root := .root }}
{{- $values := $root.Values }}
{{- $d := .d }}
{{- $sqlite := eq $values.database.kind "sqlite" }}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  namespace: {{ $root.Release.Namespace }}
  labels:
    {{- include "bazaar.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .key }}
    track: {{ .track }}
spec:
  {{- if not (and (eq .track "stable") $d.autoscaling.enabled) }}
  replicas: {{ .replicas }}
  {{- end }}
  revisionHistoryLimit: 5
  {{- if $sqlite }}
  # One process owns the SQLite files: the old pod stops before the new one opens them.
  strategy:
    type: Recreate
  {{- end }}
  selector:
    matchLabels:
      {{- include "bazaar.componentSelectorLabels" (dict "root" $root "key" .key) | nindent 6 }}
      track: {{ .track }}
  template:
    metadata:
      labels:
        {{- include "bazaar.labels" $root | nindent 8 }}
        app.kubernetes.io/component: {{ .key }}
        track: {{ .track }}
        {{- with $d.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "bazaar.sharedEnv" $root | sha256sum }}
        checksum/secret: {{ include "bazaar.secretChecksum" $root }}
        {{- with $d.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "bazaar.serviceAccountName" $root }}
      automountServiceAccountToken: false
      {{- with $values.imagePullSecrets }}
      imagePullSecrets:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      securityContext:
        {{- toYaml $values.podSecurityContext | nindent 8 }}
      terminationGracePeriodSeconds: {{ $d.terminationGracePeriodSeconds }}
      containers:
        - name: bazaar
          image: {{ .image }}
          imagePullPolicy: {{ $values.image.pullPolicy }}
          args: [serve]
          ports:
            - name: http
              containerPort: {{ $values.server.port }}
              protocol: TCP
          envFrom:
            - configMapRef:
                name: {{ include "bazaar.fullname" $root }}
          env:
            {{- include "bazaar.moduleEnv" (dict "root" $root "modules" $d.modules "secret" (include "bazaar.secretName" $root)) | nindent 12 }}
            {{- range $name, $key := $values.secretEnv }}
            - name: {{ $name }}
              valueFrom:
                secretKeyRef:
                  name: {{ include "bazaar.secretName" $root }}
                  key: {{ $key | quote }}
            {{- end }}
            {{- range $name, $value := $d.env }}
            - name: {{ $name }}
              value: {{ toString $value | quote }}
            {{- end }}
          startupProbe:
            httpGet:
              path: /health/live
              port: http
            periodSeconds: 2
            failureThreshold: 60
          livenessProbe:
            httpGet:
              path: /health/live
              port: http
            periodSeconds: 10
            timeoutSeconds: 3
            failureThreshold: 3
          readinessProbe:
            httpGet:
              path: /health/ready
              port: http
            periodSeconds: 5
            timeoutSeconds: 3
            failureThreshold: 2
          resources:
            {{- toYaml $d.resources | nindent 12 }}
          securityContext:
            {{- toYaml $values.securityContext | nindent 12 }}
          volumeMounts:
            - name: data
              mountPath: /data
            - name: tmp
              mountPath: /tmp
      volumes:
        - name: data
          {{- if $sqlite }}
          persistentVolumeClaim:
            claimName: {{ $values.persistence.existingClaim | default (include "bazaar.objectName" (dict "root" $root "suffix" "-data")) }}
          {{- else }}
          emptyDir:
            sizeLimit: 64Mi
          {{- end }}
        - name: tmp
          emptyDir:
            sizeLimit: 64Mi
      {{- with $d.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $d.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $d.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $d.topologySpreadConstraints }}
      topologySpreadConstraints:
        {{- toYaml . | nindent 8 }}
      {{- end }}
{{- end }}
