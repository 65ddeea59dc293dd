package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// manifests are the objects of deploy/k8s, each decoded strictly (an
// unknown or misspelt field fails) into its official API type.
type manifests struct {
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	secrets     []*corev1.Secret
	pdbs        []*policyv1.PodDisruptionBudget
	hpas        []*autoscalingv2.HorizontalPodAutoscaler
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("k8s/*.yaml: %v, %d files", err, len(files))
	}
	var m manifests
	for _, f := range files {
		r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(readFile(t, f))))
		for {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			if err := m.add(doc); err != nil {
				t.Errorf("%s: %v", f, err)
			}
		}
	}
	return m
}

func (m *manifests) add(doc []byte) error {
	var meta struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &meta); err != nil {
		return err
	}
	gvk := schema.FromAPIVersionAndKind(meta.APIVersion, meta.Kind)
	var obj any
	switch gvk {
	case appsv1.SchemeGroupVersion.WithKind("Deployment"):
		d := &appsv1.Deployment{}
		m.deployments, obj = append(m.deployments, d), d
	case corev1.SchemeGroupVersion.WithKind("Service"):
		s := &corev1.Service{}
		m.services, obj = append(m.services, s), s
	case corev1.SchemeGroupVersion.WithKind("Secret"):
		s := &corev1.Secret{}
		m.secrets, obj = append(m.secrets, s), s
	case policyv1.SchemeGroupVersion.WithKind("PodDisruptionBudget"):
		p := &policyv1.PodDisruptionBudget{}
		m.pdbs, obj = append(m.pdbs, p), p
	case autoscalingv2.SchemeGroupVersion.WithKind("HorizontalPodAutoscaler"):
		h := &autoscalingv2.HorizontalPodAutoscaler{}
		m.hpas, obj = append(m.hpas, h), h
	default:
		return errors.New("unexpected kind " + gvk.String())
	}
	j, err := yaml.YAMLToJSON(doc)
	if err != nil {
		return err
	}
	// sigs.k8s.io/json as the API server decodes: case-sensitive names,
	// unknown and duplicate fields reported.
	strict, err := kjson.UnmarshalStrict(j, obj)
	return errors.Join(append(strict, err)...)
}

func TestK8sManifests(t *testing.T) {
	m := loadManifests(t)
	if len(m.deployments) != 1 || len(m.services) != 1 || len(m.secrets) != 1 || len(m.pdbs) != 1 || len(m.hpas) != 1 {
		t.Fatalf("want one Deployment, Service, Secret, PodDisruptionBudget and HorizontalPodAutoscaler; got %d, %d, %d, %d, %d",
			len(m.deployments), len(m.services), len(m.secrets), len(m.pdbs), len(m.hpas))
	}
	d := m.deployments[0]
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if pod.TerminationGracePeriodSeconds == nil {
		t.Error("terminationGracePeriodSeconds unset (30s default): set it from delay + budget")
	} else if grace, need := time.Duration(*pod.TerminationGracePeriodSeconds)*time.Second, stopNeeds(t, env); grace < need {
		t.Errorf("terminationGracePeriodSeconds %v < ONEBOX_SHUTDOWN_DELAY + ONEBOX_SHUTDOWN_TIMEOUT = %v", grace, need)
	}
	checkProbes(t, c)
	checkSecurity(t, pod, c)
	checkK8sSecret(t, pod, c, env, m.secrets[0])
	checkService(t, d, c, m.services[0])
	checkSelector(t, d)
	checkHPA(t, d, c, m.hpas[0])
	checkPDB(t, d, m.pdbs[0], *m.hpas[0].Spec.MinReplicas)
}

func checkProbes(t *testing.T, c corev1.Container) {
	t.Helper()
	r := c.ReadinessProbe
	if r == nil || r.Exec == nil || strings.Join(r.Exec.Command, " ") != "onebox health" {
		t.Errorf("readinessProbe = %+v, want exec onebox health", r)
	}
	l := c.LivenessProbe
	if l == nil || l.TCPSocket == nil || !portNamed(c, l.TCPSocket.Port.String()) {
		t.Errorf("livenessProbe = %+v, want a TCP check of a container port", l)
	}
}

func checkSecurity(t *testing.T, pod corev1.PodSpec, c corev1.Container) {
	t.Helper()
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		t.Error("container securityContext.readOnlyRootFilesystem is not true")
	}
	nonRoot := pod.SecurityContext != nil && pod.SecurityContext.RunAsNonRoot != nil && *pod.SecurityContext.RunAsNonRoot
	if sc != nil && sc.RunAsNonRoot != nil {
		nonRoot = *sc.RunAsNonRoot
	}
	if !nonRoot {
		t.Error("runAsNonRoot is not true")
	}
	for _, v := range pod.Volumes {
		if v.EmptyDir != nil {
			t.Errorf("volume %s is an emptyDir: onebox needs no writable mount", v.Name)
		}
	}
	if c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources.limits = %v, want cpu and memory", c.Resources.Limits)
	}
}

// checkK8sSecret: MYSQL_PASSWORD_FILE is a file of a Secret volume mounted in
// the container, and that Secret (secret.example.yaml) holds the key.
func checkK8sSecret(t *testing.T, pod corev1.PodSpec, c corev1.Container, env map[string]string, s *corev1.Secret) {
	t.Helper()
	if _, ok := env["MYSQL_PASSWORD"]; ok {
		t.Error("MYSQL_PASSWORD set inline; want MYSQL_PASSWORD_FILE from a Secret")
	}
	file := env["MYSQL_PASSWORD_FILE"]
	for _, vm := range c.VolumeMounts {
		rel, ok := strings.CutPrefix(file, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.Secret == nil {
				continue
			}
			if v.Secret.SecretName != s.Name {
				t.Errorf("volume %s mounts Secret %q, the example is %q", v.Name, v.Secret.SecretName, s.Name)
			}
			key := rel
			for _, it := range v.Secret.Items {
				if it.Path == rel {
					key = it.Key
				}
			}
			if _, ok := s.StringData[key]; !ok {
				t.Errorf("Secret %s has no key %q (for %s)", s.Name, key, file)
			}
			return
		}
	}
	t.Errorf("MYSQL_PASSWORD_FILE = %q is not in a mounted Secret volume", file)
}

func checkService(t *testing.T, d *appsv1.Deployment, c corev1.Container, s *corev1.Service) {
	t.Helper()
	labels := d.Spec.Template.Labels
	for k, v := range s.Spec.Selector {
		if labels[k] != v {
			t.Errorf("Service selector %s=%s does not match the pod labels %v", k, v, labels)
		}
	}
	if len(s.Spec.Selector) == 0 || len(s.Spec.Ports) == 0 {
		t.Fatalf("Service %s: selector %v, ports %v", s.Name, s.Spec.Selector, s.Spec.Ports)
	}
	for _, p := range s.Spec.Ports {
		if !portNamed(c, p.TargetPort.String()) {
			t.Errorf("Service port %s: targetPort %s is not a container port", p.Name, p.TargetPort.String())
		}
	}
}

// portNamed reports whether port (a name or a number) is one of c's ports.
func portNamed(c corev1.Container, port string) bool {
	return slices.ContainsFunc(c.Ports, func(p corev1.ContainerPort) bool {
		return p.Name == port || port == strconv.Itoa(int(p.ContainerPort))
	})
}
