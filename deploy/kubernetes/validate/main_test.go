package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The real manifests and Dockerfile, which the tests copy and break.
const (
	manifests  = ".."
	dockerfile = "../../../Dockerfile"
)

var help struct {
	once      sync.Once
	dir, file string
	err       error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if help.dir != "" {
		os.RemoveAll(help.dir)
	}
	os.Exit(code)
}

// calcdHelp returns a file holding the real calcd --help: of the binary
// $CALCD names (deploy/test.sh sets it), else built from the repository
// this module sits in.
func calcdHelp(t *testing.T) string {
	t.Helper()
	help.once.Do(func() {
		help.dir, help.err = os.MkdirTemp("", "calcd-help")
		if help.err != nil {
			return
		}
		help.file = filepath.Join(help.dir, "help.txt")
		cmd := exec.Command("go", "run", "./server/cmd/calcd", "--help")
		cmd.Dir = "../../.."
		if bin := os.Getenv("CALCD"); bin != "" {
			cmd = exec.Command(bin, "--help")
		}
		out, err := cmd.CombinedOutput() // --help exits 0
		if err != nil {
			help.err = err
			return
		}
		help.err = os.WriteFile(help.file, out, 0o644)
	})
	if help.err != nil {
		t.Fatal(help.err)
	}
	return help.file
}

// copyTree copies the manifests into a new directory, with edits: each
// edit replaces old with new in file (relative to deploy/kubernetes), and
// old must be there.
func copyTree(t *testing.T, edits ...[3]string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"kustomization.yaml", "calcd.yaml", "tls/kustomization.yaml", "tls/tls-patch.yaml"} {
		b, err := os.ReadFile(filepath.Join(manifests, f))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range edits {
			if e[0] != f {
				continue
			}
			if !bytes.Contains(b, []byte(e[1])) {
				t.Fatalf("%s holds no %q", f, e[1])
			}
			b = bytes.Replace(b, []byte(e[1]), []byte(e[2]), 1)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// validate runs the command on dir's base and tls overlay.
func validate(t *testing.T, dir string) (int, string) {
	t.Helper()
	var out bytes.Buffer
	status := run([]string{"-calcd-help", calcdHelp(t), "-dockerfile", dockerfile, dir, filepath.Join(dir, "tls")}, &out, &out)
	return status, out.String()
}

func TestManifests(t *testing.T) {
	status, out := validate(t, manifests)
	if status != 0 {
		t.Fatalf("status %d:\n%s", status, out)
	}
	for _, want := range []string{
		"..: 6 objects decode strictly into k8s.io/api types; plaintext behind a NetworkPolicy, gRPC probes; non-root uid 65532; drain: preStop 5s + drain-delay 5s + shutdown-timeout 20s + 2s + 1s margin = 33s <= grace 35s",
		"../tls: 6 objects decode strictly into k8s.io/api types; TLS and authentication, admin HTTP probes",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestMistakes breaks the manifests one way at a time, each a mistake a
// person editing them could make, and checks validate names it.
func TestMistakes(t *testing.T) {
	const (
		base  = "calcd.yaml"
		patch = "tls/tls-patch.yaml"
	)
	for _, tc := range []struct {
		name string
		edit [3]string
		want string
	}{
		{"misspelt field", [3]string{base, "terminationGracePeriodSeconds: 35", "terminationGracePeriodSecond: 35"}, `unknown field "terminationGracePeriodSecond"`},
		{"duplicate field", [3]string{base, "      enableServiceLinks: false\n", "      enableServiceLinks: false\n      enableServiceLinks: true\n"}, `key "enableServiceLinks" already set`},
		{"wrong type", [3]string{base, "replicas: 3", "replicas: three"}, "cannot unmarshal string"},
		{"unknown kind", [3]string{base, "kind: PodDisruptionBudget", "kind: PodDisruptionBudgets"}, "not a kind validate knows"},
		{"grace too short", [3]string{base, "terminationGracePeriodSeconds: 35", "terminationGracePeriodSeconds: 30"}, "terminationGracePeriodSeconds 30s is shorter than the drain: drain: preStop 5s + drain-delay 5s + shutdown-timeout 20s + 2s + 1s margin = 33s"},
		{"shutdown timeout raised", [3]string{base, `value: "20s"`, `value: "40s"`}, "shorter than the drain"},
		{"drain delay left to the default", [3]string{base, "            - name: CALCD_DRAIN_DELAY\n              value: \"5s\"\n", ""}, "set CALCD_DRAIN_DELAY explicitly"},
		{"preStop exec", [3]string{base, "              sleep:\n                seconds: 5", "              exec:\n                command: [sleep, \"5\"]"}, "the image has no shell"},
		{"unknown variable", [3]string{base, "CALCD_MAX_CONNECTION_AGE:", "CALCD_MAX_CONN_AGE:"}, "CALCD_MAX_CONN_AGE is no calcd variable"},
		{"root", [3]string{base, "        runAsNonRoot: true\n        runAsUser: 65532", "        runAsNonRoot: false\n        runAsUser: 65532"}, "runAsNonRoot: true"},
		{"another uid", [3]string{base, "runAsUser: 65532", "runAsUser: 1000"}, "runAsUser must be the Dockerfile's USER, 65532"},
		{"capabilities kept", [3]string{base, `drop: ["ALL"]`, `drop: ["NET_RAW"]`}, "capabilities must drop ALL"},
		{"writable root", [3]string{base, "readOnlyRootFilesystem: true", "readOnlyRootFilesystem: false"}, "readOnlyRootFilesystem must be true"},
		{"no memory limit", [3]string{base, "            limits:\n              memory: 512Mi\n", ""}, "a memory limit"},
		{"protected mode", [3]string{base, "            - name: CALCD_INSECURE_LISTEN\n              value: \"true\"", "            - name: CALCD_INSECURE_LISTEN\n              value: \"false\""}, "calcd would exit 2 (protected mode)"},
		{"probe on the wrong port", [3]string{base, "          readinessProbe:\n            grpc:\n              port: 50051", "          readinessProbe:\n            grpc:\n              port: 4000"}, "readiness probe: gRPC port 4000, the container's grpc port is 50051"},
		{"probe of one service", [3]string{base, "          livenessProbe:\n            grpc:\n              port: 50051", "          livenessProbe:\n            grpc:\n              port: 50051\n              service: calculator.v1.CalculatorService"}, `service "calculator.v1.CalculatorService"`},
		{"http probe without TLS", [3]string{base, "          readinessProbe:\n            grpc:\n              port: 50051", "          readinessProbe:\n            httpGet:\n              path: /readyz\n              port: admin"}, "want the kubelet's gRPC probe"},
		{"address and port disagree", [3]string{base, `CALCD_GRPC_ADDR: ":50051"`, `CALCD_GRPC_ADDR: ":50052"`}, `port grpc is 50051, but CALCD_GRPC_ADDR is ":50052"`},
		{"service targets no port", [3]string{base, "      targetPort: grpc\n      protocol: TCP\n    - name: admin", "      targetPort: grcp\n      protocol: TCP\n    - name: admin"}, "Service calcd: port grpc targets grcp"},
		{"service selects nothing", [3]string{base, "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: calcd", "  type: ClusterIP\n  selector:\n    app.kubernetes.io/name: calc"}, "Service calcd: its selector does not select the pods"},
		{"budget blocks evictions", [3]string{base, "maxUnavailable: 1\n  selector:", "maxUnavailable: 0\n  selector:"}, "allows no eviction at 3 replicas"},
		{"policy leaves the admin port shut", [3]string{base, "      ports:\n        - port: admin\n", "      ports:\n        - port: grpc\n"}, "nothing may reach port admin"},
		{"rollout may drop below", [3]string{base, "maxUnavailable: 0\n      maxSurge: 1", "maxUnavailable: 1\n      maxSurge: 1"}, "maxUnavailable 0"},
		// The tls overlay.
		{"TLS keeps the gRPC probe", [3]string{patch, "          readinessProbe:\n            grpc: null\n            httpGet:\n              path: /readyz\n              port: admin\n", ""}, "readiness probe: the kubelet's gRPC probe speaks plaintext"},
		{"TLS without tokens", [3]string{patch, "            - name: CALCD_AUTH_TOKENS\n              value: /etc/calcd/auth/tokens.json\n", ""}, "calcd would exit 2 (protected mode)"},
		{"certificate not mounted", [3]string{patch, "value: /etc/calcd/tls/tls.crt", "value: /etc/ssl/tls.crt"}, "CALCD_TLS_CERT=/etc/ssl/tls.crt is under no volumeMount"},
		{"mount not read-only", [3]string{patch, "              mountPath: /etc/calcd/auth\n              readOnly: true", "              mountPath: /etc/calcd/auth\n              readOnly: false"}, "volumeMount auth must be readOnly"},
		{"patch of a field that is not there", [3]string{patch, "      volumes:", "      volumez:"}, `tls-patch.yaml: Deployment: error unmarshaling JSON: while decoding JSON: json: unknown field "volumez"`},
		{"patch of another deployment", [3]string{patch, "  name: calcd\nspec:", "  name: calc\nspec:"}, "patches Deployment calc, which the resources do not hold"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, out := validate(t, copyTree(t, tc.edit))
			if status != 1 || !strings.Contains(out, tc.want) {
				t.Fatalf("status %d, output:\n%s\nwant status 1 and %q", status, out, tc.want)
			}
		})
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		nil,
		{"-dockerfile", dockerfile, manifests},
		{"-calcd-help", "x", manifests},
		{"-calcd-help", "x", "-dockerfile", dockerfile},
		{"-nope"},
	} {
		var out bytes.Buffer
		if status := run(args, &out, &out); status != 2 {
			t.Errorf("%q: status %d, want 2: %s", args, status, out.String())
		}
	}
	var out bytes.Buffer
	if status := run([]string{"-calcd-help", dockerfile, "-dockerfile", dockerfile, manifests}, &out, &out); status != 1 || !strings.Contains(out.String(), "not calcd --help's output") {
		t.Errorf("a help file without variables: status %d: %s", status, out.String())
	}
}
