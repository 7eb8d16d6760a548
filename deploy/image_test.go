package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// devServers are the modules of orderflow dev's embedded servers; none may be in the image.
var devServers = []string{"github.com/twmb/franz-go/pkg/kfake", "github.com/alicebob/miniredis", "github.com/fergusstrange/embedded-postgres"}

// TestProductionBuildHasNoDevServers builds the binary the way the Dockerfile does and reads its
// module list (go version -m): none of the development servers is linked. It also checks that
// the Dockerfile's build is that build (no build tags).
func TestProductionBuildHasNoDevServers(t *testing.T) {
	docker, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	build := regexp.MustCompile(`(?s)RUN .*?go build .*?\./cmd/orderflow`).FindString(string(docker))
	if build == "" {
		t.Fatal("no go build of ./cmd/orderflow in the Dockerfile")
	}
	if strings.Contains(build, "-tags") {
		t.Fatalf("the Dockerfile builds with tags:\n%s", build)
	}
	// The Dockerfile's own -ldflags, its build args replaced by test values: every -X must name a
	// real variable, which `orderflow version` then reports.
	ldflags := regexp.MustCompile(`(?s)-ldflags "(.*?)"`).FindStringSubmatch(build)
	if ldflags == nil {
		t.Fatal("the Dockerfile's go build sets no -ldflags")
	}
	args := map[string]string{"VERSION": "v9.8.7-test", "COMMIT": "abc1234", "BUILD_TIME": "2026-01-02T03:04:05Z"}
	flags := regexp.MustCompile(`\$\{(\w+)\}`).ReplaceAllStringFunc(strings.Join(strings.Fields(strings.ReplaceAll(ldflags[1], "\\\n", " ")), " "),
		func(m string) string {
			v, ok := args[m[2:len(m)-1]]
			if !ok {
				t.Errorf("-ldflags uses %s, which is not one of the build args %v", m, args)
			}
			return v
		})
	bin := filepath.Join(t.TempDir(), "orderflow")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", flags, "-o", bin, "./cmd/orderflow")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -ldflags %q: %v\n%s", flags, err, out)
	}
	if out, err := exec.Command(bin, "version").CombinedOutput(); err != nil ||
		string(out) != fmt.Sprintf("orderflow %s (commit %s, built %s)\n", args["VERSION"], args["COMMIT"], args["BUILD_TIME"]) {
		t.Errorf("the image's build args do not reach the binary: `orderflow version` says %q (%v)", out, err)
	}
	out, err := exec.Command("go", "version", "-m", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("go version -m: %v\n%s", err, out)
	}
	mods := string(out)
	if !strings.Contains(mods, "\tgithub.com/twmb/franz-go\t") {
		t.Fatalf("go version -m lists no modules (the check would pass for nothing):\n%s", mods)
	}
	for _, m := range devServers {
		if strings.Contains(mods, "\t"+m) {
			t.Errorf("the production build links %s", m)
		}
	}
	// The development build does link them (the same check finds them when they are there).
	dev := filepath.Join(t.TempDir(), "orderflow-dev")
	cmd = exec.Command("go", "build", "-tags", "devmode", "-o", dev, "./cmd/orderflow")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags devmode: %v\n%s", err, out)
	}
	out, _ = exec.Command("go", "version", "-m", dev).CombinedOutput()
	for _, m := range devServers {
		if !strings.Contains(string(out), "\t"+m) {
			t.Errorf("the development build does not list %s: is the module name right?", m)
		}
	}
}

// TestDockerfileStages: each stage declares the build args it uses (an ARG before FROM is not
// visible after it), the image's labels are OCI annotation keys and the version, revision and
// creation time come from the build args, it runs as the user the manifests require, and it
// exposes every service's API and ops port.
func TestDockerfileStages(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := regexp.MustCompile(`(?m)^FROM `).Split(string(b), -1)[1:]
	if len(stages) != 2 {
		t.Fatalf("%d stages, want build and image", len(stages))
	}
	argRef := regexp.MustCompile(`\$\{(\w+)\}`)
	for i, st := range stages {
		declared := map[string]bool{}
		for _, m := range regexp.MustCompile(`(?m)^ARG (\w+)`).FindAllStringSubmatch(st, -1) {
			declared[m[1]] = true
		}
		body := st[strings.Index(st, "\n"):] // the FROM line itself uses the args declared before it
		for _, m := range argRef.FindAllStringSubmatch(body, -1) {
			if !declared[m[1]] {
				t.Errorf("stage %d uses ${%s} without declaring ARG %s in it", i+1, m[1], m[1])
			}
		}
	}
	image := stages[1]
	oci := map[string]bool{"created": true, "authors": true, "url": true, "documentation": true, "source": true, "version": true,
		"revision": true, "vendor": true, "licenses": true, "ref.name": true, "title": true, "description": true, "base.digest": true, "base.name": true}
	label := regexp.MustCompile(`(?s)\nLABEL (.*?)\n[A-Z]`).FindStringSubmatch(image)
	if label == nil {
		t.Fatal("the image has no LABEL")
	}
	want := map[string]string{"version": "${VERSION}", "revision": "${COMMIT}", "created": "${BUILD_TIME}"}
	for _, l := range regexp.MustCompile(`([\w.-]+)="([^"]*)"`).FindAllStringSubmatch(label[1], -1) {
		key, ok := strings.CutPrefix(l[1], "org.opencontainers.image.")
		if !ok || !oci[key] {
			t.Errorf("label %s is not an OCI annotation key", l[1])
		}
		if w, ok := want[key]; ok {
			if l[2] != w {
				t.Errorf("label %s=%q, want %s", l[1], l[2], w)
			}
			delete(want, key)
		}
	}
	if len(want) != 0 {
		t.Errorf("labels missing: %v", want)
	}
	if !strings.Contains(image, "\nUSER 65532:65532\n") {
		t.Error("the image must run as 65532:65532, the user the Kubernetes manifests require")
	}
	expose := regexp.MustCompile(`(?m)^EXPOSE (.*)$`).FindStringSubmatch(image)
	for name, p := range ports {
		for _, port := range []int{p, p + 1000} {
			if expose == nil || !slices.Contains(strings.Fields(expose[1]), fmt.Sprint(port)) {
				t.Errorf("EXPOSE does not list %s's port %d", name, port)
			}
		}
	}
}
