package deploy

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/orderflow/orderflow/internal/cli"
	"github.com/orderflow/orderflow/internal/event"
	"github.com/orderflow/orderflow/internal/platform/config"
	"github.com/orderflow/orderflow/internal/platform/service"
	"github.com/orderflow/orderflow/internal/testkit"
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
	policies     map[string]networkingv1.NetworkPolicy
	operator     map[string]bool // Prometheus Operator objects, "Kind/name"
	configName   string          // orderflow-config's name with its content hash
	initVersion  string          // the init Job's name suffix
	namespaces   []string
}

// hashed matches the name of a generated ConfigMap: its declared name, then a content hash.
var hashed = regexp.MustCompile(`^(.+)-[a-z0-9]{10}$`)

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
		map[string]policyv1.PodDisruptionBudget{}, map[string]autoscalingv2.HorizontalPodAutoscaler{},
		map[string]networkingv1.NetworkPolicy{}, map[string]bool{}, "", "", nil}
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
		case "ConfigMap": // by the name it was declared with; orderflow-config is generated with a content hash
			if base := hashed.FindStringSubmatch(name); base != nil && base[1] == "orderflow-config" {
				o.configName = name
				name = base[1]
			}
			strict(t, y, o.configMaps, name)
		case "Secret":
			strict(t, y, o.secrets, name)
		case "Job": // the init Job by its name without the version suffix
			if v, ok := strings.CutPrefix(name, "orderflow-init-"); ok {
				o.initVersion = v
				name = "orderflow-init"
			}
			strict(t, y, o.jobs, name)
		case "PodDisruptionBudget":
			strict(t, y, o.pdbs, name)
		case "HorizontalPodAutoscaler":
			strict(t, y, o.hpas, name)
		case "NetworkPolicy":
			strict(t, y, o.policies, name)
		case "ServiceMonitor", "PrometheusRule": // TestPrometheusOperatorObjects checks their content
			o.operator[r.GetKind()+"/"+name] = true
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
			if overlay == "dev" { // prod's needs each workload's files: TestProdWorkloadsGetTheirCredentials
				e := config.New(func(k string) string { return cfg.Data[k] })
				service.LoadCommon(e)
				service.LoadPostgres(e)
				service.LoadRedis(e)
				service.LoadCassandra(e)
				if err := e.Err(); err != nil {
					t.Errorf("orderflow-config fails the services' own validation: %v", err)
				}
			}
			for name := range cli.Services {
				d, ok := o.deployments[name]
				if !ok {
					t.Errorf("no Deployment %s", name)
					continue
				}
				checkDeployment(t, name, d, cfg, o.configName)
				if s := o.services[name]; len(s.Spec.Ports) != 2 || s.Spec.Ports[0].Port != int32(ports[name]) || s.Spec.Ports[0].TargetPort.String() != "http" ||
					s.Spec.Ports[1].Name != "ops" || s.Spec.Ports[1].TargetPort.String() != "ops" {
					t.Errorf("Service %s: ports %+v, want %d → http and ops → ops", name, s.Spec.Ports, ports[name])
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
			checkNetworkPolicies(t, o, cfg)
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
			j, ok := o.jobs["orderflow-init"]
			if !ok || !slices.Equal(j.Spec.Template.Spec.Containers[0].Args, []string{"init"}) {
				t.Fatal("no orderflow-init Job running `orderflow init`")
			}
			// Versioned by the image it runs, so an image bump creates a new Job instead of
			// failing to change a finished one's pod template.
			if img := j.Spec.Template.Spec.Containers[0].Image; o.initVersion == "" || !strings.HasSuffix(img, ":"+o.initVersion) {
				t.Errorf("the init Job's name suffix %q is not the tag of its image %s", o.initVersion, img)
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
				sec, ok := o.secrets["orderflow-secrets"]
				if !ok || sec.StringData["ADMIN_TOKEN"] == "" && len(sec.Data["ADMIN_TOKEN"]) == 0 {
					t.Error("dev: no orderflow-secrets with an ADMIN_TOKEN (pods do not trust loopback)")
				}
				for name := range cli.Services {
					d := o.deployments[name]
					loads := false
					for _, ef := range d.Spec.Template.Spec.Containers[0].EnvFrom {
						loads = loads || ef.SecretRef != nil && ef.SecretRef.Name == "orderflow-secrets"
					}
					if !loads {
						t.Errorf("dev: %s does not load orderflow-secrets", name)
					}
				}
			case "prod":
				if len(o.statefulSets) != 0 || len(o.secrets) != 0 {
					t.Errorf("prod must run no home-made servers and ship no secrets: %d StatefulSets, %d Secrets", len(o.statefulSets), len(o.secrets))
				}
				// Scraped and alerted on by the Prometheus Operator (content: TestPrometheusOperatorObjects).
				if !o.operator["ServiceMonitor/orderflow"] || !o.operator["PrometheusRule/orderflow"] {
					t.Errorf("prod lacks the ServiceMonitor or the PrometheusRule: %v", o.operator)
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
					if vars, _ := cli.Variables(name); vars["POSTGRES_SSLROOTCERT"] {
						pods[name] = d.Spec.Template.Spec
					}
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

// checkNetworkPolicies: every orderflow pod is denied by default, may reach DNS and every port
// the configuration names, and takes requests on its http port.
func checkNetworkPolicies(t *testing.T, o objects, cfg corev1.ConfigMap) {
	t.Helper()
	selects := func(p networkingv1.NetworkPolicy) bool {
		return p.Spec.PodSelector.MatchLabels["app.kubernetes.io/part-of"] == "orderflow" && len(p.Spec.PodSelector.MatchLabels) == 1
	}
	deny := false
	egress := map[string]bool{}
	ingressHTTP := false
	for _, p := range o.policies {
		if !selects(p) {
			continue
		}
		if len(p.Spec.Ingress) == 0 && len(p.Spec.Egress) == 0 && slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) &&
			slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			deny = true
		}
		for _, r := range p.Spec.Egress {
			if len(r.To) != 0 {
				continue // only rules open to every destination count here
			}
			for _, port := range r.Ports {
				egress[fmt.Sprintf("%s/%s", *port.Protocol, port.Port.String())] = true
			}
		}
		for _, r := range p.Spec.Ingress {
			for _, port := range r.Ports {
				ingressHTTP = ingressHTTP || port.Port.String() == "http" && len(r.From) == 0
			}
		}
	}
	if !deny {
		t.Error("no default-deny NetworkPolicy (ingress and egress) for the orderflow pods")
	}
	if !ingressHTTP {
		t.Error("no NetworkPolicy lets requests reach the services' http port")
	}
	need := map[string]string{"UDP/53": "DNS", "TCP/53": "DNS", "TCP/" + cfg.Data["POSTGRES_PORT"]: "POSTGRES_PORT",
		"TCP/" + cfg.Data["CASSANDRA_PORT"]: "CASSANDRA_PORT"}
	for _, hp := range append(strings.Split(cfg.Data["KAFKA_BROKERS"], ","), cfg.Data["REDIS_ADDR"]) {
		if _, port, err := net.SplitHostPort(strings.TrimSpace(hp)); err == nil {
			need["TCP/"+port] = hp
		}
	}
	for _, v := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "QUERY_TRACES_URL"} {
		if u, err := url.Parse(cfg.Data[v]); err == nil && u.Port() != "" {
			need["TCP/"+u.Port()] = v
		}
	}
	for port, why := range need {
		if port != "TCP/" && !egress[port] {
			t.Errorf("egress to %s (%s) is not allowed by the NetworkPolicies", port, why)
		}
	}
	for name := range cli.Services {
		keys := map[string]bool{}
		for _, c := range o.deployments[name].Spec.Template.Spec.TopologySpreadConstraints {
			if c.LabelSelector != nil && c.LabelSelector.MatchLabels["app.kubernetes.io/name"] == name {
				keys[c.TopologyKey] = true
			}
		}
		if !keys["topology.kubernetes.io/zone"] || !keys["kubernetes.io/hostname"] {
			t.Errorf("%s: replicas are not spread across zones and nodes: %v", name, keys)
		}
	}
}

// mountsSecretFile reports whether path is a file of a Secret volume mounted in pod's container.
func mountsSecretFile(pod corev1.PodSpec, path string) bool {
	_, ok := secretFiles(pod)[path]
	return ok
}

func checkDeployment(t *testing.T, name string, d appsv1.Deployment, cfg corev1.ConfigMap, cfgName string) {
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
	// The API on its port, the ops endpoints (probes, metrics, profiles) on the ops port.
	opsPort := ports[name] + 1000
	if len(c.Ports) != 2 || c.Ports[0].ContainerPort != int32(ports[name]) || c.Ports[0].Name != "http" ||
		c.Ports[1].ContainerPort != int32(opsPort) || c.Ports[1].Name != "ops" {
		t.Errorf("%s: container ports %+v, want http %d and ops %d", name, c.Ports, ports[name], opsPort)
	}
	for kind, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", name, kind)
			continue
		}
		if !slices.Contains(servedPaths, p.HTTPGet.Path) || p.HTTPGet.Port.String() != "ops" {
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
	opsSet := false
	for _, e := range c.Env {
		if !vars[e.Name] {
			t.Errorf("%s: env %s is not read by %s", name, e.Name, name)
		}
		if e.Name == httpAddrVar[name] && e.Value != fmt.Sprintf("0.0.0.0:%d", ports[name]) {
			t.Errorf("%s: %s=%s", name, e.Name, e.Value)
		}
		if opsVar := strings.Replace(httpAddrVar[name], "_HTTP_", "_OPS_", 1); e.Name == opsVar {
			opsSet = e.Value == fmt.Sprintf("0.0.0.0:%d", opsPort)
		}
	}
	for k := range cfg.Data {
		if !anyReads(k) {
			t.Errorf("ConfigMap key %s is read by no service", k)
		}
	}
	fromCM := false
	for _, ef := range c.EnvFrom {
		fromCM = fromCM || ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == cfgName
	}
	if !fromCM || cfgName == "" {
		t.Errorf("%s: must load orderflow-config by its generated name %q (a content hash: a change rolls the pods)", name, cfgName)
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
	if !opsSet {
		t.Errorf("%s: the ops address is not set to the ops port %d", name, opsPort)
	}
	if d.Spec.Template.Annotations["prometheus.io/scrape"] != "true" || d.Spec.Template.Annotations["prometheus.io/port"] != strconv.Itoa(opsPort) {
		t.Errorf("%s: Prometheus scrape annotations missing or on the wrong port", name)
	}
}

// TestOperatorExamplesParse keeps the prod examples well-formed and replicated.
func TestOperatorExamplesParse(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("k8s", "overlays", "prod", "examples", "*.yaml"))
	if len(files) < 4 {
		t.Fatalf("examples: %v", files)
	}
	o := build(t, "prod")
	cfg := o.configMaps["orderflow-config"]
	partitions, _ := strconv.Atoi(cfg.Data["KAFKA_TOPIC_PARTITIONS"])
	topics, scaled, maxConns := 0, 0, 0
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
			switch obj.Kind {
			case "KafkaTopic":
				topics++
				cfg, _ := obj.Spec["config"].(map[string]any)
				if obj.Spec["replicas"] != float64(3) || obj.Spec["partitions"] != float64(partitions) || cfg["min.insync.replicas"] != float64(2) {
					t.Errorf("%s: topic %v not %d partitions (KAFKA_TOPIC_PARTITIONS) × 3 replicas with min.insync.replicas 2", f, obj.Spec["topicName"], partitions)
				}
			case "ScaledObject":
				scaled++
				if obj.Spec["maxReplicaCount"].(float64) > float64(partitions) {
					t.Errorf("%s: ScaledObject may grow past the %d partitions", f, partitions)
				}
			case "Cluster":
				params, _ := obj.Spec["postgresql"].(map[string]any)["parameters"].(map[string]any)
				maxConns, _ = strconv.Atoi(fmt.Sprint(params["max_connections"]))
			}
		}
	}
	if topics != 8 || scaled != len(cli.Services) {
		t.Errorf("%d KafkaTopics, want the 8 topics; %d ScaledObjects, want one per service", topics, scaled)
	}
	// The connection budget: every pod at its HPA's maximum, each with a full pool, plus the init
	// Job, within what Postgres accepts (less its reserved superuser connections).
	perPod, _ := strconv.Atoi(cfg.Data["POSTGRES_MAX_CONNS"])
	if perPod == 0 {
		perPod = 10 // the default (docs/configuration.md)
	}
	budget := perPod
	for name := range cli.Services {
		if vars, _ := cli.Variables(name); vars["POSTGRES_MAX_CONNS"] {
			budget += perPod * int(o.hpas[name].Spec.MaxReplicas)
		}
		if name != "order-service" && int(o.hpas[name].Spec.MaxReplicas) > partitions {
			t.Errorf("prod HPA %s may grow to %d replicas; only %d partitions", name, o.hpas[name].Spec.MaxReplicas, partitions)
		}
	}
	if budget > maxConns-3 {
		t.Errorf("Postgres connections at the HPAs' maxima: %d, above max_connections %d less 3 reserved", budget, maxConns)
	}
	t.Logf("Postgres connection budget: %d of %d", budget, maxConns)
}

// TestStrimziExampleMatchesWhatIsTested: the example cluster runs the Kafka version the tests run,
// offers no plaintext listener, and each workload's KafkaUser (the name its prod Deployment logs
// in with) may read what the service consumes, write its own topic and the dead-letter topics of
// what it consumes, and use its consumer group.
func TestStrimziExampleMatchesWhatIsTested(t *testing.T) {
	pom, err := os.ReadFile(filepath.Join("native", "kafka", "pom.xml"))
	if err != nil {
		t.Fatal(err)
	}
	tested := regexp.MustCompile(`<kafka.version>([^<]+)</kafka.version>`).FindSubmatch(pom)
	var kafka struct {
		Spec struct {
			Kafka struct {
				Version   string `json:"version"`
				Listeners []struct {
					Name string `json:"name"`
					TLS  bool   `json:"tls"`
				} `json:"listeners"`
			} `json:"kafka"`
		} `json:"spec"`
	}
	type acl struct {
		Resource struct {
			Type string `json:"type"`
			Name string `json:"name"`
		} `json:"resource"`
		Operations []string `json:"operations"`
	}
	users := map[string][]acl{}
	for _, doc := range examples(t, "strimzi-kafka.yaml", "strimzi-users.yaml") {
		var obj struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
			Spec struct {
				Authorization struct {
					ACLs []acl `json:"acls"`
				} `json:"authorization"`
			} `json:"spec"`
		}
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		switch obj.Kind {
		case "Kafka":
			if err := yaml.Unmarshal([]byte(doc), &kafka); err != nil {
				t.Fatal(err)
			}
		case "KafkaUser":
			users[obj.Metadata.Name] = obj.Spec.Authorization.ACLs
		}
	}
	if tested == nil || kafka.Spec.Kafka.Version != string(tested[1]) {
		t.Errorf("Strimzi example runs Kafka %q, the tests run %q", kafka.Spec.Kafka.Version, tested)
	}
	for _, l := range kafka.Spec.Kafka.Listeners {
		if !l.TLS {
			t.Errorf("Strimzi example: listener %s is plaintext", l.Name)
		}
	}
	allows := func(user, typ, name, op string) bool {
		for _, a := range users[user] {
			if a.Resource.Type == typ && (a.Resource.Name == name || a.Resource.Name == "*") && slices.Contains(a.Operations, op) {
				return true
			}
		}
		return false
	}
	o := build(t, "prod")
	produces := map[string]string{"ORDER": event.TopicOrders, "INVENTORY": event.TopicInventory, "PAYMENT": event.TopicPayments, "DELIVERY": event.TopicDelivery}
	groups := map[string]string{"ORDER": event.GroupOrder, "INVENTORY": event.GroupInventory, "PAYMENT": event.GroupPayment, "DELIVERY": event.GroupDelivery, "QUERY": event.GroupQuery}
	for _, s := range testkit.Services {
		user := ""
		for _, e := range o.deployments[s.Cmd].Spec.Template.Spec.Containers[0].Env {
			if e.Name == "KAFKA_SASL_USERNAME" {
				user = e.Value
			}
		}
		if _, ok := users[user]; !ok {
			t.Errorf("%s logs in as %q, which has no KafkaUser", s.Cmd, user)
			continue
		}
		if p := produces[s.Prefix]; p != "" && !allows(user, "topic", p, "Write") {
			t.Errorf("%s may not write %s", user, p)
		}
		for _, topic := range testkit.ConsumedTopics()[s.Prefix] {
			for _, need := range [][2]string{{topic, "Read"}, {topic, "Describe"}, {event.DLQFor(topic), "Write"}} {
				if !allows(user, "topic", need[0], need[1]) {
					t.Errorf("%s may not %s %s", user, need[1], need[0])
				}
			}
		}
		if !allows(user, "group", groups[s.Prefix], "Read") {
			t.Errorf("%s may not use its group %s", user, groups[s.Prefix])
		}
	}
}

// examples returns the YAML documents of the named files in overlays/prod/examples.
func examples(t *testing.T, names ...string) []string {
	t.Helper()
	var docs []string
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join("k8s", "overlays", "prod", "examples", n))
		if err != nil {
			t.Fatal(err)
		}
		docs = append(docs, strings.Split(string(b), "\n---\n")...)
	}
	return docs
}

// TestProdWorkloadsGetTheirCredentials: every secret the configuration code reads for a workload
// (cli.Secrets: what it uses, so query-api is not given the Postgres password) reaches it in the
// prod overlay from a Secret, as NAME_FILE naming a file of a mounted Secret volume or as NAME from
// a secretKeyRef, never by taking a whole Secret into the environment; and the workload's whole
// environment, with those files stubbed, passes the service's own validation (TLS files present,
// SASL user and password both set, in Kubernetes an ADMIN_TOKEN).
func TestProdWorkloadsGetTheirCredentials(t *testing.T) {
	o := build(t, "prod")
	cfg := o.configMaps["orderflow-config"]
	_, caFile := testkit.PKI(t) // for the CA files the TLS settings parse
	type workload struct {
		pod     corev1.PodSpec
		secrets []string
		check   func(getenv func(string) string) error
	}
	ws := map[string]workload{}
	// Secrets that stay optional in prod, and why.
	optional := map[string]string{"OTEL_EXPORTER_OTLP_HEADERS": "the in-cluster collector takes spans without authentication"}
	for name := range cli.Services {
		secrets, _ := cli.Secrets(name)
		secrets = slices.DeleteFunc(secrets, func(s string) bool { return optional[s] != "" })
		ws[name] = workload{o.deployments[name].Spec.Template.Spec, secrets, func(g func(string) string) error { return cli.CheckConfig(name, g) }}
	}
	// The init Job creates the databases and topics: the Postgres and Kafka credentials, not the
	// operator token (it serves nothing).
	load := func(e *config.Env) { service.LoadCommon(e); service.LoadPostgres(e) }
	e := config.New(func(string) string { return "" })
	load(e)
	var initSecrets []string
	for _, v := range e.Vars() {
		if v.Secret && v.Name != "ADMIN_TOKEN" && optional[v.Name] == "" {
			initSecrets = append(initSecrets, v.Name)
		}
	}
	ws["orderflow-init"] = workload{o.jobs["orderflow-init"].Spec.Template.Spec, initSecrets, func(g func(string) string) error {
		e := config.New(g)
		load(e)
		return e.Err()
	}}
	for name, w := range ws {
		if len(w.secrets) < 2 {
			t.Fatalf("%s: the configuration code names only %v as secrets", name, w.secrets)
		}
		c := w.pod.Containers[0]
		for _, ef := range c.EnvFrom {
			if ef.SecretRef != nil {
				t.Errorf("%s: takes the whole Secret %s into its environment; wire each credential", name, ef.SecretRef.Name)
			}
		}
		files := secretFiles(w.pod)
		env := map[string]string{"KUBERNETES_SERVICE_HOST": "10.96.0.1"}
		for k, v := range cfg.Data {
			env[k] = v
		}
		fromRef := map[string]bool{}
		for _, v := range c.Env {
			env[v.Name] = v.Value
			if v.ValueFrom != nil && v.ValueFrom.SecretKeyRef != nil {
				env[v.Name] = "from-secret"
				fromRef[v.Name] = true
			}
		}
		for _, s := range w.secrets {
			if _, mounted := files[env[s+"_FILE"]]; !mounted && !fromRef[s] {
				t.Errorf("%s: %s (read by its configuration) is not wired from a Secret (%s_FILE=%q)", name, s, s, env[s+"_FILE"])
			}
		}
		dir := t.TempDir()
		getenv := func(k string) string {
			v := env[k]
			if _, ok := files[v]; !ok {
				return v
			}
			if strings.HasSuffix(v, ".crt") {
				return caFile
			}
			stub := filepath.Join(dir, strings.ReplaceAll(strings.Trim(v, "/"), "/", "_"))
			if err := os.WriteFile(stub, []byte("s3cret"), 0o600); err != nil {
				t.Fatal(err)
			}
			return stub
		}
		if err := w.check(getenv); err != nil {
			t.Errorf("%s: its prod environment fails its own validation: %v", name, err)
		}
	}
}

// secretFiles maps each file the pod's container sees from a Secret volume to "secret/key".
func secretFiles(pod corev1.PodSpec) map[string]string {
	out := map[string]string{}
	for _, m := range pod.Containers[0].VolumeMounts {
		for _, v := range pod.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			for _, it := range v.Secret.Items {
				out[filepath.Join(m.MountPath, it.Path)] = v.Secret.SecretName + "/" + it.Key
			}
		}
	}
	return out
}
