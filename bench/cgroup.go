package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// memoryCgroup is a memory cgroup a role process runs in: the kernel
// holds everything charged to it — anonymous memory and the page cache
// it faults in, the state's mmapped tables included — within a limit, as
// a container's memory limit does. Above the limit the kernel reclaims
// the file-backed pages and, if that is not enough, kills the process
// (an OOM kill, which the bench reports as such).
type memoryCgroup struct {
	dir string
	v2  bool
}

// Where the memory controller is mounted: cgroup v2's unified hierarchy
// when memory is among its controllers, else cgroup v1's memory
// hierarchy.
const (
	cgroupV2Root = "/sys/fs/cgroup"
	cgroupV1Root = "/sys/fs/cgroup/memory"
)

// newMemoryCgroup creates a memory cgroup named name limited to limit
// bytes. It fails, saying why, where the machine has no memory
// controller the process may write (not root, a read-only mount).
func newMemoryCgroup(name string, limit int64) (*memoryCgroup, error) {
	var c memoryCgroup
	if ctl, err := os.ReadFile(filepath.Join(cgroupV2Root, "cgroup.controllers")); err == nil && strings.Contains(" "+string(ctl)+" ", " memory ") {
		c = memoryCgroup{dir: filepath.Join(cgroupV2Root, name), v2: true}
	} else if _, err := os.Stat(filepath.Join(cgroupV1Root, "memory.limit_in_bytes")); err == nil {
		c = memoryCgroup{dir: filepath.Join(cgroupV1Root, name)}
	} else {
		return nil, errors.New("no cgroup memory controller mounted at " + cgroupV2Root + " (v2) or " + cgroupV1Root + " (v1)")
	}
	if err := os.Mkdir(c.dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("cannot create the memory cgroup %s: %w", c.dir, err)
	}
	file, val := "memory.limit_in_bytes", strconv.FormatInt(limit, 10)
	if c.v2 {
		file = "memory.max"
	}
	if err := c.write(file, val); err != nil {
		c.remove()
		return nil, err
	}
	return &c, nil
}

func (c *memoryCgroup) write(file, val string) error {
	if err := os.WriteFile(filepath.Join(c.dir, file), []byte(val), 0o644); err != nil {
		return fmt.Errorf("cannot write %q to %s: %w", val, filepath.Join(c.dir, file), err)
	}
	return nil
}

// add moves the process pid into the cgroup.
func (c *memoryCgroup) add(pid int) error { return c.write("cgroup.procs", strconv.Itoa(pid)) }

// cgroupUsage is what the kernel counted for a cgroup.
type cgroupUsage struct {
	// PeakBytes is the highest charge (anonymous and page cache); 0 where
	// the kernel does not keep it (cgroup v2 before Linux 5.19).
	PeakBytes int64
	// OOMKills is how many of its processes the kernel killed for memory.
	OOMKills int64
}

func (c *memoryCgroup) usage() cgroupUsage {
	var u cgroupUsage
	peak, events, key := "memory.max_usage_in_bytes", "memory.oom_control", "oom_kill "
	if c.v2 {
		peak, events = "memory.peak", "memory.events"
	}
	if b, err := os.ReadFile(filepath.Join(c.dir, peak)); err == nil {
		u.PeakBytes, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	if f, err := os.Open(filepath.Join(c.dir, events)); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if v, ok := strings.CutPrefix(s.Text(), key); ok {
				u.OOMKills, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			}
		}
		f.Close()
	}
	return u
}

// remove deletes the cgroup; its processes must have exited.
func (c *memoryCgroup) remove() { os.Remove(c.dir) }
