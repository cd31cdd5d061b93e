package controlplane

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// The control plane tests run against is the release hack/lib.sh builds: the one go.mod's
// client libraries come from (k8s.io/api v0.X.Y is Kubernetes 1.X.Y). Bumping them without
// K8sVersion would look for binaries that were never built.
func TestK8sVersionIsGoModsRelease(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s.io/api v0\.([0-9.]+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("go.mod has no k8s.io/api requirement")
	}
	if want := "1." + string(m[1]); K8sVersion != want {
		t.Errorf("K8sVersion = %s, but go.mod's k8s.io/api is Kubernetes %s (hack/lib.sh builds that)", K8sVersion, want)
	}
}
