package agent

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The synthetic cluster (test/synth) holds only what the translator reads. Objects read from
// the API server carry much more, and that surplus is exactly what the cache transforms exist to
// drop: measuring the cache on bare synth objects would flatter a transform that strips nothing.
// The functions below dress each object the way a Deployment's pod, a kubectl-applied policy and
// a namespace look when listed from a real cluster (field values modelled on kubectl get -o yaml
// of kind and GKE clusters), deterministically from the object's index.

// epoch is the creation time of every object, so that serialised objects are reproducible.
var epoch = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// hexID is a stable 64-hex-digit identifier (image digest, container ID) derived from parts.
func hexID(parts ...string) string {
	sum := sha256.Sum256([]byte(strings.Join(parts, "/")))
	return hex.EncodeToString(sum[:])
}

// uid is a stable UUID-shaped uid.
func uid(parts ...string) types.UID {
	h := hexID(parts...)
	return types.UID(h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32])
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// podFieldsSpec is the managed-fields entry kube-controller-manager owns on a ReplicaSet's pod
// (what it set at creation), trimmed to one container; %[1]s is the container name.
const podFieldsSpec = `{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/restartedAt":{},"f:prometheus.io/port":{},"f:prometheus.io/scrape":{}},"f:generateName":{},"f:labels":{".":{},"f:app":{},"f:pod-template-hash":{},"f:tier":{},"f:version":{}},"f:ownerReferences":{".":{},"k:{\"uid\":\"%[2]s\"}":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"%[1]s\"}":{".":{},"f:env":{".":{},"k:{\"name\":\"LOG_LEVEL\"}":{".":{},"f:name":{},"f:value":{}},"k:{\"name\":\"POD_IP\"}":{".":{},"f:name":{},"f:valueFrom":{".":{},"f:fieldRef":{}}},"k:{\"name\":\"POD_NAME\"}":{".":{},"f:name":{},"f:valueFrom":{".":{},"f:fieldRef":{}}},"k:{\"name\":\"POD_NAMESPACE\"}":{".":{},"f:name":{},"f:valueFrom":{".":{},"f:fieldRef":{}}}},"f:image":{},"f:imagePullPolicy":{},"f:livenessProbe":{".":{},"f:failureThreshold":{},"f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}},"f:initialDelaySeconds":{},"f:periodSeconds":{},"f:successThreshold":{},"f:timeoutSeconds":{}},"f:name":{},"f:ports":{".":{},"k:{\"containerPort\":8080,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{},"f:name":{},"f:protocol":{}}},"f:readinessProbe":{".":{},"f:failureThreshold":{},"f:httpGet":{".":{},"f:path":{},"f:port":{},"f:scheme":{}},"f:periodSeconds":{},"f:successThreshold":{},"f:timeoutSeconds":{}},"f:resources":{".":{},"f:limits":{".":{},"f:memory":{}},"f:requests":{".":{},"f:cpu":{},"f:memory":{}}},"f:securityContext":{".":{},"f:allowPrivilegeEscalation":{},"f:capabilities":{".":{},"f:drop":{}},"f:readOnlyRootFilesystem":{},"f:runAsNonRoot":{}},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{},"f:volumeMounts":{".":{},"k:{\"mountPath\":\"/etc/app\"}":{".":{},"f:mountPath":{},"f:name":{},"f:readOnly":{}}}}},"f:dnsPolicy":{},"f:enableServiceLinks":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:serviceAccount":{},"f:serviceAccountName":{},"f:terminationGracePeriodSeconds":{},"f:volumes":{".":{},"k:{\"name\":\"config\"}":{".":{},"f:configMap":{".":{},"f:defaultMode":{},"f:name":{}},"f:name":{}}}}}`

// podFieldsStatus is the managed-fields entry the kubelet owns (the status subresource).
const podFieldsStatus = `{"f:status":{"f:conditions":{"k:{\"type\":\"ContainersReady\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Initialized\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"PodReadyToStartContainers\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}},"k:{\"type\":\"Ready\"}":{".":{},"f:lastProbeTime":{},"f:lastTransitionTime":{},"f:status":{},"f:type":{}}},"f:containerStatuses":{},"f:hostIP":{},"f:hostIPs":{},"f:phase":{},"f:podIP":{},"f:podIPs":{".":{},"k:{\"ip\":\"%[1]s\"}":{".":{},"f:ip":{}}},"f:startTime":{}}}`

// realisticPod returns a copy of p (the i-th synthetic pod) as the API server would list it.
func realisticPod(p *corev1.Pod, i int) *corev1.Pod {
	p = p.DeepCopy()
	created := metav1.NewTime(epoch.Add(time.Duration(i) * time.Second))
	app := p.Labels["app"]
	rsName := app + "-" + p.Labels["pod-template-hash"]
	rsUID := uid(p.Namespace, "replicaset", rsName)

	p.TypeMeta = metav1.TypeMeta{Kind: "Pod", APIVersion: "v1"}
	p.GenerateName = rsName + "-"
	p.UID = uid(p.Namespace, p.Name)
	p.ResourceVersion = strconv.Itoa(100000 + i)
	p.CreationTimestamp = created
	p.Annotations = map[string]string{
		"kubectl.kubernetes.io/restartedAt":              epoch.Format(time.RFC3339),
		"prometheus.io/scrape":                           "true",
		"prometheus.io/port":                             "9090",
		"cluster-autoscaler.kubernetes.io/safe-to-evict": "true",
	}
	p.OwnerReferences = []metav1.OwnerReference{{
		APIVersion: "apps/v1", Kind: "ReplicaSet", Name: rsName, UID: rsUID,
		Controller: ptr.To(true), BlockOwnerDeletion: ptr.To(true),
	}}
	main := "main"
	if len(p.Spec.Containers) > 0 {
		main = p.Spec.Containers[0].Name
	}
	podIP := p.Status.PodIP
	if podIP == "" && len(p.Status.PodIPs) > 0 {
		podIP = p.Status.PodIPs[0].IP
	}
	p.ManagedFields = []metav1.ManagedFieldsEntry{
		{
			Manager: "kube-controller-manager", Operation: metav1.ManagedFieldsOperationUpdate,
			APIVersion: "v1", Time: &created, FieldsType: "FieldsV1",
			FieldsV1: metav1.NewFieldsV1(fmt.Sprintf(podFieldsSpec, main, rsUID)),
		},
		{
			Manager: "kubelet", Operation: metav1.ManagedFieldsOperationUpdate,
			APIVersion: "v1", Time: &created, FieldsType: "FieldsV1", Subresource: "status",
			FieldsV1: metav1.NewFieldsV1(fmt.Sprintf(podFieldsStatus, podIP)),
		},
	}

	saVolume := "kube-api-access-" + hexID(p.Name)[:5]
	for j := range p.Spec.Containers {
		dressContainer(&p.Spec.Containers[j], saVolume)
	}
	for j := range p.Spec.InitContainers {
		dressContainer(&p.Spec.InitContainers[j], saVolume)
	}
	p.Spec.Volumes = []corev1.Volume{
		{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: app + "-config"}, DefaultMode: ptr.To[int32](420),
		}}},
		{Name: saVolume, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
			DefaultMode: ptr.To[int32](420),
			Sources: []corev1.VolumeProjection{
				{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr.To[int64](3607), Path: "token"}},
				{ConfigMap: &corev1.ConfigMapProjection{
					LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
					Items:                []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}},
				}},
				{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{{
					Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"},
				}}}},
			},
		}}},
	}
	p.Spec.RestartPolicy = corev1.RestartPolicyAlways
	p.Spec.TerminationGracePeriodSeconds = ptr.To[int64](30)
	p.Spec.DNSPolicy = corev1.DNSClusterFirst
	p.Spec.ServiceAccountName = "default"
	p.Spec.DeprecatedServiceAccount = "default"
	p.Spec.SecurityContext = &corev1.PodSecurityContext{}
	p.Spec.SchedulerName = corev1.DefaultSchedulerName
	p.Spec.Tolerations = []corev1.Toleration{
		{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
		{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)},
	}
	p.Spec.Priority = ptr.To[int32](0)
	p.Spec.EnableServiceLinks = ptr.To(true)
	p.Spec.PreemptionPolicy = ptr.To(corev1.PreemptLowerPriority)

	hostIP := fmt.Sprintf("172.16.%d.%d", (i/110/250)%250, 1+(i/110)%250)
	p.Status.HostIP = hostIP
	p.Status.HostIPs = []corev1.HostIP{{IP: hostIP}}
	p.Status.StartTime = &created
	p.Status.QOSClass = corev1.PodQOSBurstable
	cond := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: created}
	}
	p.Status.Conditions = []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers), cond(corev1.PodInitialized), cond(corev1.PodReady),
		cond(corev1.ContainersReady), cond(corev1.PodScheduled),
	}
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name:         c.Name,
			State:        corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: created}},
			Ready:        true,
			Started:      ptr.To(true),
			Image:        c.Image,
			ImageID:      c.Image[:strings.LastIndex(c.Image, ":")] + "@sha256:" + hexID(c.Image),
			ContainerID:  "containerd://" + hexID(p.Namespace, p.Name, c.Name),
			Resources:    &c.Resources,
			VolumeMounts: []corev1.VolumeMountStatus{{Name: "config", MountPath: "/etc/app", ReadOnly: true}, {Name: saVolume, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true, RecursiveReadOnly: ptr.To(corev1.RecursiveReadOnlyDisabled)}},
		})
	}
	return p
}

// dressContainer gives c the environment, resources, probes, mounts and security context a
// typical Deployment's container has.
func dressContainer(c *corev1.Container, saVolume string) {
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: path}}}
	}
	c.Env = []corev1.EnvVar{
		fieldEnv("POD_NAME", "metadata.name"),
		fieldEnv("POD_NAMESPACE", "metadata.namespace"),
		fieldEnv("POD_IP", "status.podIP"),
		{Name: "LOG_LEVEL", Value: "info"},
		{Name: "OTEL_EXPORTER_OTLP_ENDPOINT", Value: "http://otel-collector.monitoring.svc:4317"},
		{Name: "GOMAXPROCS", Value: "2"},
	}
	c.Resources = corev1.ResourceRequirements{
		Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
		Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
	}
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(8080), Scheme: corev1.URISchemeHTTP}},
			TimeoutSeconds:   1,
			PeriodSeconds:    10,
			SuccessThreshold: 1,
			FailureThreshold: 3,
		}
	}
	c.LivenessProbe = probe("/healthz")
	c.LivenessProbe.InitialDelaySeconds = 10
	c.ReadinessProbe = probe("/readyz")
	c.VolumeMounts = []corev1.VolumeMount{
		{Name: "config", MountPath: "/etc/app", ReadOnly: true},
		{Name: saVolume, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount", ReadOnly: true},
	}
	c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	c.ImagePullPolicy = corev1.PullIfNotPresent
	c.SecurityContext = &corev1.SecurityContext{
		RunAsNonRoot:             ptr.To(true),
		ReadOnlyRootFilesystem:   ptr.To(true),
		AllowPrivilegeEscalation: ptr.To(false),
		Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

// realisticNamespace returns a copy of ns as listed from the API server.
func realisticNamespace(ns *corev1.Namespace, i int) *corev1.Namespace {
	ns = ns.DeepCopy()
	created := metav1.NewTime(epoch.Add(time.Duration(i) * time.Second))
	ns.TypeMeta = metav1.TypeMeta{Kind: "Namespace", APIVersion: "v1"}
	ns.UID = uid("namespace", ns.Name)
	ns.ResourceVersion = strconv.Itoa(1000 + i)
	ns.CreationTimestamp = created
	ns.Annotations = map[string]string{"scheduler.alpha.kubernetes.io/node-selector": ""}
	ns.ManagedFields = []metav1.ManagedFieldsEntry{{
		Manager: "kubectl-client-side-apply", Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: "v1", Time: &created, FieldsType: "FieldsV1",
		FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:labels":{".":{},"f:env":{},"f:kubernetes.io/metadata.name":{},"f:team":{}}}}`),
	}}
	ns.Spec.Finalizers = []corev1.FinalizerName{corev1.FinalizerKubernetes}
	ns.Status.Phase = corev1.NamespaceActive
	return ns
}

// realisticPolicy returns a copy of np as listed from the API server after `kubectl apply`: the
// last-applied-configuration annotation repeats the whole object.
func realisticPolicy(np *networkingv1.NetworkPolicy, i int) *networkingv1.NetworkPolicy {
	np = np.DeepCopy()
	created := metav1.NewTime(epoch.Add(time.Duration(i) * time.Second))
	np.TypeMeta = metav1.TypeMeta{Kind: "NetworkPolicy", APIVersion: "networking.k8s.io/v1"}
	applied := mustJSON(np)
	np.UID = uid("networkpolicy", np.Namespace, np.Name)
	np.ResourceVersion = strconv.Itoa(50000 + i)
	np.Generation = 1
	np.CreationTimestamp = created
	np.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": string(applied) + "\n"}
	np.ManagedFields = []metav1.ManagedFieldsEntry{{
		Manager: "kubectl-client-side-apply", Operation: metav1.ManagedFieldsOperationUpdate,
		APIVersion: "networking.k8s.io/v1", Time: &created, FieldsType: "FieldsV1",
		FieldsV1: metav1.NewFieldsV1(`{"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}}},"f:spec":{"f:egress":{},"f:ingress":{},"f:podSelector":{},"f:policyTypes":{}}}`),
	}}
	return np
}
