{{/* Names ---------------------------------------------------------------------------------------- */}}
{{- define "hepsonic.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "hepsonic.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "hepsonic.triton.fullname" -}}{{ include "hepsonic.fullname" . }}-triton{{- end -}}
{{- define "hepsonic.triton.headless" -}}{{ include "hepsonic.fullname" . }}-triton-headless{{- end -}}
{{- define "hepsonic.gateway.fullname" -}}{{ include "hepsonic.fullname" . }}-gateway{{- end -}}
{{- define "hepsonic.gateway.peers" -}}{{ include "hepsonic.fullname" . }}-gateway-peers{{- end -}}

{{- define "hepsonic.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hepsonic.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The in-cluster DNS name of the headless Triton Service: one A record per ready Triton pod. */}}
{{- define "hepsonic.triton.headlessHost" -}}
{{- printf "%s.%s.svc.cluster.local" (include "hepsonic.triton.headless" .) .Release.Namespace -}}
{{- end -}}

{{/* HEPSONIC_PEERS of every gateway pod: the headless peers Service, one A record per ready gateway pod. */}}
{{- define "hepsonic.gateway.peersAddress" -}}
{{- printf "%s%s.%s.svc.cluster.local:%d" (ternary "https://" "" .Values.gateway.tls.enabled) (include "hepsonic.gateway.peers" .) .Release.Namespace (int .Values.gateway.service.httpPort) -}}
{{- end -}}

{{/* Labels ---------------------------------------------------------------------------------------- */}}
{{- define "hepsonic.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "hepsonic.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: hepsonic
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component; call with (dict "ctx" $ "component" "triton"). */}}
{{- define "hepsonic.selectorLabels" -}}
app.kubernetes.io/name: {{ include "hepsonic.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Images ---------------------------------------------------------------------------------------- */}}
{{- define "hepsonic.image" -}}
{{- printf "%s:%s" .image.repository (default .ctx.Chart.AppVersion .image.tag) -}}
{{- end -}}

{{- define "hepsonic.triton.image" -}}
{{- $image := ternary .Values.triton.image.gpu .Values.triton.image.cpu (eq .Values.triton.mode "gpu") -}}
{{- include "hepsonic.image" (dict "image" $image "ctx" .) -}}
{{- end -}}

{{/* Autoscaling metric ------------------------------------------------------------------------------
Mean queue time per request (microseconds) over the window, across all Triton pods and models:
  increase(nv_inference_queue_duration_us) / increase(nv_inference_request_success)
nv_inference_queue_duration_us sums the queue time of every request, so the divisor must count
requests; nv_inference_exec_count counts batch executions and would inflate the ratio by the batch
size. clamp_min keeps an idle cluster at 0 instead of NaN. */}}
{{- define "hepsonic.autoscaling.selector" -}}
{{- if .Values.triton.autoscaling.metricSelector -}}
{{- .Values.triton.autoscaling.metricSelector -}}
{{- else -}}
{{- printf "namespace=%q,service=%q" .Release.Namespace (include "hepsonic.triton.headless" .) -}}
{{- end -}}
{{- end -}}

{{- define "hepsonic.autoscaling.query" -}}
{{- $sel := include "hepsonic.autoscaling.selector" . -}}
{{- $w := .Values.triton.autoscaling.window -}}
{{- printf "sum(increase(nv_inference_queue_duration_us{%s}[%s])) / clamp_min(sum(increase(nv_inference_request_success{%s}[%s])), 1)" $sel $w $sel $w -}}
{{- end -}}

{{/* Values validation -------------------------------------------------------------------------------
Each check returns "" or one message; all messages are collected and reported together. */}}
{{- define "hepsonic.validateValues" -}}
{{- $messages := list -}}
{{- $messages = append $messages (include "hepsonic.validateValues.modelRepository" . | trim) -}}
{{- $messages = append $messages (include "hepsonic.validateValues.drain" . | trim) -}}
{{- $messages = append $messages (include "hepsonic.validateValues.gpu" . | trim) -}}
{{- $messages = append $messages (include "hepsonic.validateValues.autoscaling" . | trim) -}}
{{- $messages = append $messages (include "hepsonic.validateValues.apiKeys" . | trim) -}}
{{- $messages = append $messages (include "hepsonic.validateValues.tls" . | trim) -}}
{{- $messages = append $messages (include "hepsonic.validateValues.ingress" . | trim) -}}
{{- $messages = append $messages (include "hepsonic.validateValues.routing" . | trim) -}}
{{- $messages = without $messages "" -}}
{{- if $messages -}}
{{- printf "\nVALUES VALIDATION:\n%s" (join "\n" $messages) | fail -}}
{{- end -}}
{{- end -}}

{{- define "hepsonic.validateValues.modelRepository" -}}
{{- $repo := .Values.triton.modelRepository -}}
{{- if and (eq $repo.source "pvc") (not $repo.pvc.claimName) -}}
triton.modelRepository.pvc.claimName: source is `pvc` but no claim is named; set it to an existing PVC holding model_repository/, or choose another source (hostPath, nfs, initContainer).
{{- else if and (eq $repo.source "hostPath") (not $repo.hostPath.path) -}}
triton.modelRepository.hostPath.path: source is `hostPath` but no node path is given; set the NFS/CVMFS directory that holds model_repository/ on the nodes.
{{- else if and (eq $repo.source "nfs") (or (not $repo.nfs.server) (not $repo.nfs.path)) -}}
triton.modelRepository.nfs: source is `nfs` but server or path is empty; set both.
{{- else if and (eq $repo.source "initContainer") (not $repo.initContainer.image.repository) -}}
triton.modelRepository.initContainer.image.repository: source is `initContainer` but no image is given; build one with deploy/docker/model-repository.Dockerfile.
{{- end -}}
{{- end -}}

{{- define "hepsonic.validateValues.drain" -}}
{{- $drain := .Values.triton.drain -}}
{{- $readiness := .Values.triton.probes.readiness -}}
{{- $needed := add $drain.seconds $drain.exitTimeoutSeconds 5 -}}
{{- $notice := add (mul $readiness.periodSeconds $readiness.failureThreshold) .Values.gateway.routing.discoverIntervalSeconds -}}
{{- if lt (int $drain.terminationGracePeriodSeconds) (int $needed) -}}
triton.drain.terminationGracePeriodSeconds: {{ $drain.terminationGracePeriodSeconds }} s is shorter than drain.seconds ({{ $drain.seconds }}) + exitTimeoutSeconds ({{ $drain.exitTimeoutSeconds }}) + 5; Kubernetes would kill Triton mid-drain. Set it to at least {{ $needed }}.
{{- else if lt (int $drain.seconds) (int $notice) -}}
triton.drain.seconds: {{ $drain.seconds }} s ends before the gateway can notice the drain (readiness period x failureThreshold + gateway.routing.discoverIntervalSeconds = {{ $notice }} s); requests would still arrive after SIGTERM. Set it to at least {{ $notice }}.
{{- end -}}
{{- end -}}

{{- define "hepsonic.validateValues.gpu" -}}
{{- if and (eq .Values.triton.mode "gpu") (lt (int .Values.triton.gpu.count) 1) -}}
triton.gpu.count: mode is `gpu` but {{ .Values.triton.gpu.count }} GPUs are requested per pod; request at least 1, or set triton.mode=cpu.
{{- end -}}
{{- end -}}

{{- define "hepsonic.validateValues.autoscaling" -}}
{{- $as := .Values.triton.autoscaling -}}
{{- if $as.enabled -}}
{{- if not $as.prometheusAddress -}}
triton.autoscaling.prometheusAddress: autoscaling is enabled but KEDA has no Prometheus to query; set the URL (e.g. http://prometheus-operated.monitoring.svc:9090).
{{ end -}}
{{- if gt (int $as.minReplicas) (int $as.maxReplicas) -}}
triton.autoscaling: minReplicas ({{ $as.minReplicas }}) is larger than maxReplicas ({{ $as.maxReplicas }}).
{{ end -}}
{{- end -}}
{{- $gw := .Values.gateway.autoscaling -}}
{{- if and $gw.enabled (gt (int $gw.minReplicas) (int $gw.maxReplicas)) -}}
gateway.autoscaling: minReplicas ({{ $gw.minReplicas }}) is larger than maxReplicas ({{ $gw.maxReplicas }}).
{{ end -}}
{{- end -}}

{{- define "hepsonic.validateValues.apiKeys" -}}
{{- $keys := .Values.gateway.apiKeys -}}
{{- if and (eq .Values.gateway.environment "production") (not $keys.existingSecret) (not $keys.keys) -}}
gateway.apiKeys: environment is `production` but no API keys are configured; set gateway.apiKeys.existingSecret (a Secret with the keys YAML) or gateway.apiKeys.keys, or use gateway.environment=development for a test cluster.
{{- else if and $keys.existingSecret $keys.keys -}}
gateway.apiKeys: both existingSecret and keys are set; choose one.
{{- end -}}
{{- end -}}

{{- define "hepsonic.validateValues.tls" -}}
{{- if and .Values.gateway.tls.enabled (not .Values.gateway.tls.existingSecret) -}}
gateway.tls.existingSecret: gateway TLS is enabled but no kubernetes.io/tls Secret is named.
{{- end -}}
{{- end -}}

{{- define "hepsonic.validateValues.ingress" -}}
{{- $ing := .Values.gateway.ingress -}}
{{- if $ing.enabled -}}
{{- if not $ing.host -}}
gateway.ingress.host: the Ingress is enabled but has no host name.
{{ end -}}
{{- if and $ing.tls.enabled (not $ing.tls.secretName) -}}
gateway.ingress.tls.secretName: Ingress TLS is enabled but no certificate Secret is named.
{{ end -}}
{{- if and $ing.grpc.enabled (not $ing.grpc.host) -}}
gateway.ingress.grpc.host: the gRPC Ingress is enabled but has no host name.
{{ end -}}
{{- if and $ing.grpc.enabled (not $ing.tls.enabled) -}}
gateway.ingress.grpc: gRPC through an Ingress needs HTTP/2, i.e. TLS; enable gateway.ingress.tls.
{{ end -}}
{{- end -}}
{{- end -}}

{{- define "hepsonic.validateValues.routing" -}}
{{- $pools := keys .Values.gateway.routing.extraPools | concat (list "default") -}}
{{- range $model, $route := .Values.gateway.routing.models -}}
{{- if not (has (toString $route.pool) $pools) -}}
gateway.routing.models.{{ $model }}.pool: pool {{ $route.pool | quote }} does not exist; known pools: {{ join ", " $pools }}.
{{ end -}}
{{- end -}}
{{- end -}}
