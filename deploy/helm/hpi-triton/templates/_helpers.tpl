{{- define "hpi-triton.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hpi-triton.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hpi-triton.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hpi-triton.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hpi-triton.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "hpi-triton.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "hpi-triton.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hpi-triton.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Where tritonserver reads the repository from. */}}
{{- define "hpi-triton.repositoryLocation" -}}
{{- $source := .Values.repository.source -}}
{{- if eq $source "objectStore" -}}
{{- required "repository.objectStore.url is required with repository.source=objectStore (s3://, gs:// or as://)" .Values.repository.objectStore.url -}}
{{- else if or (eq $source "image") (eq $source "volume") -}}
{{- .Values.repository.path -}}
{{- else -}}
{{- fail (printf "repository.source %q; expected image, volume or objectStore" $source) -}}
{{- end -}}
{{- end -}}
