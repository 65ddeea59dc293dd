package deploy

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// selects reports whether sel (a Deployment's or a PodDisruptionBudget's
// selector) picks pods with the given labels; an empty or invalid selector
// does not count.
func selects(t *testing.T, what string, sel *metav1.LabelSelector, pod map[string]string) bool {
	t.Helper()
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		t.Errorf("%s: empty selector", what)
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("%s: selector %v: %v", what, sel, err)
		return false
	}
	return s.Matches(labels.Set(pod))
}

// checkSelector: the Deployment's selector picks its own pods, as the API
// server requires.
func checkSelector(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	if !selects(t, "Deployment "+d.Name, d.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("Deployment %s: selector %v does not match its pod labels %v", d.Name, d.Spec.Selector, d.Spec.Template.Labels)
	}
}

// checkHPA: the autoscaler scales this Deployment between several replicas
// on CPU use, which it measures against the container's CPU request; the
// Deployment leaves replicas unset so that kubectl apply does not reset what
// the autoscaler chose.
func checkHPA(t *testing.T, d *appsv1.Deployment, c corev1.Container, h *autoscalingv2.HorizontalPodAutoscaler) {
	t.Helper()
	ref := h.Spec.ScaleTargetRef
	if ref.APIVersion != appsv1.SchemeGroupVersion.String() || ref.Kind != "Deployment" || ref.Name != d.Name {
		t.Errorf("HorizontalPodAutoscaler %s targets %s %s %q, want apps/v1 Deployment %q", h.Name, ref.APIVersion, ref.Kind, ref.Name, d.Name)
	}
	if d.Spec.Replicas != nil {
		t.Errorf("Deployment %s sets replicas: %d; with an autoscaler every kubectl apply would reset its count", d.Name, *d.Spec.Replicas)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 {
		t.Fatalf("HorizontalPodAutoscaler %s: minReplicas %v, want at least 2 (a rolling update or one lost pod must leave one serving)", h.Name, h.Spec.MinReplicas)
	}
	if h.Spec.MaxReplicas < *h.Spec.MinReplicas {
		t.Errorf("HorizontalPodAutoscaler %s: maxReplicas %d < minReplicas %d", h.Name, h.Spec.MaxReplicas, *h.Spec.MinReplicas)
	}
	if len(h.Spec.Metrics) == 0 {
		t.Errorf("HorizontalPodAutoscaler %s: no metrics", h.Name)
	}
	for _, m := range h.Spec.Metrics {
		if m.Type != autoscalingv2.ResourceMetricSourceType || m.Resource == nil {
			continue
		}
		if m.Resource.Target.Type != autoscalingv2.UtilizationMetricType {
			continue
		}
		// Utilization is a percentage of the request: without one the
		// autoscaler cannot compute it and does nothing.
		if q, ok := c.Resources.Requests[m.Resource.Name]; !ok || q.IsZero() {
			t.Errorf("HorizontalPodAutoscaler %s scales on %s utilization, but the container requests no %s", h.Name, m.Resource.Name, m.Resource.Name)
		}
		if u := m.Resource.Target.AverageUtilization; u == nil || *u <= 0 || *u > 100 {
			t.Errorf("HorizontalPodAutoscaler %s: %s averageUtilization %v, want 1 to 100", h.Name, m.Resource.Name, u)
		}
	}
}

// checkPDB: the disruption budget covers the Deployment's pods and lets a
// drain evict some of them, but never all of its minimum at once.
func checkPDB(t *testing.T, d *appsv1.Deployment, p *policyv1.PodDisruptionBudget, minReplicas int32) {
	t.Helper()
	if !selects(t, "PodDisruptionBudget "+p.Name, p.Spec.Selector, d.Spec.Template.Labels) {
		t.Errorf("PodDisruptionBudget %s: selector %v does not match the pod labels %v", p.Name, p.Spec.Selector, d.Spec.Template.Labels)
	}
	mu, ma := p.Spec.MaxUnavailable, p.Spec.MinAvailable
	if (mu == nil) == (ma == nil) {
		t.Fatalf("PodDisruptionBudget %s: want exactly one of maxUnavailable and minAvailable", p.Name)
	}
	// Unavailable pods the budget allows with minReplicas pods running.
	var allowed int
	if mu != nil {
		n, err := intstr.GetScaledValueFromIntOrPercent(mu, int(minReplicas), true)
		if err != nil {
			t.Fatalf("PodDisruptionBudget %s: maxUnavailable %s: %v", p.Name, mu.String(), err)
		}
		allowed = n
	} else {
		n, err := intstr.GetScaledValueFromIntOrPercent(ma, int(minReplicas), true)
		if err != nil {
			t.Fatalf("PodDisruptionBudget %s: minAvailable %s: %v", p.Name, ma.String(), err)
		}
		allowed = int(minReplicas) - n
	}
	if allowed < 1 {
		t.Errorf("PodDisruptionBudget %s allows no eviction with %d pods: a node drain would block", p.Name, minReplicas)
	}
	if allowed >= int(minReplicas) {
		t.Errorf("PodDisruptionBudget %s allows %d of %d pods down: no pod would be left serving", p.Name, allowed, minReplicas)
	}
}
