package storage

import (
	"os"
	"runtime"
)

// SpareProcs gives the Go runtime twice the Ps it chose (one per CPU
// the process may use) in a process that runs an EmbeddedLog, and
// returns the GOMAXPROCS in force. A GOMAXPROCS environment variable is
// the operator's choice and is left as it is, and so is a CPU limit
// below the machine's CPUs. Call it once, from main,
// before the log opens: it sets a process-wide runtime setting.
//
// Why: the log acknowledges an append only after Badger has synced it,
// and Badger syncs with msync, twice per group commit (the write-ahead
// file and the value log file, which the log's inline records never
// fill but which Badger syncs all the same): two device flushes of
// 10–80 ms on a virtual disk, back to back while ingest runs. A goroutine
// blocked in a system call keeps its P until the runtime's monitor
// thread next looks (it sleeps up to 10 ms when idle, and longer when the
// host's CPUs are busy) and hands the P to other work. In a runtime trace
// of `serve` under ingest on 2 CPUs the log's writer held a P this way
// for 45% of the time, so lookups, ingest requests and a memtable flush
// shared the one P left. The spare Ps run them while the writer, a
// reader faulting in a table's page or the state's once-a-second sync
// waits for the disk, and the operating system then shares the CPUs
// among the threads, a just-woken lookup's first. Measured in the query
// scenario (lookup p99 under ingest at half load, 2 CPUs, the machine
// otherwise idle): 72–221 ms with 2 Ps (median 101), 41 with 3, 19–72
// with 4 (median 58), 14–43 with 8 (README "Performance"); one P more
// alone could not be told from the noise. Twice the CPUs keeps the threads the OS shares few.
//
// Setting GOMAXPROCS stops the runtime from following later changes of
// the process's CPU limit (Go 1.25's cgroup tracking); a node is
// restarted to take a new limit.
func SpareProcs() int {
	if os.Getenv("GOMAXPROCS") != "" || runtime.GOMAXPROCS(0) < runtime.NumCPU() {
		// The operator's choice, or a CPU limit below the machine's
		// (a container's quota): threads beyond a quota are throttled
		// for the rest of its period, a worse wait than a P's.
		return runtime.GOMAXPROCS(0)
	}
	n := 2 * runtime.GOMAXPROCS(0)
	runtime.GOMAXPROCS(n)
	return n
}
