package deploy

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/orderflow/orderflow/internal/cli"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/service"
)

// objects is one overlay built by kustomize and decoded strictly into the Kubernetes API types.
type objects struct {
	deployments  map[string]appsv1.Deployment
	statefulSets map[string]appsv1.StatefulSet
	services     map[string]corev1.Service
	configMaps   map[string]corev1.ConfigMap
	secrets      map[string]corev1.Secret
	jobs         map[string]batchv1.Job
	pdbs         map[string]policyv1.PodDisruptionBudget
	hpas         map[string]autoscalingv2.HorizontalPodAutoscaler
	namespaces   []string
}

// strict decodes y into out, failing on any field the API type does not have.
func strict[T any](t *testing.T, y []byte, into map[string]T, name string) {
	t.Helper()
	var v T
	if err := yaml.UnmarshalStrict(y, &v); err != nil {
		t.Errorf("%s does not decode strictly: %v", name, err)
	}
	into[name] = v
}

func build(t *testing.T, overlay string) objects {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	res, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join("k8s", "overlays", overlay))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", overlay, err)
	}
	o := objects{map[string]appsv1.Deployment{}, map[string]appsv1.StatefulSet{}, map[string]corev1.Service{},
		map[string]corev1.ConfigMap{}, map[string]corev1.Secret{}, map[string]batchv1.Job{},
		map[string]policyv1.PodDisruptionBudget{}, map[string]autoscalingv2.HorizontalPodAutoscaler{}, nil}
	for _, r := range res.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		name := r.GetName()
		switch r.GetKind() {
		case "Deployment":
			strict(t, y, o.deployments, name)
		case "StatefulSet":
			strict(t, y, o.statefulSets, name)
		case "Service":
			strict(t, y, o.services, name)
		case "ConfigMap":
			strict(t, y, o.configMaps, name)
		case "Secret":
			strict(t, y, o.secrets, name)
		case "Job":
			strict(t, y, o.jobs, name)
		case "PodDisruptionBudget":
			strict(t, y, o.pdbs, name)
		case "HorizontalPodAutoscaler":
			strict(t, y, o.hpas, name)
		case "Namespace":
			o.namespaces = append(o.namespaces, name)
		default:
			t.Errorf("%s/%s: kind not checked by this test", r.GetKind(), name)
		}
	}
	return o
}

// TestKustomizeOverlays builds both overlays and checks each service against the code: the
// subcommand exists, probes hit paths the binary serves on the port DESIGN.md gives, every
// variable (env and the ConfigMap it loads) is one the service reads, and the pod is locked down.
func TestKustomizeOverlays(t *testing.T) {
	for _, overlay := range []string{"dev", "prod"} {
		t.Run(overlay, func(t *testing.T) {
			o := build(t, overlay)
			cfg, ok := o.configMaps["orderflow-config"]
			if !ok {
				t.Fatal("no orderflow-config ConfigMap")
			}
			e := config.New(func(k string) string { return cfg.Data[k] })
			service.LoadCommon(e)
			if err := e.Err(); err != nil {
				t.Errorf("orderflow-config fails the services' own validation: %v", err)
			}
			for name := range cli.Services {
				d, ok := o.deployments[name]
				if !ok {
					t.Errorf("no Deployment %s", name)
					continue
				}
				checkDeployment(t, name, d, cfg)
				if s := o.services[name]; len(s.Spec.Ports) != 1 || s.Spec.Ports[0].Port != int32(ports[name]) || s.Spec.Ports[0].TargetPort.String() != "http" {
					t.Errorf("Service %s: ports %+v, want %d → http", name, s.Spec.Ports, ports[name])
				}
				if p, ok := o.pdbs[name]; !ok || p.Spec.Selector.MatchLabels["app.kubernetes.io/name"] != name {
					t.Errorf("no PodDisruptionBudget selecting %s", name)
				}
				h, ok := o.hpas[name]
				if !ok || h.Spec.ScaleTargetRef.Name != name || h.Spec.ScaleTargetRef.Kind != "Deployment" {
					t.Errorf("no HorizontalPodAutoscaler for %s", name)
				} else if partitions, _ := strconv.Atoi(cfg.Data["KAFKA_TOPIC_PARTITIONS"]); name != "order-service" && int(h.Spec.MaxReplicas) > partitions {
					t.Errorf("HPA %s may grow to %d replicas; only %d partitions to share", name, h.Spec.MaxReplicas, partitions)
				}
			}
			// The tested dashboard and rules, unchanged, for Grafana's sidecar and Prometheus.
			for cm, file := range map[string][2]string{"orderflow-dashboard": {"orderflow.json", "dashboard.json"}, "orderflow-alert-rules": {"alerts.yml", "alerts.yml"}} {
				want, err := os.ReadFile(filepath.Join("observability", file[1]))
				if err != nil {
					t.Fatal(err)
				}
				if got := o.configMaps[cm].Data[file[0]]; got != string(want) {
					t.Errorf("ConfigMap %s does not hold deploy/observability/%s", cm, file[1])
				}
			}
			if o.configMaps["orderflow-dashboard"].Labels["grafana_dashboard"] != "1" {
				t.Error("the dashboard ConfigMap lacks the label grafana_dashboard=1 that Grafana's sidecar selects")
			}
			if j, ok := o.jobs["orderflow-init"]; !ok || !slices.Equal(j.Spec.Template.Spec.Containers[0].Args, []string{"init"}) {
				t.Error("no orderflow-init Job running `orderflow init`")
			}
			switch overlay {
			case "dev":
				for _, s := range []string{"postgres", "redis", "kafka", "cassandra"} {
					ss, ok := o.statefulSets[s]
					if !ok || len(ss.Spec.VolumeClaimTemplates) != 1 {
						t.Errorf("dev: no StatefulSet %s with a volume claim", s)
					}
					if _, ok := o.services[s]; !ok {
						t.Errorf("dev: no Service %s", s)
					}
				}
				if _, ok := o.secrets["orderflow-secrets"]; !ok {
					t.Error("dev: no orderflow-secrets")
				}
			case "prod":
				if len(o.statefulSets) != 0 || len(o.secrets) != 0 {
					t.Errorf("prod must run no home-made servers and ship no secrets: %d StatefulSets, %d Secrets", len(o.statefulSets), len(o.secrets))
				}
				if cfg.Data["KAFKA_REPLICATION_FACTOR"] == "1" || !strings.Contains(cfg.Data["CASSANDRA_REPLICATION"], "NetworkTopologyStrategy") {
					t.Error("prod must replicate: KAFKA_REPLICATION_FACTOR above 1 and NetworkTopologyStrategy")
				}
				// Postgres over TLS that verifies the server, with the CA file mounted where the
				// configuration says.
				if cfg.Data["POSTGRES_SSLMODE"] != "verify-full" {
					t.Errorf("prod POSTGRES_SSLMODE %q, want verify-full", cfg.Data["POSTGRES_SSLMODE"])
				}
				ca := cfg.Data["POSTGRES_SSLROOTCERT"]
				pods := map[string]corev1.PodSpec{"orderflow-init": o.jobs["orderflow-init"].Spec.Template.Spec}
				for name, d := range o.deployments {
					pods[name] = d.Spec.Template.Spec
				}
				for name, pod := range pods {
					if !mountsSecretFile(pod, ca) {
						t.Errorf("%s: POSTGRES_SSLROOTCERT %s is not a file mounted from a Secret", name, ca)
					}
				}
			}
		})
	}
}

// mountsSecretFile reports whether path is a file of a Secret volume mounted in pod's container.
func mountsSecretFile(pod corev1.PodSpec, path string) bool {
	for _, m := range pod.Containers[0].VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			for _, it := range v.Secret.Items {
				if filepath.Join(m.MountPath, it.Path) == path {
					return true
				}
			}
		}
	}
	return false
}

func checkDeployment(t *testing.T, name string, d appsv1.Deployment, cfg corev1.ConfigMap) {
	t.Helper()
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers", name, len(pod.Containers))
	}
	c := pod.Containers[0]
	if len(c.Args) != 1 || c.Args[0] != name {
		t.Errorf("%s: args %v, want [%s] (a subcommand of orderflow)", name, c.Args, name)
	}
	if _, ok := cli.Services[c.Args[0]]; !ok {
		t.Errorf("%s: %q is not a service subcommand", name, c.Args[0])
	}
	if len(c.Ports) != 1 || c.Ports[0].ContainerPort != int32(ports[name]) || c.Ports[0].Name != "http" {
		t.Errorf("%s: container ports %+v, want http %d", name, c.Ports, ports[name])
	}
	for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", name, kind)
			continue
		}
		if !slices.Contains(servedPaths, p.HTTPGet.Path) || p.HTTPGet.Port.String() != "http" {
			t.Errorf("%s: %s probe %s on %s does not reach a served path", name, kind, p.HTTPGet.Path, p.HTTPGet.Port.String())
		}
	}
	if c.LivenessProbe != nil && c.LivenessProbe.HTTPGet.Path != "/healthz" || c.ReadinessProbe != nil && c.ReadinessProbe.HTTPGet.Path != "/readyz" {
		t.Errorf("%s: liveness must be /healthz (process alive) and readiness /readyz (dependencies usable)", name)
	}
	// A rollout drops nothing: the balancers notice readiness going off before the drain delay
	// ends, and the process is done before the kubelet's SIGKILL.
	drain, err1 := time.ParseDuration(cfg.Data["SHUTDOWN_DRAIN_DELAY"])
	stop, err2 := time.ParseDuration(cfg.Data["SHUTDOWN_TIMEOUT"])
	if r := c.ReadinessProbe; err1 != nil || err2 != nil || r == nil {
		t.Errorf("%s: SHUTDOWN_DRAIN_DELAY and SHUTDOWN_TIMEOUT must be set (%v, %v) and a readiness probe defined", name, err1, err2)
	} else {
		if notice := time.Duration(r.PeriodSeconds*r.FailureThreshold) * time.Second; drain <= notice {
			t.Errorf("%s: drain delay %s is not longer than readiness period × failure threshold %s", name, drain, notice)
		}
		if g := pod.TerminationGracePeriodSeconds; g == nil || drain+stop+5*time.Second > time.Duration(*g)*time.Second {
			t.Errorf("%s: drain %s + shutdown %s (+5 s margin) must fit terminationGracePeriodSeconds %v", name, drain, stop, g)
		}
	}
	vars, _ := cli.Variables(name)
	for _, e := range c.Env {
		if !vars[e.Name] {
			t.Errorf("%s: env %s is not read by %s", name, e.Name, name)
		}
		if e.Name == httpAddrVar[name] && e.Value != fmt.Sprintf("0.0.0.0:%d", ports[name]) {
			t.Errorf("%s: %s=%s", name, e.Name, e.Value)
		}
	}
	for k := range cfg.Data {
		if !anyReads(k) {
			t.Errorf("ConfigMap key %s is read by no service", k)
		}
	}
	var fromCM, fromSecret bool
	for _, ef := range c.EnvFrom {
		fromCM = fromCM || ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == "orderflow-config"
		fromSecret = fromSecret || ef.SecretRef != nil && ef.SecretRef.Name == "orderflow-secrets"
	}
	if !fromCM || !fromSecret {
		t.Errorf("%s: must load orderflow-config and orderflow-secrets", name)
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resource requests and a memory limit are required", name)
	}
	sc := c.SecurityContext
	if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: container must have a read-only root filesystem and no privilege escalation", name)
	}
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		t.Errorf("%s: pod must run as non-root", name)
	}
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Errorf("%s: enableServiceLinks must be false", name)
	}
	if d.Spec.Template.Annotations["prometheus.io/scrape"] != "true" || d.Spec.Template.Annotations["prometheus.io/port"] != strconv.Itoa(ports[name]) {
		t.Errorf("%s: Prometheus scrape annotations missing or on the wrong port", name)
	}
}

// TestOperatorExamplesParse keeps the prod examples well-formed and replicated.
func TestOperatorExamplesParse(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("k8s", "overlays", "prod", "examples", "*.yaml"))
	if len(files) < 4 {
		t.Fatalf("examples: %v", files)
	}
	topics := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range strings.Split(string(b), "\n---\n") {
			var obj struct {
				APIVersion string         `json:"apiVersion"`
				Kind       string         `json:"kind"`
				Spec       map[string]any `json:"spec"`
			}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil || obj.APIVersion == "" || obj.Kind == "" {
				t.Errorf("%s: %v (%+v)", f, err, obj)
				continue
			}
			if obj.Kind == "KafkaTopic" {
				topics++
				cfg, _ := obj.Spec["config"].(map[string]any)
				if obj.Spec["replicas"] != float64(3) || obj.Spec["partitions"] != float64(3) || cfg["min.insync.replicas"] != float64(2) {
					t.Errorf("%s: topic %v not 3 partitions × 3 replicas with min.insync.replicas 2", f, obj.Spec["topicName"])
				}
			}
		}
	}
	if topics != 8 {
		t.Errorf("%d KafkaTopics, want the 8 topics", topics)
	}
}
