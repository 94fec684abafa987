{{/* Names, labels and the webhook certificate shared by the templates. */}}

{{- define "telechat-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-telechat-operator, or the release name when it contains the chart name; 52 characters at most
so that suffixes such as "-webhook-tls" still fit in 63. */}}
{{- define "telechat-operator.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "telechat-operator.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "telechat-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "telechat-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "telechat-operator.labels" -}}
helm.sh/chart: {{ include "telechat-operator.chart" . }}
{{ include "telechat-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: telechat
{{- end }}

{{- define "telechat-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "telechat-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "telechat-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "telechat-operator.webhookServiceName" -}}
{{- printf "%s-webhook" (include "telechat-operator.fullname" .) }}
{{- end }}

{{- define "telechat-operator.webhookSecretName" -}}
{{- printf "%s-webhook-tls" (include "telechat-operator.fullname" .) }}
{{- end }}

{{/*
The webhook's CA and serving certificate, as a dict {ca.crt, tls.crt, tls.key} of base64 strings.
An existing Secret is reused (`lookup`), so upgrades keep the certificate and the caBundle stable; otherwise
a CA and a certificate for the Service's DNS names are generated. The result is memoised in .Values so
that the Secret, the webhook configuration and the pod annotation of one render agree.
*/}}
{{- define "telechat-operator.webhookCert" -}}
{{- if not (hasKey .Values "__webhookCert") }}
{{- $secret := lookup "v1" "Secret" .Release.Namespace (include "telechat-operator.webhookSecretName" .) }}
{{- $data := dict }}
{{- if and $secret $secret.data }}
{{- $data = $secret.data }}
{{- end }}
{{- $cert := dict }}
{{- if and (index $data "ca.crt") (index $data "tls.crt") (index $data "tls.key") }}
{{- $cert = dict "ca.crt" (index $data "ca.crt") "tls.crt" (index $data "tls.crt") "tls.key" (index $data "tls.key") }}
{{- else }}
{{- $svc := include "telechat-operator.webhookServiceName" . }}
{{- $ns := .Release.Namespace }}
{{- $days := int .Values.webhook.certificate.validityDays }}
{{- $names := list $svc (printf "%s.%s" $svc $ns) (printf "%s.%s.svc" $svc $ns) (printf "%s.%s.svc.cluster.local" $svc $ns) }}
{{- $ca := genCA (printf "%s-webhook-ca" (include "telechat-operator.fullname" .)) $days }}
{{- $leaf := genSignedCert (printf "%s.%s.svc" $svc $ns) nil $names $days $ca }}
{{- $cert = dict "ca.crt" ($ca.Cert | b64enc) "tls.crt" ($leaf.Cert | b64enc) "tls.key" ($leaf.Key | b64enc) }}
{{- end }}
{{- $_ := set .Values "__webhookCert" $cert }}
{{- end }}
{{- toYaml (get .Values "__webhookCert") }}
{{- end }}

{{/* Rules for the namespaced objects the operator watches and writes (a ClusterRole or one Role per namespace). */}}
{{- define "telechat-operator.namespacedRules" -}}
# The custom resources: read, and write only their status (the spec belongs to users and GitOps).
- apiGroups: ["telechat.ai"]
  resources: ["telechatdeployments", "telechatbatchjobs"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["telechat.ai"]
  resources: ["telechatdeployments/status", "telechatbatchjobs/status"]
  verbs: ["patch"]
# Children, written by server-side apply (PATCH, which creates when missing). ConfigMaps, Services and
# Deployments are never deleted by the operator: owner references let the garbage collector do that.
- apiGroups: [""]
  resources: ["configmaps", "services"]
  verbs: ["get", "list", "watch", "create", "patch"]
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch"]
# The model cache PVC is also deleted when the spec stops asking for it.
- apiGroups: [""]
  resources: ["persistentvolumeclaims"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# Batch inference Jobs of TeleChatBatchJobs.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "patch", "delete"]
# vLLM pods: read only, for readiness and crash reasons in status.
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list", "watch"]
# Secrets named by spec.model.hfTokenSecretRef / spec.apiKeySecretRef: checked to exist, by name only.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get"]
# Events on condition transitions.
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end }}
