// Command validate checks calc's Kubernetes manifests against the
// Kubernetes API types and against what calcd and its image need. It is a
// module of its own so that calc's main module does not depend on
// k8s.io/api.
//
// Usage:
//
//	validate -calcd-help FILE -dockerfile FILE KUSTOMIZATION_DIR...
//
// For each directory it reads kustomization.yaml (strictly: resources and
// patches), loads its resources (files, or directories holding a
// kustomization.yaml, recursively), decodes every YAML document strictly
// into its k8s.io/api type (sigs.k8s.io/yaml.UnmarshalStrict: an unknown
// or duplicate field is an error), applies its patches as strategic merge
// patches (k8s.io/apimachinery's strategicpatch, as kustomize does for a
// patch without a target; kustomize itself is not run), and checks the
// resulting set:
//
//   - the calcd Deployment: selector and labels agree; pod and container
//     security (runAsNonRoot, the Dockerfile's numeric USER,
//     RuntimeDefault seccomp, no privilege escalation, a read-only root,
//     every capability dropped); requests and a memory limit; the container
//     ports are the ports of CALCD_TCP_ADDR, CALCD_GRPC_ADDR and
//     CALCD_ADMIN_ADDR and the Dockerfile's EXPOSE;
//   - every CALCD_* variable, in the ConfigMap or the container, is one
//     calcd knows (from calcd --help);
//   - protected mode: without TLS and authentication the Deployment sets
//     CALCD_INSECURE_LISTEN (or calcd exits 2), and then a NetworkPolicy
//     selects the pods;
//   - probes: without TLS, the kubelet's native gRPC probes on the gRPC
//     port against the whole server's health; with TLS, whose handshake
//     the kubelet's gRPC probe cannot make, HTTP on the admin port
//     (/healthz, /readyz); files calcd reads are mounted read-only from a
//     Secret or ConfigMap;
//   - the drain: preStop sleep + --drain-delay + --shutdown-timeout + 2 s
//     (calcd's wait for handlers after the deadline) + 1 s must fit in
//     terminationGracePeriodSeconds, both durations set explicitly;
//   - Services, the PodDisruptionBudget and the NetworkPolicy select the
//     pods, and name ports the container has.
//
// It prints what it checked and exits 0, or prints each problem and exits
// 1; 2 is a usage error.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its arguments and outputs, returning the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	helpFile := fs.String("calcd-help", "", "`file` holding calcd --help's output (the CALCD_* variables calcd knows)")
	dockerfile := fs.String("dockerfile", "", "the image's Dockerfile (its USER and EXPOSE)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *helpFile == "" || *dockerfile == "" || fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: validate -calcd-help FILE -dockerfile FILE KUSTOMIZATION_DIR...")
		return 2
	}
	env, err := calcdVariables(*helpFile)
	if err != nil {
		fmt.Fprintln(stderr, "validate:", err)
		return 1
	}
	img, err := readDockerfile(*dockerfile)
	if err != nil {
		fmt.Fprintln(stderr, "validate:", err)
		return 1
	}
	status := 0
	for _, dir := range fs.Args() {
		objs, err := build(dir)
		if err != nil {
			fmt.Fprintf(stderr, "validate: %s: %v\n", dir, err)
			status = 1
			continue
		}
		summary, problems := checkSet(objs, env, img)
		for _, p := range problems {
			fmt.Fprintf(stderr, "validate: %s: %s\n", dir, p)
		}
		if len(problems) > 0 {
			status = 1
			continue
		}
		fmt.Fprintf(stdout, "validate: %s: %d objects decode strictly into k8s.io/api types; %s\n", dir, len(objs), summary)
	}
	return status
}

// calcdVariables returns the CALCD_* variables calcd --help names.
func calcdVariables(file string) (map[string]bool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile(`\benv (CALCD_[A-Z0-9_]+)`).FindAllStringSubmatch(string(b), -1) {
		vars[m[1]] = true
	}
	if len(vars) == 0 {
		return nil, fmt.Errorf("%s names no CALCD_ variable: not calcd --help's output", file)
	}
	return vars, nil
}

// image is what the manifests must agree with in the Dockerfile's last
// stage.
type image struct {
	uid   int64
	ports []int32
}

// readDockerfile reads the numeric uid of the last USER and the ports of
// the EXPOSE lines after the last FROM.
func readDockerfile(file string) (image, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return image{}, err
	}
	var img image
	user := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			user, img.ports = "", nil
		case "USER":
			user = f[1]
		case "EXPOSE":
			for _, p := range f[1:] {
				n, err := strconv.ParseInt(strings.TrimSuffix(p, "/tcp"), 10, 32)
				if err != nil {
					return image{}, fmt.Errorf("%s: EXPOSE %s", file, p)
				}
				img.ports = append(img.ports, int32(n))
			}
		}
	}
	uid, err := strconv.ParseInt(strings.SplitN(user, ":", 2)[0], 10, 64)
	if err != nil {
		return image{}, fmt.Errorf("%s: USER %q is not a numeric uid", file, user)
	}
	img.uid = uid
	slices.Sort(img.ports)
	return img, nil
}

// kustomization is the part of kustomize's Kustomization these manifests
// use; anything else in the file is an error.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
	Patches    []struct {
		Path string `json:"path"`
	} `json:"patches"`
}

// object is one decoded manifest: its k8s.io/api value and where it came
// from.
type object struct {
	apiVersion, kind, name, file string
	value                        any
}

// newObject returns a pointer to the k8s.io/api type of apiVersion and kind.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	}
	return nil, fmt.Errorf("%s %s: not a kind validate knows", apiVersion, kind)
}

// decode decodes one YAML document strictly into its type.
func decode(doc []byte, file string) (object, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return object{}, fmt.Errorf("%s: %w", file, err)
	}
	v, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return object{}, fmt.Errorf("%s: %w", file, err)
	}
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return object{}, fmt.Errorf("%s: %s: %w", file, tm.Kind, err)
	}
	name := v.(metav1.Object).GetName()
	if name == "" {
		return object{}, fmt.Errorf("%s: a %s without a name", file, tm.Kind)
	}
	return object{apiVersion: tm.APIVersion, kind: tm.Kind, name: name, file: file, value: v}, nil
}

// documents splits a YAML stream into its non-empty documents.
func documents(file string) ([][]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
	var docs [][]byte
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		var v any
		if err := yaml.Unmarshal(doc, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		if v != nil { // comments only
			docs = append(docs, doc)
		}
	}
}

// build loads a kustomization directory as kustomize would for what these
// manifests use: resources, then patches applied as strategic merge
// patches to the object of the patch's kind and name.
func build(dir string) ([]object, error) {
	kfile := filepath.Join(dir, "kustomization.yaml")
	b, err := os.ReadFile(kfile)
	if err != nil {
		return nil, err
	}
	var k kustomization
	if err := yaml.UnmarshalStrict(b, &k); err != nil {
		return nil, fmt.Errorf("%s: %w", kfile, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		return nil, fmt.Errorf("%s: apiVersion %q kind %q", kfile, k.APIVersion, k.Kind)
	}
	var objs []object
	for _, res := range k.Resources {
		p := filepath.Join(dir, res)
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: resource: %w", kfile, err)
		}
		if st.IsDir() {
			sub, err := build(p)
			if err != nil {
				return nil, err
			}
			objs = append(objs, sub...)
			continue
		}
		docs, err := documents(p)
		if err != nil {
			return nil, err
		}
		for _, doc := range docs {
			o, err := decode(doc, p)
			if err != nil {
				return nil, err
			}
			objs = append(objs, o)
		}
	}
	seen := map[string]string{}
	for _, o := range objs {
		key := o.kind + "/" + o.name
		if f, dup := seen[key]; dup {
			return nil, fmt.Errorf("%s %s is in both %s and %s", o.kind, o.name, f, o.file)
		}
		seen[key] = o.file
	}
	for _, patch := range k.Patches {
		p := filepath.Join(dir, patch.Path)
		docs, err := documents(p)
		if err != nil {
			return nil, err
		}
		for _, doc := range docs {
			// The patch itself must be a valid (partial) object of its kind.
			po, err := decode(doc, p)
			if err != nil {
				return nil, err
			}
			i := slices.IndexFunc(objs, func(o object) bool { return o.kind == po.kind && o.name == po.name })
			if i < 0 {
				return nil, fmt.Errorf("%s: patches %s %s, which the resources do not hold", p, po.kind, po.name)
			}
			orig, err := json.Marshal(objs[i].value)
			if err != nil {
				return nil, err
			}
			pj, err := yaml.YAMLToJSON(doc)
			if err != nil {
				return nil, err
			}
			schema, _ := newObject(po.apiVersion, po.kind) // known: decode succeeded
			merged, err := strategicpatch.StrategicMergePatch(orig, pj, schema)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", p, err)
			}
			mo, err := decode(merged, p+" applied to "+objs[i].file)
			if err != nil {
				return nil, err
			}
			objs[i] = mo
		}
	}
	return objs, nil
}
