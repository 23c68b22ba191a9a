{{/* The chart name, shortened to the 63 characters a label value allows. */}}
{{- define "llm-batch-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The full name of the release's objects. */}}
{{- define "llm-batch-operator.fullname" -}}
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

{{/* The recommended labels (app.kubernetes.io/*) on every object. */}}
{{- define "llm-batch-operator.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "llm-batch-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llm-batch-operator
{{- end }}

{{/* Labels that select the controller pods (never change them: selectors are immutable). */}}
{{- define "llm-batch-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-batch-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: controller
{{- end }}

{{/* Labels that select the simulator pods. */}}
{{- define "llm-batch-operator.simulatorSelectorLabels" -}}
app.kubernetes.io/name: {{ include "llm-batch-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: simulator
{{- end }}

{{- define "llm-batch-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "llm-batch-operator.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* repository:tag or repository@digest. */}}
{{- define "llm-batch-operator.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "llm-batch-operator.leaderElectionNamespace" -}}
{{- default .Release.Namespace .Values.leaderElection.namespace }}
{{- end }}

{{/* The restricted Pod Security Standard, for every pod of the chart. */}}
{{- define "llm-batch-operator.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{- define "llm-batch-operator.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
Egress of every pod the operator runs (the controller and its Jobs): DNS anywhere, and any
other port to any address but link-local / cloud-metadata ones (169.254.0.0/16, fe80::/10,
fd00:ec2::254/128): the API server, gateways and object stores are reached, instance
credentials and metadata never.
*/}}
{{- define "llm-batch-operator.egressRules" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- to:
    - ipBlock:
        cidr: 0.0.0.0/0
        except:
          - 169.254.0.0/16
    - ipBlock:
        cidr: ::/0
        except:
          - fe80::/10
          - fd00:ec2::254/128
{{- end }}

{{/* The labels every Job the controller starts carries (src/controller/jobs.rs), and its pods. */}}
{{- define "llm-batch-operator.jobSelectorLabels" -}}
app.kubernetes.io/name: llm-batch-operator
app.kubernetes.io/managed-by: llm-batch-operator
{{- end }}

{{/* The job label of the controller's series the alerts select: the metrics Service's name
(what a ServiceMonitor scrape gets) unless prometheusRule.job says otherwise. */}}
{{- define "llm-batch-operator.alertJob" -}}
{{- default (printf "%s-metrics" (include "llm-batch-operator.fullname" .)) .Values.prometheusRule.job }}
{{- end }}
