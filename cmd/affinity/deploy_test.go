package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/affinityhq/affinity/internal/duration"
)

// deployDir holds the example units and manifests (deploy/README.md).
const deployDir = "../../deploy"

// binaryFlags returns the flags `affinity <cmd> -h` lists.
func binaryFlags(t *testing.T, cmd string) map[string]bool {
	t.Helper()
	out, err := exec.Command(affinityBin, cmd, "-h").CombinedOutput()
	if err != nil {
		t.Fatalf("affinity %s -h: %v\n%s", cmd, err, out)
	}
	flags := map[string]bool{}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "  -"); ok {
			name, _, _ := strings.Cut(rest, " ")
			flags[name] = true
		}
	}
	if len(flags) < 5 {
		t.Fatalf("affinity %s -h lists %d flags: %s", cmd, len(flags), out)
	}
	return flags
}

// deployArgs checks that every --flag in args and every AFFINITY_ variable
// in env is a flag of `affinity cmd`, and returns the flags' values.
func deployArgs(t *testing.T, where, cmd string, args []string, env map[string]string) map[string]string {
	t.Helper()
	known := binaryFlags(t, cmd)
	values := map[string]string{}
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, ok := strings.CutPrefix(a, "--")
		if !ok {
			t.Errorf("%s: argument %q of affinity %s: want --flag (the binary takes no other argument)", where, a, cmd)
			continue
		}
		name, v, hasValue := strings.Cut(name, "=")
		if !hasValue && i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			v, i = args[i+1], i+1
		}
		if !known[name] {
			t.Errorf("%s: --%s is not a flag of affinity %s", where, name, cmd)
		}
		values[name] = v
	}
	for k, v := range env {
		name, ok := strings.CutPrefix(k, envPrefix)
		if !ok {
			continue
		}
		name = strings.ToLower(strings.ReplaceAll(name, "_", "-"))
		if !known[name] {
			t.Errorf("%s: %s is not the variable of a flag of affinity %s", where, k, cmd)
		}
		if _, ok := values[name]; !ok {
			values[name] = v
		}
	}
	return values
}

// shutdownTimeout returns the --shutdown-timeout of values, or the default.
func shutdownTimeout(t *testing.T, where string, values map[string]string) time.Duration {
	t.Helper()
	v, ok := values["shutdown-timeout"]
	if !ok {
		return addNodeFlags(flag.NewFlagSet("default", flag.ContinueOnError)).shutdownTimeout
	}
	d, err := duration.Parse(v)
	if err != nil {
		t.Fatalf("%s: --shutdown-timeout %q: %v", where, v, err)
	}
	return d
}

// readEnvFile reads a systemd EnvironmentFile: KEY=VALUE lines, # comments.
func readEnvFile(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Errorf("%s:%d: %q is not KEY=VALUE", path, i+1, line)
			continue
		}
		env[k] = v
	}
	return env
}

// TestDeploySystemdUnits: every flag on each unit's ExecStart and every
// variable of its EnvironmentFile is a flag of its command; systemd waits
// longer than --shutdown-timeout before it kills; systemd-analyze verify
// (where installed) finds nothing in the units.
func TestDeploySystemdUnits(t *testing.T) {
	units, _ := filepath.Glob(filepath.Join(deployDir, "systemd", "*.service"))
	if len(units) != 3 {
		t.Fatalf("units %v; want collect, build and serve", units)
	}
	cmds := map[string]bool{}
	for _, path := range units {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		keys := map[string]string{}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok && !strings.HasPrefix(k, "#") {
				keys[k] = v
			}
		}
		where := filepath.Base(path)
		exe := strings.Fields(keys["ExecStart"])
		if len(exe) < 2 || exe[0] != "/usr/local/bin/affinity" {
			t.Fatalf("%s: ExecStart %q; want /usr/local/bin/affinity <command> …", where, keys["ExecStart"])
		}
		cmd := exe[1]
		cmds[cmd] = true
		envFile, ok := strings.CutPrefix(keys["EnvironmentFile"], "/etc/affinity/")
		if !ok {
			t.Fatalf("%s: EnvironmentFile %q; want /etc/affinity/<name>.env", where, keys["EnvironmentFile"])
		}
		env := readEnvFile(t, filepath.Join(deployDir, "systemd", envFile))
		values := deployArgs(t, where, cmd, exe[2:], env)
		if v := values["data"]; v != "${STATE_DIRECTORY}" || keys["StateDirectory"] == "" {
			t.Errorf("%s: --data %q, StateDirectory %q; want the unit's StateDirectory", where, v, keys["StateDirectory"])
		}
		stop, err := time.ParseDuration(keys["TimeoutStopSec"])
		if err != nil || stop <= shutdownTimeout(t, where, values) {
			t.Errorf("%s: TimeoutStopSec %q; want longer than --shutdown-timeout %s", where, keys["TimeoutStopSec"], shutdownTimeout(t, where, values))
		}
		if cmd == "build" {
			if values["advertise-api"] != "${AFFINITY_ADVERTISE_API}" || !strings.HasPrefix(env["AFFINITY_ADVERTISE_API"], "http://") {
				t.Errorf("%s: --advertise-api %q, AFFINITY_ADVERTISE_API %q; want the machine's API URL from build.env", where, values["advertise-api"], env["AFFINITY_ADVERTISE_API"])
			}
			if _, pinned := values["own"]; pinned || values["group"] == "" {
				t.Errorf("%s: --group %q, --own %q; want a group member", where, values["group"], values["own"])
			}
		}
	}
	if !cmds["collect"] || !cmds["build"] || !cmds["serve"] {
		t.Errorf("units run %v; want collect, build and serve", cmds)
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("no systemd-analyze here: units not verified by systemd (%v)", err)
		return
	}
	// verify checks that ExecStart's binary exists: the units point at
	// the test's binary, in a copy.
	dir := t.TempDir()
	var copies []string
	for _, path := range units {
		b, _ := os.ReadFile(path)
		c := filepath.Join(dir, filepath.Base(path))
		if err := os.WriteFile(c, bytes.ReplaceAll(b, []byte("/usr/local/bin/affinity"), []byte(affinityBin)), 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, c)
	}
	out, err := exec.Command(sa, append([]string{"verify"}, copies...)...).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// k8sObject is the part of a Kubernetes object the test reads.
type k8sObject struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data map[string]string `yaml:"data"`
	Spec struct {
		ServiceName          string     `yaml:"serviceName"`
		ClusterIP            string     `yaml:"clusterIP"`
		VolumeClaimTemplates []struct{} `yaml:"volumeClaimTemplates"`
		Template             struct {
			Spec struct {
				TerminationGracePeriodSeconds int            `yaml:"terminationGracePeriodSeconds"`
				Containers                    []k8sContainer `yaml:"containers"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

type k8sContainer struct {
	Args    []string `yaml:"args"`
	EnvFrom []struct {
		ConfigMapRef struct {
			Name string `yaml:"name"`
		} `yaml:"configMapRef"`
	} `yaml:"envFrom"`
	Env []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom struct {
			FieldRef struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	ReadinessProbe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
		} `yaml:"httpGet"`
	} `yaml:"readinessProbe"`
	Lifecycle struct {
		PreStop struct {
			Sleep struct {
				Seconds int `yaml:"seconds"`
			} `yaml:"sleep"`
		} `yaml:"preStop"`
	} `yaml:"lifecycle"`
	VolumeMounts []struct {
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

var k8sVarRef = regexp.MustCompile(`\$\(([A-Z_]+)\)`)

// TestDeployKubernetes: every flag of each container's args and every
// AFFINITY_ variable it gets (env, ConfigMaps) is a flag of its command;
// the builders are a StatefulSet with a volume for --data, advertise their
// pod's DNS name from the downward API, are ready on /healthz and get a
// grace period longer than preStop + --shutdown-timeout; the collectors are
// a Deployment behind a Service.
func TestDeployKubernetes(t *testing.T) {
	f, err := os.Open(filepath.Join(deployDir, "kubernetes", "affinity.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var objs []k8sObject
	dec := yaml.NewDecoder(f)
	dec.KnownFields(false)
	for {
		var o k8sObject
		if err := dec.Decode(&o); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("affinity.yaml: %v", err)
		}
		objs = append(objs, o)
	}
	byKind := map[string][]k8sObject{}
	configMaps := map[string]map[string]string{}
	for _, o := range objs {
		byKind[o.Kind] = append(byKind[o.Kind], o)
		if o.Kind == "ConfigMap" {
			configMaps[o.Metadata.Name] = o.Data
		}
	}
	if len(byKind["StatefulSet"]) != 1 || len(byKind["Deployment"]) != 1 || len(byKind["Service"]) < 2 {
		t.Fatalf("kinds %v; want a StatefulSet, a Deployment and Services", slices.Sorted(maps.Keys(byKind)))
	}
	services := map[string]k8sObject{}
	for _, s := range byKind["Service"] {
		services[s.Metadata.Name] = s
	}
	for _, o := range append(byKind["StatefulSet"], byKind["Deployment"]...) {
		pod := o.Spec.Template.Spec
		if len(pod.Containers) != 1 {
			t.Fatalf("%s %s: %d containers; want 1", o.Kind, o.Metadata.Name, len(pod.Containers))
		}
		c := pod.Containers[0]
		where := o.Kind + " " + o.Metadata.Name
		if len(c.Args) == 0 {
			t.Fatalf("%s: no args; want the command first", where)
		}
		cmd := c.Args[0]
		env := map[string]string{}
		for _, ef := range c.EnvFrom {
			data, ok := configMaps[ef.ConfigMapRef.Name]
			if !ok {
				t.Errorf("%s: envFrom ConfigMap %q is not in affinity.yaml", where, ef.ConfigMapRef.Name)
			}
			for k, v := range data {
				env[k] = v
			}
		}
		downward := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
			if p := e.ValueFrom.FieldRef.FieldPath; p != "" {
				downward[e.Name] = p
			}
			if !strings.HasPrefix(e.Name, envPrefix) && !slices.ContainsFunc(c.Args, func(a string) bool { return strings.Contains(a, "$("+e.Name+")") }) {
				t.Errorf("%s: variable %s is neither a flag's nor used in the args", where, e.Name)
			}
		}
		values := deployArgs(t, where, cmd, c.Args[1:], env)
		for _, m := range k8sVarRef.FindAllStringSubmatch(strings.Join(c.Args, " "), -1) {
			if _, ok := env[m[1]]; !ok {
				t.Errorf("%s: the args use $(%s), which the container's env does not set", where, m[1])
			}
		}
		if c.ReadinessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s: readiness on %q; want /healthz", where, c.ReadinessProbe.HTTPGet.Path)
		}
		grace := time.Duration(pod.TerminationGracePeriodSeconds) * time.Second
		if need := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds)*time.Second + shutdownTimeout(t, where, values); grace <= need {
			t.Errorf("%s: terminationGracePeriodSeconds %s; want more than preStop + --shutdown-timeout = %s", where, grace, need)
		}
		mounted := false
		for _, m := range c.VolumeMounts {
			mounted = mounted || m.MountPath == values["data"]
		}
		if !mounted {
			t.Errorf("%s: --data %q is not a mounted volume", where, values["data"])
		}
		switch o.Kind {
		case "StatefulSet":
			if cmd != "build" {
				t.Errorf("%s runs %q; want build", where, cmd)
			}
			if len(o.Spec.VolumeClaimTemplates) != 1 {
				t.Errorf("%s: %d volumeClaimTemplates; want one for --data", where, len(o.Spec.VolumeClaimTemplates))
			}
			if s, ok := services[o.Spec.ServiceName]; !ok || s.Spec.ClusterIP != "None" {
				t.Errorf("%s: serviceName %q is not a headless Service of the file", where, o.Spec.ServiceName)
			}
			adv := values["advertise-api"]
			want := "http://$(POD_NAME)." + o.Spec.ServiceName + ".$(POD_NAMESPACE).svc.cluster.local:"
			if !strings.HasPrefix(adv, want) || downward["POD_NAME"] != "metadata.name" || downward["POD_NAMESPACE"] != "metadata.namespace" {
				t.Errorf("%s: --advertise-api %q (downward API %v); want %s… from metadata.name and metadata.namespace", where, adv, downward, want)
			}
			if _, port, _ := strings.Cut(strings.TrimPrefix(adv, want), "/"); port != "" {
				t.Errorf("%s: --advertise-api %q has a path", where, adv)
			}
			if p := strings.TrimPrefix(adv, want); !strings.HasSuffix(values["api-listen"], ":"+p) {
				t.Errorf("%s: --advertise-api port %s; want --api-listen's %q", where, p, values["api-listen"])
			}
			if _, pinned := values["own"]; pinned {
				t.Errorf("%s: --own pins partitions; want a group member", where)
			}
		case "Deployment":
			if cmd != "collect" {
				t.Errorf("%s runs %q; want collect", where, cmd)
			}
			if _, ok := services[o.Metadata.Name]; !ok {
				t.Errorf("%s: no Service %s in front of it", where, o.Metadata.Name)
			}
			if _, err := strconv.Atoi(strings.TrimPrefix(values["listen"], "0.0.0.0:")); err != nil {
				t.Errorf("%s: --listen %q; want 0.0.0.0:PORT, reachable by its Service", where, values["listen"])
			}
		}
	}
}
