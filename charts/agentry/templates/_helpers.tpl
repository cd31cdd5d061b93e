{{- define "agentry.labels" -}}
app.kubernetes.io/name: agentry-manager
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "agentry.selectorLabels" -}}
app.kubernetes.io/name: agentry-manager
{{- end -}}
