package impl

import (
	"container/list"
	"context"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/jobsd/jobsd/gen"
	"github.com/jobsd/jobsd/gen/server"
	"github.com/jobsd/jobsd/job"
	"github.com/jobsd/jobsd/store"
)

// cacheControl tells browsers and proxies to keep the job private and to
// revalidate (cheaply, with the ETag) before reusing it.
const cacheControl = "private, no-cache"

// polled is one version of a job as the API serves it.
type polled struct {
	job  gen.Job
	etag string
	// body is the job's JSON as the 200 answer carries it, kept for finished
	// jobs in the cache so that serving them encodes nothing.
	body []byte
	// version is the row's version, which the ETag names.
	version int64
}

func (p polled) terminal() bool { return job.Status(p.job.Status).Terminal() }

// etagOf is the job's strong validator: its row version, which changes on
// every change (timestamps could collide within a millisecond).
func etagOf(j *job.Job) string { return `"v` + strconv.FormatInt(j.Version, 10) + `"` }

// newestSeen is the newest job version that an If-None-Match or a
// Last-Event-ID names (entity tags etagOf made), 0 when it names none: the
// client has seen that version, so no read may answer with an older one.
func newestSeen(header string) int64 {
	var newest int64
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if len(t) < 4 || t[0] != '"' || t[1] != 'v' || t[len(t)-1] != '"' {
			continue
		}
		if v, err := strconv.ParseInt(t[2:len(t)-1], 10, 64); err == nil && v > newest {
			newest = v
		}
	}
	return newest
}

// lookup returns the user's job: from the terminal cache when it is
// finished (finished jobs never change), else from the database at version
// atLeast or newer (a read replica's copy when it has that, else the
// primary's: see store.GetFresh).
func (s *Server) lookup(ctx context.Context, user string, id uuid.UUID, atLeast int64) (polled, error) {
	if p, ok := s.terminal.get(user, id); ok && s.fresh(p) {
		return p, nil
	}
	// Waiters woken by one change all read the job at once; the store
	// answers them with few statements (its reads are batched).
	return s.read(ctx, user, id, atLeast)
}

// expired reports whether a cached job is past its retention (the worker
// deletes such jobs): the cache never serves one; the database decides.
func (s *Server) expired(p polled, now time.Time) bool {
	return s.retention > 0 && now.Sub(p.job.CreatedAt.Time) >= s.retention
}

// fresh reports whether the cache may serve p now: it reads the clock only
// when there is a retention.
func (s *Server) fresh(p polled) bool {
	return s.retention <= 0 || !s.expired(p, time.Now())
}

// changedAt is when the hub last heard the job changed (zero without a
// hub, or when not lately): a read replica must be fresh as of then.
func (s *Server) changedAt(id uuid.UUID) time.Time {
	if s.hub == nil {
		return time.Time{}
	}
	return s.hub.ChangedAt(id)
}

// read fetches the job from the database and caches it once it is finished.
func (s *Server) read(ctx context.Context, user string, id uuid.UUID, atLeast int64) (polled, error) {
	j, err := s.store.GetFresh(ctx, store.OwnedBy(user), id, store.Fresh{Version: atLeast, ChangedAt: s.changedAt(id)})
	if err != nil {
		return polled{}, err
	}
	p := polledOf(j)
	if p.terminal() && s.terminal != nil {
		if p.body, err = encodeJob(p.job); err != nil {
			return polled{}, err
		}
		s.terminal.put(user, id, p, len(p.body))
	}
	return p, nil
}

// polledOf is the job as the API serves it, not yet encoded.
func polledOf(j *job.Job) polled {
	return polled{job: toAPIJob(j), etag: etagOf(j), version: j.Version}
}

// GetJob answers the status poll: one owner-scoped lookup (a job of another
// user is the same 404 as no job at all), then the ETag is compared, so a
// 304 tells nothing to anyone but the owner. With waitSeconds it long-polls.
func (s *Server) GetJob(ctx context.Context, req server.GetJobRequestObject) (server.GetJobResponseObject, error) {
	user := principalFrom(ctx).Subject
	inm := ""
	if req.Params.IfNoneMatch != nil {
		inm = *req.Params.IfNoneMatch
	}
	p, err := s.lookup(ctx, user, req.Id, newestSeen(inm))
	if err != nil {
		return nil, err
	}
	if wait := req.Params.WaitSeconds; wait != nil && *wait > 0 && !p.terminal() && etagMatches(inm, p.etag) {
		var admitted bool
		if p, admitted, err = s.waitAsWaiter(ctx, user, req.Id, p, time.Duration(*wait)*time.Second); err != nil {
			return nil, err
		}
		if !admitted {
			return nil, errTooManyWaiters
		}
	}
	return answer(p, inm)
}

// answer is the poll's reply with the job as p has it: a 304 when inm (the
// If-None-Match header) matches its ETag, else the 200 with the job.
func answer(p polled, inm string) (server.GetJobResponseObject, error) {
	if etagMatches(inm, p.etag) {
		cc, etag := cacheControl, p.etag
		var retry *int
		if !p.terminal() {
			r := RetryAfterSeconds
			retry = &r
		}
		return server.GetJob304Response{Headers: server.GetJob304ResponseHeaders{CacheControl: &cc, ETag: &etag, RetryAfter: retry}}, nil
	}
	body := p.body
	if body == nil {
		var err error
		if body, err = encodeJob(p.job); err != nil {
			return nil, err
		}
	}
	return encodedJob{body: body, etag: p.etag, retry: !p.terminal()}, nil
}

// pollRoutes registers the generated routes, with one shortcut: a plain
// status poll (no query string, so no long poll, and at most one
// If-None-Match) is answered by plainPoll, as GetJob would answer it.
type pollRoutes struct {
	*echo.Echo
	s *Server
}

// GET registers a GET route; the status poll's handler gets the shortcut.
func (r pollRoutes) GET(path string, h echo.HandlerFunc, m ...echo.MiddlewareFunc) *echo.Route {
	if path == "/api/jobs/:id" {
		h = r.s.plainPoll(h)
	}
	return r.Echo.GET(path, h, m...)
}

// plainPoll answers a plain poll as GetJob does (a finished job from the
// cache, any other by one read of the user's job) without the generated
// binding (reflection over the parameters) and the strict handler's
// dispatch: about a tenth of a cached poll's CPU, and allocations on every
// poll. Every other request goes to generic, the generated handler. The
// middlewares have run either way (authentication, limits, checkJobID,
// validation), and an error goes to the error handler as the generated
// handler's would.
func (s *Server) plainPoll(generic echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		p := principalFrom(req.Context())
		inm := req.Header["If-None-Match"]
		if req.URL.RawQuery != "" || req.URL.RawPath != "" || p == nil || len(inm) > 1 {
			return generic(c)
		}
		id, err := uuid.Parse(c.Param("id"))
		if err != nil {
			return generic(c)
		}
		var header string
		if len(inm) == 1 {
			header = inm[0]
		}
		polled, err := s.lookup(req.Context(), p.Subject, id, newestSeen(header))
		if err != nil {
			return err
		}
		resp, err := answer(polled, header)
		if err != nil {
			return err
		}
		return resp.VisitGetJobResponse(c.Response())
	}
}

// encodedJob is the 200 answer with the job already encoded (by encodeJob, or
// kept in the cache for a finished job): the same headers and bytes as
// server.GetJob200JSONResponse, where only an unfinished job has a Retry-After.
type encodedJob struct {
	body  []byte
	etag  string
	retry bool
}

// retryAfter is the Retry-After value of an unfinished job.
var retryAfter = strconv.Itoa(RetryAfterSeconds)

// VisitGetJobResponse writes the answer.
func (r encodedJob) VisitGetJobResponse(w http.ResponseWriter) error {
	h := w.Header() // canonical keys: what Set would store, without checking each
	h["Content-Type"] = []string{"application/json"}
	h["Cache-Control"] = []string{cacheControl}
	h["Etag"] = []string{r.etag}
	if r.retry {
		h["Retry-After"] = []string{retryAfter}
	}
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(r.body)
	return err
}

// waitAsWaiter runs waitForChange in one of the user's waiter slots, or
// says there is none free: only a poll that is going to wait takes a slot,
// and one refused holds nothing.
func (s *Server) waitAsWaiter(ctx context.Context, user string, id uuid.UUID, p polled, d time.Duration) (polled, bool, error) {
	slot, ok := s.waiters.acquire(ctx, user, s.replicas)
	if !ok {
		return p, false, nil
	}
	defer s.waiters.release(ctx, slot, s.replicas)
	p, err := s.waitForChange(ctx, user, id, p, d)
	return p, true, err
}

// waitForChange blocks until the job's ETag differs from p's, the job is
// finished, or d passes, and returns the job as it then is. It holds no
// database connection while it waits: the hub wakes it.
func (s *Server) waitForChange(ctx context.Context, user string, id uuid.UUID, p polled, d time.Duration) (polled, error) {
	changed, unsubscribe := s.subscribe(id)
	defer unsubscribe()
	timer := time.NewTimer(d)
	defer timer.Stop()
	// Read once more after subscribing: a change between the first read and
	// the subscription would otherwise be missed. After a wake-up the job
	// changed (or may have: a reconnected listener wakes everyone), so the
	// read asks for a newer version than the one held: a read replica that
	// has not replayed the change yet sends the read to the primary.
	atLeast := p.version
	for {
		cur, err := s.lookup(ctx, user, id, atLeast)
		if err != nil {
			return polled{}, err
		}
		if cur.etag != p.etag || cur.terminal() {
			return cur, nil
		}
		select {
		case <-changed:
			atLeast = cur.version + 1
		case <-timer.C:
			return cur, nil
		case <-s.draining: // shutting down: answer now; the client polls again
			return cur, nil
		case <-ctx.Done():
			return polled{}, ctx.Err()
		}
	}
}

// subscribe returns the job's change signal; without a hub, a slow tick.
func (s *Server) subscribe(id uuid.UUID) (<-chan struct{}, func()) {
	if s.hub != nil {
		return s.hub.Subscribe(id)
	}
	t := time.NewTicker(time.Second)
	ch := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-t.C:
				select {
				case ch <- struct{}{}:
				default:
				}
			case <-done:
				return
			}
		}
	}()
	return ch, func() { t.Stop(); close(done) }
}

// etagMatches implements If-None-Match (RFC 9110 §13.1.2): "*", or a list of
// entity tags compared weakly.
func etagMatches(header, etag string) bool {
	header = strings.TrimSpace(header)
	if header == "" {
		return false
	}
	if header == "*" {
		return true
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag {
			return true
		}
	}
	return false
}

// terminalCache keeps finished jobs, which never change, per user and id, so
// that polls of finished jobs need no database. Bounded in entries and bytes;
// the least recently used go first.
type terminalCache struct {
	mu       sync.Mutex
	maxItems int
	maxBytes int
	bytes    int
	order    *list.List // front: most recently used
	items    map[cacheKey]*list.Element
}

type cacheKey struct {
	user string
	id   uuid.UUID
}

type cacheEntry struct {
	key  cacheKey
	p    polled
	size int
}

// maxCachedJobBytes keeps very large results (parsed documents) out of the
// cache; they are read from the database each time.
const maxCachedJobBytes = 64 << 10

func newTerminalCache(maxItems, maxBytes int) *terminalCache {
	return &terminalCache{maxItems: maxItems, maxBytes: maxBytes, order: list.New(), items: map[cacheKey]*list.Element{}}
}

func (c *terminalCache) get(user string, id uuid.UUID) (polled, bool) {
	if c == nil {
		return polled{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.items[cacheKey{user, id}]
	if !ok {
		return polled{}, false
	}
	c.order.MoveToFront(el)
	return el.Value.(*cacheEntry).p, true
}

func (c *terminalCache) put(user string, id uuid.UUID, p polled, size int) {
	if c == nil || c.maxItems <= 0 || size > maxCachedJobBytes {
		return
	}
	size += len(user) + 512 // the entry's own overhead, roughly
	c.mu.Lock()
	defer c.mu.Unlock()
	k := cacheKey{user, id}
	if _, ok := c.items[k]; ok {
		return
	}
	c.items[k] = c.order.PushFront(&cacheEntry{key: k, p: p, size: size})
	c.bytes += size
	for c.order.Len() > c.maxItems || c.bytes > c.maxBytes {
		last := c.order.Back()
		e := last.Value.(*cacheEntry)
		c.order.Remove(last)
		delete(c.items, e.key)
		c.bytes -= e.size
	}
}
