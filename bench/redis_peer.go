package bench

import (
	"bufio"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/affinityhq/affinity/profile"
	"github.com/affinityhq/affinity/storage"
	"github.com/affinityhq/affinity/tracker/event"
)

// The Redis peer is what a team would build instead of affinity's builder:
// read the log, and for every event pipeline the forward-decay updates to
// Redis — per visitor and dimension a sorted set, ZINCRBY'd by
// w·2^((t−L)/H) (the landmark form in linear space, exact for decades at
// the default half-lives), and a per-visitor hash of event counts
// (HINCRBY) and identity (HSET email). It does less than the builder — no
// dedup by event id, no catalog join, no top-K, no recency lists, no
// segment evaluation — and Redis runs without persistence (no RDB, no AOF)
// while the builder commits to Badger: every difference favours the peer.

// redisPeerWorkers is the number of pipelined connections of the peer.
const redisPeerWorkers = 4

// redisPipeline is the number of log records per pipeline round trip.
const redisPipeline = 256

// respConn is a minimal pipelining RESP client: commands are appended to a
// buffer and sent at flush, which then reads one reply per command.
type respConn struct {
	c       net.Conn
	r       *bufio.Reader
	buf     []byte
	pending int
}

func dialRedis(addr string) (*respConn, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to redis at %s: %w", addr, err)
	}
	return &respConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}, nil
}

func (rc *respConn) arrayHeader(n int) {
	rc.buf = append(rc.buf, '*')
	rc.buf = strconv.AppendInt(rc.buf, int64(n), 10)
	rc.buf = append(rc.buf, '\r', '\n')
	rc.pending++
}

func (rc *respConn) bulk(s []byte) {
	rc.buf = append(rc.buf, '$')
	rc.buf = strconv.AppendInt(rc.buf, int64(len(s)), 10)
	rc.buf = append(rc.buf, '\r', '\n')
	rc.buf = append(rc.buf, s...)
	rc.buf = append(rc.buf, '\r', '\n')
}

func (rc *respConn) bulkString(s string) {
	rc.buf = append(rc.buf, '$')
	rc.buf = strconv.AppendInt(rc.buf, int64(len(s)), 10)
	rc.buf = append(rc.buf, '\r', '\n')
	rc.buf = append(rc.buf, s...)
	rc.buf = append(rc.buf, '\r', '\n')
}

// command queues a command of plain string arguments.
func (rc *respConn) command(args ...string) {
	rc.arrayHeader(len(args))
	for _, a := range args {
		rc.bulkString(a)
	}
}

// flush sends the queued commands and reads their replies, returning the
// first error reply.
func (rc *respConn) flush() error {
	if rc.pending == 0 {
		return nil
	}
	rc.c.SetDeadline(time.Now().Add(time.Minute))
	if _, err := rc.c.Write(rc.buf); err != nil {
		return fmt.Errorf("cannot write to redis: %w", err)
	}
	rc.buf = rc.buf[:0]
	var first error
	for ; rc.pending > 0; rc.pending-- {
		if err := rc.readReply(); err != nil {
			var re redisError
			if !errors.As(err, &re) {
				return err
			}
			if first == nil {
				first = err
			}
		}
	}
	return first
}

type redisError string

func (e redisError) Error() string { return "redis: " + string(e) }

func (rc *respConn) readReply() error {
	line, err := rc.r.ReadSlice('\n')
	if err != nil {
		return fmt.Errorf("cannot read redis reply: %w", err)
	}
	if len(line) < 3 {
		return fmt.Errorf("short redis reply %q", line)
	}
	body := line[1 : len(line)-2]
	switch line[0] {
	case '+', ':':
		return nil
	case '-':
		return redisError(string(body))
	case '$':
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return fmt.Errorf("bad redis bulk length %q", body)
		}
		if n < 0 {
			return nil
		}
		_, err = rc.r.Discard(n + 2)
		return err
	case '*':
		n, err := strconv.Atoi(string(body))
		if err != nil {
			return fmt.Errorf("bad redis array length %q", body)
		}
		for range max(n, 0) {
			if err := rc.readReply(); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("unexpected redis reply %q", line)
}

func (rc *respConn) Close() error { return rc.c.Close() }

// redisApplier turns decoded batches into the peer's commands.
type redisApplier struct {
	cfg     *profile.Config
	key     []byte // scratch: the visitor's key prefix
	num     []byte // scratch: a formatted increment
	prefix  int
	invHalf [profile.NumDims]float64 // 1 / half-life in ms
}

func newRedisApplier(cfg *profile.Config) *redisApplier {
	a := &redisApplier{cfg: cfg}
	for d := range profile.NumDims {
		if h := cfg.HalfLife(profile.Dim(d)); h > 0 {
			a.invHalf[d] = 1 / float64(h.Milliseconds())
		}
	}
	return a
}

// batch queues the commands of b on rc and returns the number of events.
func (a *redisApplier) batch(rc *respConn, b *event.Batch) int {
	a.key = append(a.key[:0], "p:"...)
	a.key = append(a.key, b.Site...)
	a.key = append(a.key, ':')
	a.key = hex.AppendEncode(a.key, b.Visitor[:])
	a.prefix = len(a.key)
	for i := range b.Events {
		e := &b.Events[i]
		// counts and identity
		a.key = append(a.key[:a.prefix], ":n"...)
		rc.arrayHeader(4)
		rc.bulkString("HINCRBY")
		rc.bulk(a.key)
		rc.bulkString(e.Type.String())
		rc.bulkString("1")
		if e.Email != "" {
			rc.arrayHeader(4)
			rc.bulkString("HSET")
			rc.bulk(a.key)
			rc.bulkString("email")
			rc.bulkString(e.Email)
		}
		switch {
		case e.HasProduct:
			a.product(rc, e.Type, e.TS, &e.Product)
		case e.HasOrder:
			for j := range e.Order.Items {
				a.product(rc, e.Type, e.TS, &e.Order.Items[j])
			}
		}
	}
	return len(b.Events)
}

func (a *redisApplier) product(rc *respConn, t event.Type, ts int64, p *event.Product) {
	a.score(rc, t, ts, profile.DimBrand, p.Brand)
	for path := p.Category; path != ""; {
		a.score(rc, t, ts, profile.DimCategory, path)
		i := strings.LastIndexByte(path, '/')
		if i < 0 {
			break
		}
		path = path[:i]
	}
	a.score(rc, t, ts, profile.DimAge, p.Age)
	if p.HasPrice {
		a.score(rc, t, ts, profile.DimPrice, a.cfg.PriceBand(p.Price))
	}
	a.score(rc, t, ts, profile.DimProduct, p.ID)
}

func (a *redisApplier) score(rc *respConn, t event.Type, ts int64, d profile.Dim, value string) {
	w := a.cfg.Weight(t, d)
	if w == 0 || value == "" {
		return
	}
	incr := w * math.Exp2(float64(ts-profile.Landmark)*a.invHalf[d])
	a.key = append(a.key[:a.prefix], ':')
	a.key = append(a.key, d.String()...)
	a.num = strconv.AppendFloat(a.num[:0], incr, 'g', 17, 64)
	rc.arrayHeader(4)
	rc.bulkString("ZINCRBY")
	rc.bulk(a.key)
	rc.bulk(a.num)
	rc.bulkString(value)
}

// runRedisPeer applies every record of l to Redis at addr, from
// redisPeerWorkers pipelined connections, counting events into applied.
func runRedisPeer(ctx context.Context, l storage.Log, addr string, applied *atomic.Int64) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for w := range redisPeerWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := redisPeerWorker(ctx, l, addr, w, applied); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func redisPeerWorker(ctx context.Context, l storage.Log, addr string, w int, applied *atomic.Int64) error {
	rc, err := dialRedis(addr)
	if err != nil {
		return err
	}
	defer rc.Close()
	a := newRedisApplier(profile.DefaultConfig())
	var (
		b    event.Batch
		recs []storage.Record
	)
	for p := w; p < l.Partitions(); p += redisPeerWorkers {
		first, next, err := l.Offsets(ctx, p)
		if err != nil {
			return err
		}
		if first >= next {
			continue
		}
		r, err := l.OpenReader(p, first)
		if err != nil {
			return err
		}
		for off := first; off < next; {
			recs, err = r.Fetch(ctx, recs[:0], redisPipeline)
			if err != nil {
				r.Close()
				return err
			}
			n := 0
			for i := range recs {
				if recs[i].Offset >= next {
					break
				}
				if err := event.DecodeRecord(&b, recs[i].Value); err != nil {
					r.Close()
					return fmt.Errorf("cannot decode partition %d offset %d: %w", p, recs[i].Offset, err)
				}
				n += a.batch(rc, &b)
				off = recs[i].Offset + 1
			}
			if err := rc.flush(); err != nil {
				r.Close()
				return err
			}
			applied.Add(int64(n))
		}
		r.Close()
	}
	return nil
}

// redisServer is a redis-server process on loopback, without persistence.
type redisServer struct {
	cmd  *exec.Cmd
	addr string
}

func startRedis(bin, dir string) (*redisServer, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return nil, fmt.Errorf("cannot find %s (--redis-server; on Debian: apt-get install redis-server): %w", bin, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", dir, "--protected-mode", "no", "--loglevel", "warning")
	logf, err := os.Create(dir + "/redis-server.log")
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start %s: %w", path, err)
	}
	s := &redisServer{cmd: cmd, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	for deadline := time.Now().Add(15 * time.Second); ; {
		if err := s.do("PING"); err == nil {
			return s, nil
		} else if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("redis-server on %s not ready after 15s: %w", s.addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// do runs one command.
func (s *redisServer) do(args ...string) error {
	rc, err := dialRedis(s.addr)
	if err != nil {
		return err
	}
	defer rc.Close()
	rc.command(args...)
	return rc.flush()
}

// usage reads the server's CPU time and peak RSS from /proc.
func (s *redisServer) usage() Usage {
	return procUsage(s.cmd.Process.Pid)
}

func (s *redisServer) stop() {
	s.cmd.Process.Kill()
	s.cmd.Wait()
}

// procUsage reads a child process's CPU time and peak RSS from /proc (Linux).
func procUsage(pid int) Usage {
	var u Usage
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			// f[0] is the state (field 3); utime and stime are fields 14, 15.
			if len(f) > 13 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				st, _ := strconv.ParseFloat(f[12], 64)
				u.CPUSeconds = (ut + st) / 100 // USER_HZ is 100 on Linux
			}
		}
	}
	u.MaxRSSKB = procStatusKB(strconv.Itoa(pid), "VmHWM:")
	return u
}
