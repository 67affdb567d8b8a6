package faults

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/internal/pgserver"
)

// BenchmarkReadReplicaPrimaryCPU measures the PostgreSQL CPU time per
// status poll of an unfinished job, on the primary and on the standby, with
// jobsd serve reading from the primary alone and then from the standby:
//
//	go test -run '^$' -bench ReadReplicaPrimaryCPU -benchtime 20000x ./faults/
//
// CPU is the user and system time of the cluster's processes (the
// postmaster, its children, and children that exited) from /proc: Linux
// only. 16 clients poll 1,000 jobs of 100 users; no worker runs.
func BenchmarkReadReplicaPrimaryCPU(b *testing.B) {
	for _, tc := range []struct {
		name string
		env  []string
	}{
		{"primary only", []string{"JOBS_READ_DATABASE_URL="}},
		{"with a replica", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			r := newReplicaRig(b, pgserver.StandbyOptions{}, tc.env...)
			jobs := make([]struct {
				id   uuid.UUID
				user string
			}, 1000)
			for i := range jobs {
				user := fmt.Sprintf("user%d", i%100)
				c := newClient("http://"+r.api.Addr, r.iss.token(keyA, user, true))
				res := c.create(fmt.Sprintf("CPU %d", i))
				j, ok := res.job()
				if !ok {
					b.Fatalf("create: %d %s", res.status, res.body)
				}
				jobs[i].id, jobs[i].user = j.ID, user
			}
			if err := r.standby.WaitReplayed(b.Context(), r.dbURL); err != nil {
				b.Fatal(err)
			}
			clients := map[string]*client{}
			for i := range 100 {
				user := fmt.Sprintf("user%d", i)
				clients[user] = newClient("http://"+r.api.Addr, r.iss.token(keyA, user, false))
			}
			primary, standby := clusterCPU(b, r.primary.URL()), clusterCPU(b, r.standby.URL())
			p0, s0 := primary(), standby()
			var next atomic.Int64
			var failed atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			for range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						j := jobs[i%int64(len(jobs))]
						if res := clients[j.user].do(http.MethodGet, "/api/jobs/"+j.id.String(), nil); res.status != http.StatusOK {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			p1, s1 := primary(), standby()
			if failed.Load() > 0 {
				b.Fatalf("%d polls failed", failed.Load())
			}
			b.ReportMetric(float64((p1-p0).Microseconds())/float64(b.N), "primary-cpu-µs/poll")
			b.ReportMetric(float64((s1-s0).Microseconds())/float64(b.N), "replica-cpu-µs/poll")
			reads := r.reads(b)
			b.Logf("primary status reads %v, replica %v, fallbacks %v", reads.primary, reads.replica, reads.fallbacks)
		})
	}
}

// clusterCPU returns a function that reads the CPU time so far of the
// PostgreSQL cluster listening on the port of u: its postmaster (found by
// its -p argument), the postmaster's children, and the children that exited.
func clusterCPU(b *testing.B, u string) func() time.Duration {
	b.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		b.Fatal(err)
	}
	postmaster := findPostmaster(b, pu.Port())
	return func() time.Duration {
		entries, _ := os.ReadDir("/proc")
		var ticks int64
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			st, ok := procStat(pid)
			if !ok {
				continue
			}
			switch {
			case pid == postmaster:
				ticks += st.utime + st.stime + st.cutime + st.cstime
			case st.ppid == int64(postmaster):
				ticks += st.utime + st.stime
			}
		}
		return time.Duration(ticks) * time.Second / 100 // USER_HZ
	}
}

// findPostmaster is the pid of the postgres process started with -p port.
func findPostmaster(b *testing.B, port string) int {
	b.Helper()
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(cmd), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-p" && args[i+1] == port && strings.HasSuffix(args[0], "postgres") {
				return pid
			}
		}
	}
	b.Fatalf("no postgres process listening on port %s (CPU is read from /proc: Linux only)", port)
	return 0
}

type stat struct{ ppid, utime, stime, cutime, cstime int64 }

// procStat reads the fields of /proc/pid/stat it needs.
func procStat(pid int) (stat, bool) {
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return stat{}, false
	}
	// The command name is in parentheses and may hold spaces: the fields
	// start after the last ')'.
	i := strings.LastIndexByte(string(raw), ')')
	if i < 0 {
		return stat{}, false
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 15 {
		return stat{}, false
	}
	n := func(k int) int64 { v, _ := strconv.ParseInt(f[k], 10, 64); return v }
	// After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14).
	return stat{ppid: n(1), utime: n(11), stime: n(12), cutime: n(13), cstime: n(14)}, true
}
