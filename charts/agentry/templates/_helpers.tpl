{{- define "agentry.labels" -}}
app.kubernetes.io/name: agentry-manager
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- /* The manager pods' labels; runner NetworkPolicies admit the gateway by them (cmd/main.go). */ -}}
{{- define "agentry.selectorLabels" -}}
app.kubernetes.io/name: agentry-manager
{{- end -}}

{{- /* Labels of objects that are not the manager (helm test objects, dashboards). */ -}}
{{- define "agentry.commonLabels" -}}
app.kubernetes.io/part-of: agentry
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "agentry.gatewayURL" -}}
{{- if eq .Values.gateway.tls.mode "none" -}}http{{- else -}}https{{- end -}}
://agentry-gateway.{{ .Release.Namespace }}.svc:{{ .Values.gateway.port }}
{{- end -}}

{{- /* The Secret holding the S3 endpoint and credentials; fails unless exactly one way is used. */ -}}
{{- define "agentry.s3Secret" -}}
{{- $s3 := .Values.s3 -}}
{{- $inline := or $s3.endpoint $s3.accessKey $s3.secretKey -}}
{{- if and $s3.existingSecret $inline -}}
{{- fail "s3: set either s3.existingSecret or s3.endpoint/s3.accessKey/s3.secretKey, not both (to use the inline values, set s3.existingSecret to \"\")" -}}
{{- else if $s3.existingSecret -}}
{{- $s3.existingSecret -}}
{{- else if and $s3.endpoint $s3.accessKey $s3.secretKey -}}
agentry-s3
{{- else if $inline -}}
{{- fail "s3: s3.endpoint, s3.accessKey and s3.secretKey must all be set (or name a Secret in s3.existingSecret)" -}}
{{- else -}}
{{- fail "s3: object storage is required: set s3.existingSecret (a Secret with keys endpoint, accessKey, secretKey) or s3.endpoint, s3.accessKey and s3.secretKey" -}}
{{- end -}}
{{- end -}}

{{- define "agentry.modelProviderSecret" -}}
{{- $mp := .Values.modelProvider -}}
{{- if and $mp.apiKey $mp.existingSecret -}}
{{- fail "modelProvider: set either modelProvider.apiKey or modelProvider.existingSecret, not both" -}}
{{- else if $mp.existingSecret -}}
{{- $mp.existingSecret -}}
{{- else if $mp.apiKey -}}
{{- printf "%s-api-key" $mp.name -}}
{{- else -}}
{{- fail "modelProvider.create: set modelProvider.apiKey or modelProvider.existingSecret (a Secret in the release namespace holding the API key)" -}}
{{- end -}}
{{- end -}}

{{- define "agentry.testNamespace" -}}
{{- .Values.test.namespace | default .Release.Namespace -}}
{{- end -}}

{{- define "agentry.testProvider" -}}
{{- if .Values.test.modelProvider -}}
{{- .Values.test.modelProvider -}}
{{- else if .Values.modelProvider.create -}}
{{- .Values.modelProvider.name -}}
{{- end -}}
{{- end -}}
