package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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
	bin := filepath.Join(t.TempDir(), "orderflow")
	cmd := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/orderflow")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
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
