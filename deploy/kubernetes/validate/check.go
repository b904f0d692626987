package main

import (
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// afterDeadline is how long calcd waits, past its drain deadline, for
// handlers to return once their calls were ended (server/tcpserver's
// Shutdown: a second for them to answer, a second after closing their
// connections) before it gives up and exits 1.
const afterDeadline = 2 * time.Second

// exitMargin is the least time left in the grace period for calcd to exit
// after that, before the kubelet's SIGKILL.
const exitMargin = time.Second

// The container ports calcd's manifests name, by the CALCD_* variable
// whose address listens on each.
var portVars = map[string]string{"calc-tcp": "CALCD_TCP_ADDR", "grpc": "CALCD_GRPC_ADDR", "admin": "CALCD_ADMIN_ADDR"}

// checks collects problems.
type checks []string

func (c *checks) addf(format string, args ...any) { *c = append(*c, fmt.Sprintf(format, args...)) }

// checkSet checks a built set of objects and returns a summary of what
// holds, or the problems found.
func checkSet(objs []object, vars map[string]bool, img image) (string, []string) {
	var c checks
	var deploys []*appsv1.Deployment
	var services []*corev1.Service
	var pdbs []*policyv1.PodDisruptionBudget
	var policies []*networkingv1.NetworkPolicy
	configMaps := map[string]*corev1.ConfigMap{}
	for _, o := range objs {
		switch v := o.value.(type) {
		case *appsv1.Deployment:
			deploys = append(deploys, v)
		case *corev1.Service:
			services = append(services, v)
		case *policyv1.PodDisruptionBudget:
			pdbs = append(pdbs, v)
		case *networkingv1.NetworkPolicy:
			policies = append(policies, v)
		case *corev1.ConfigMap:
			configMaps[v.Name] = v
			for k := range v.Data {
				if strings.HasPrefix(k, "CALCD_") && !vars[k] {
					c.addf("ConfigMap %s: %s is no calcd variable (calcd --help)", v.Name, k)
				}
			}
		}
	}
	if len(deploys) != 1 {
		c.addf("%d Deployments, want the one of calcd", len(deploys))
		return "", c
	}
	d := deploys[0]
	pod := d.Spec.Template
	podLabels := labels.Set(pod.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		c.addf("Deployment %s: its selector does not select its pods' labels %v", d.Name, pod.Labels)
	}
	if ru := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "0" {
		c.addf("Deployment %s: a rolling update with maxUnavailable 0, so that a rollout drains a pod only once its replacement is ready", d.Name)
	}
	if len(pod.Spec.Containers) != 1 {
		c.addf("Deployment %s: %d containers, want calcd alone", d.Name, len(pod.Spec.Containers))
		return "", c
	}
	ctr := pod.Spec.Containers[0]
	where := fmt.Sprintf("Deployment %s container %s", d.Name, ctr.Name)
	if ctr.Image == "" {
		c.addf("%s: no image", where)
	}

	// Security.
	psc := pod.Spec.SecurityContext
	switch {
	case pod.Spec.AutomountServiceAccountToken == nil || *pod.Spec.AutomountServiceAccountToken:
		c.addf("Deployment %s: automountServiceAccountToken must be false: calcd never calls the API server", d.Name)
	case psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot:
		c.addf("Deployment %s: the pod's securityContext must set runAsNonRoot: true", d.Name)
	case psc.RunAsUser == nil || *psc.RunAsUser != img.uid:
		c.addf("Deployment %s: runAsUser must be the Dockerfile's USER, %d", d.Name, img.uid)
	case psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
		c.addf("Deployment %s: seccompProfile must be RuntimeDefault", d.Name)
	}
	sc := ctr.SecurityContext
	switch {
	case sc == nil:
		c.addf("%s: no securityContext", where)
	case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
		c.addf("%s: allowPrivilegeEscalation must be false", where)
	case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
		c.addf("%s: readOnlyRootFilesystem must be true: calcd writes no file", where)
	case sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0:
		c.addf("%s: capabilities must drop ALL and add none", where)
	case sc.Privileged != nil && *sc.Privileged:
		c.addf("%s: privileged", where)
	}
	if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
		c.addf("%s: resources need CPU and memory requests and a memory limit", where)
	}

	// The environment calcd sees: envFrom, then env, which wins.
	env := map[string]string{}
	for _, ef := range ctr.EnvFrom {
		if ef.ConfigMapRef == nil {
			c.addf("%s: envFrom other than a ConfigMap", where)
			continue
		}
		cm := configMaps[ef.ConfigMapRef.Name]
		if cm == nil {
			c.addf("%s: envFrom ConfigMap %s, which is not in the set", where, ef.ConfigMapRef.Name)
			continue
		}
		for k, v := range cm.Data {
			env[ef.Prefix+k] = v
		}
	}
	for _, e := range ctr.Env {
		if strings.HasPrefix(e.Name, "CALCD_") && !vars[e.Name] {
			c.addf("%s: %s is no calcd variable (calcd --help)", where, e.Name)
		}
		if e.ValueFrom != nil {
			env[e.Name] = "(from " + e.Name + ")"
			continue
		}
		env[e.Name] = e.Value
	}

	// Ports: the container's, calcd's addresses', the image's.
	ports := map[string]int32{}
	var numbers []int32
	for _, p := range ctr.Ports {
		ports[p.Name] = p.ContainerPort
		numbers = append(numbers, p.ContainerPort)
	}
	slices.Sort(numbers)
	for name, v := range portVars {
		port, ok := ports[name]
		if !ok {
			c.addf("%s: no port named %s", where, name)
			continue
		}
		_, ps, err := net.SplitHostPort(env[v])
		if n, _ := strconv.Atoi(ps); err != nil || int32(n) != port {
			c.addf("%s: port %s is %d, but %s is %q", where, name, port, v, env[v])
		}
	}
	if !slices.Equal(numbers, img.ports) {
		c.addf("%s: container ports %v, the Dockerfile EXPOSEs %v", where, numbers, img.ports)
	}

	// Protected mode, as calcd's protect: RPC addresses reachable from the
	// network need TLS and authentication, or --insecure-listen.
	tls := env["CALCD_TLS_CERT"] != ""
	authn := env["CALCD_AUTH_TOKENS"] != "" || env["CALCD_TLS_CLIENT_CA"] != ""
	insecure, _ := strconv.ParseBool(env["CALCD_INSECURE_LISTEN"])
	if tls != (env["CALCD_TLS_KEY"] != "") {
		c.addf("%s: CALCD_TLS_CERT and CALCD_TLS_KEY go together", where)
	}
	if !(tls && authn) && !insecure {
		c.addf("%s: calcd would exit 2 (protected mode): its RPC ports listen on the pod network without TLS and authentication, and CALCD_INSECURE_LISTEN is not true", where)
	}
	if insecure && !slices.ContainsFunc(policies, func(np *networkingv1.NetworkPolicy) bool { return selects(&np.Spec.PodSelector, podLabels) }) {
		c.addf("%s: CALCD_INSECURE_LISTEN without a NetworkPolicy selecting the pods", where)
	}

	// Files calcd reads come from mounted Secrets or ConfigMaps.
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Spec.Volumes {
		volumes[v.Name] = v
	}
	for _, v := range []string{"CALCD_TLS_CERT", "CALCD_TLS_KEY", "CALCD_TLS_CLIENT_CA", "CALCD_AUTH_TOKENS"} {
		file := env[v]
		if file == "" {
			continue
		}
		i := slices.IndexFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool {
			rel, ok := strings.CutPrefix(path.Clean(file), path.Clean(m.MountPath)+"/")
			return ok && rel != ""
		})
		if i < 0 {
			c.addf("%s: %s=%s is under no volumeMount", where, v, file)
			continue
		}
		m := ctr.VolumeMounts[i]
		vol, ok := volumes[m.Name]
		switch {
		case !ok:
			c.addf("%s: volumeMount %s names no volume", where, m.Name)
		case vol.Secret == nil && vol.ConfigMap == nil:
			c.addf("%s: %s comes from volume %s, neither a Secret nor a ConfigMap", where, v, m.Name)
		case !m.ReadOnly:
			c.addf("%s: volumeMount %s must be readOnly", where, m.Name)
		case m.SubPath != "":
			c.addf("%s: volumeMount %s uses subPath, which never sees an updated Secret: calcd could not reload it", where, m.Name)
		}
	}

	// Probes.
	probe := func(kind string, p *corev1.Probe, httpPath string) {
		switch {
		case p == nil:
			c.addf("%s: no %s probe", where, kind)
		case tls && p.GRPC != nil:
			c.addf("%s: %s probe: the kubelet's gRPC probe speaks plaintext, and the gRPC port serves TLS: probe the admin port's %s", where, kind, httpPath)
		case tls && (p.HTTPGet == nil || p.HTTPGet.Path != httpPath || !samePort(p.HTTPGet.Port, "admin", ports)):
			c.addf("%s: %s probe: with TLS, want httpGet %s on the admin port", where, kind, httpPath)
		case !tls && p.GRPC == nil:
			c.addf("%s: %s probe: want the kubelet's gRPC probe of grpc.health.v1 on the gRPC port", where, kind)
		case !tls && p.GRPC.Port != ports["grpc"]:
			c.addf("%s: %s probe: gRPC port %d, the container's grpc port is %d", where, kind, p.GRPC.Port, ports["grpc"])
		case !tls && p.GRPC.Service != nil && *p.GRPC.Service != "":
			c.addf("%s: %s probe: service %q; the whole server's health is \"\"", where, kind, *p.GRPC.Service)
		}
	}
	probe("readiness", ctr.ReadinessProbe, "/readyz")
	probe("liveness", ctr.LivenessProbe, "/healthz")

	// The drain.
	var drain string
	dur := func(v string) time.Duration {
		s, ok := env[v]
		if !ok {
			c.addf("%s: set %s explicitly: the grace period's arithmetic depends on it", where, v)
			return 0
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			c.addf("%s: %s=%q is not a duration", where, v, s)
		}
		return d
	}
	delay, timeout := dur("CALCD_DRAIN_DELAY"), dur("CALCD_SHUTDOWN_TIMEOUT")
	switch ls := ctr.Lifecycle; {
	case ls == nil || ls.PreStop == nil:
		c.addf("%s: no preStop: SIGTERM would come before the endpoints are gone", where)
	case ls.PreStop.Exec != nil:
		c.addf("%s: preStop exec: the image has no shell and no sleep; use preStop sleep", where)
	case ls.PreStop.Sleep == nil || ls.PreStop.Sleep.Seconds <= 0:
		c.addf("%s: preStop must be a sleep of at least a second", where)
	case pod.Spec.TerminationGracePeriodSeconds == nil:
		c.addf("Deployment %s: set terminationGracePeriodSeconds explicitly", d.Name)
	default:
		pre := time.Duration(ls.PreStop.Sleep.Seconds) * time.Second
		grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
		need := pre + delay + timeout + afterDeadline + exitMargin
		drain = fmt.Sprintf("drain: preStop %v + drain-delay %v + shutdown-timeout %v + %v + %v margin = %v <= grace %v", pre, delay, timeout, afterDeadline, exitMargin, need, grace)
		if need > grace {
			c.addf("Deployment %s: terminationGracePeriodSeconds %v is shorter than the drain: %s", d.Name, grace, drain)
		}
	}

	// Services, budget, network policy.
	for _, s := range services {
		if !selects(&metav1.LabelSelector{MatchLabels: s.Spec.Selector}, podLabels) {
			c.addf("Service %s: its selector does not select the pods", s.Name)
		}
		for _, p := range s.Spec.Ports {
			if !hasPort(p.TargetPort, ports) {
				c.addf("Service %s: port %s targets %s, which the container does not have", s.Name, p.Name, p.TargetPort.String())
			}
		}
	}
	if !slices.ContainsFunc(services, func(s *corev1.Service) bool {
		return s.Spec.ClusterIP != corev1.ClusterIPNone && len(s.Spec.Ports) == len(portVars)
	}) {
		c.addf("no Service with a cluster IP serving the three ports")
	}
	if len(pdbs) == 0 {
		c.addf("no PodDisruptionBudget")
	}
	for _, b := range pdbs {
		if !selects(b.Spec.Selector, podLabels) {
			c.addf("PodDisruptionBudget %s: its selector does not select the pods", b.Name)
		}
		replicas := int32(1)
		if d.Spec.Replicas != nil {
			replicas = *d.Spec.Replicas
		}
		switch {
		case b.Spec.MaxUnavailable != nil && b.Spec.MaxUnavailable.String() == "0",
			b.Spec.MinAvailable != nil && b.Spec.MinAvailable.Type == intstr.Int && b.Spec.MinAvailable.IntVal >= replicas:
			c.addf("PodDisruptionBudget %s: allows no eviction at %d replicas: node drains would hang", b.Name, replicas)
		case b.Spec.MaxUnavailable == nil && b.Spec.MinAvailable == nil:
			c.addf("PodDisruptionBudget %s: neither maxUnavailable nor minAvailable", b.Name)
		}
	}
	for _, np := range policies {
		if !selects(&np.Spec.PodSelector, podLabels) {
			c.addf("NetworkPolicy %s: its podSelector does not select the pods", np.Name)
		}
		covered := map[int32]bool{}
		for _, rule := range np.Spec.Ingress {
			for _, p := range rule.Ports {
				if p.Port == nil || !hasPort(*p.Port, ports) {
					c.addf("NetworkPolicy %s: port %v is none of the container's", np.Name, p.Port)
					continue
				}
				covered[resolve(*p.Port, ports)] = true
			}
		}
		for name, port := range ports {
			if !covered[port] {
				c.addf("NetworkPolicy %s: nothing may reach port %s", np.Name, name)
			}
		}
	}
	if len(c) > 0 {
		return "", c
	}
	mode := "plaintext behind a NetworkPolicy, gRPC probes"
	if tls {
		mode = "TLS and authentication, admin HTTP probes"
	}
	return fmt.Sprintf("%s; non-root uid %d; %s", mode, img.uid, drain), nil
}

// selects reports whether the selector selects a pod with labels l.
func selects(s *metav1.LabelSelector, l labels.Set) bool {
	if s == nil {
		return false
	}
	sel, err := metav1.LabelSelectorAsSelector(s)
	return err == nil && !sel.Empty() && sel.Matches(l)
}

// resolve returns the port number a port name or number stands for (0 for
// an unknown name).
func resolve(p intstr.IntOrString, ports map[string]int32) int32 {
	if p.Type == intstr.String {
		return ports[p.StrVal]
	}
	return p.IntVal
}

// hasPort reports whether the container has port p (a name or a number).
func hasPort(p intstr.IntOrString, ports map[string]int32) bool {
	n := resolve(p, ports)
	for _, v := range ports {
		if v == n && n != 0 {
			return true
		}
	}
	return false
}

// samePort reports whether p is the container port named name.
func samePort(p intstr.IntOrString, name string, ports map[string]int32) bool {
	return ports[name] != 0 && resolve(p, ports) == ports[name]
}
