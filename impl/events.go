package impl

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/google/uuid"

	"github.com/jobsd/jobsd/gen/server"
)

// Event stream timing. A stream ends after MaxStreamDuration even if the job
// has not finished; the client reconnects with Last-Event-ID.
const (
	HeartbeatInterval = 15 * time.Second
	MaxStreamDuration = time.Hour
)

// GetJobEvents streams the job's versions as Server-Sent Events. The owner
// check and the first read happen before the stream starts, so the 404 is
// the status endpoint's.
func (s *Server) GetJobEvents(ctx context.Context, req server.GetJobEventsRequestObject) (server.GetJobEventsResponseObject, error) {
	user := principalFrom(ctx).Subject
	read := func(ctx context.Context, atLeast int64) (polled, error) { return s.lookup(ctx, user, req.Id, atLeast) }
	stream, err := s.openStream(ctx, req.Id, req.Params.LastEventID, read)
	if err != nil {
		return nil, err
	}
	if stream == nil {
		return server.GetJobEvents204Response{}, nil
	}
	stream.user = user // the owner's streams count against the waiter cap
	return stream, nil
}

// readAtLeast reads the job at version atLeast or newer (or from the
// primary, which has the newest: see store.GetFresh); an operator's read
// is the primary's and ignores it.
type readAtLeast func(ctx context.Context, atLeast int64) (polled, error)

// openStream reads the job once and returns its stream, or nil when the
// client reconnected (lastEventID) after the last event of a finished job:
// nothing more will come, and a 204 tells it to stop reconnecting.
func (s *Server) openStream(ctx context.Context, id uuid.UUID, lastEventID *string, read readAtLeast) (*eventStream, error) {
	last := ""
	if lastEventID != nil {
		last = *lastEventID
	}
	first, err := read(ctx, newestSeen(last))
	if err != nil {
		return nil, err
	}
	if first.terminal() && last == first.etag {
		return nil, nil
	}
	return &eventStream{s: s, ctx: ctx, read: read, id: id, first: first, lastID: last}, nil
}

// eventStream writes the stream itself; it is the strict server's response
// object (of the owner's and the admin's stream), so it gets the
// ResponseWriter and can flush each event.
type eventStream struct {
	s      *Server
	ctx    context.Context
	read   readAtLeast
	id     uuid.UUID
	first  polled
	lastID string
	// user, when set, is whose waiter slot the stream takes while it runs.
	user string
}

// VisitAdminGetJobEventsResponse runs the admin's stream: the same stream.
func (e *eventStream) VisitAdminGetJobEventsResponse(w http.ResponseWriter) error {
	return e.VisitGetJobEventsResponse(w)
}

// VisitGetJobEventsResponse runs the stream until the job is finished, the
// client goes away, or MaxStreamDuration passes.
func (e *eventStream) VisitGetJobEventsResponse(w http.ResponseWriter) error {
	if e.user != "" {
		// The slot is taken here, where the stream runs, so that it is
		// released however the stream ends; a refused stream holds nothing.
		slot, ok := e.s.waiters.acquire(e.ctx, e.user, e.s.replicas)
		if !ok {
			return errTooManyWaiters // nothing written yet: the error handler answers
		}
		defer e.s.waiters.release(e.ctx, slot, e.s.replicas)
	}
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", cacheControl)
	h.Set("X-Accel-Buffering", "no") // let reverse proxies pass events at once
	w.WriteHeader(http.StatusOK)

	changed, unsubscribe := e.s.subscribe(e.id)
	defer unsubscribe()
	heartbeat := time.NewTicker(HeartbeatInterval)
	defer heartbeat.Stop()
	end := time.NewTimer(MaxStreamDuration)
	defer end.Stop()

	if err := e.write(w, rc, []byte("retry: 3000\n\n")); err != nil {
		return nil // the client left
	}
	cur := e.first
	for {
		if cur.etag != e.lastID {
			if err := e.write(w, rc, sseEvent(cur)); err != nil {
				return nil
			}
			e.lastID = cur.etag
		}
		if cur.terminal() {
			return nil
		}
		fresh := false
		for !fresh {
			select {
			case <-changed:
				fresh = true
			case <-heartbeat.C:
				if err := e.write(w, rc, []byte(": heartbeat\n\n")); err != nil {
					return nil
				}
			case <-end.C:
				return nil
			case <-e.s.draining: // shutting down: the client reconnects elsewhere
				return nil
			case <-e.ctx.Done():
				return nil
			}
		}
		// Woken by a change: a version newer than the one sent.
		next, err := e.read(e.ctx, cur.version+1)
		if err != nil {
			// Headers are sent; end the stream and let the client reconnect.
			e.s.log.Warn("event stream: read job", "job_id", e.id, "err", err)
			return nil
		}
		cur = next
	}
}

// write sends one chunk and flushes it, with a deadline so that a client
// that stops reading cannot hold the stream forever.
func (e *eventStream) write(w http.ResponseWriter, rc *http.ResponseController, b []byte) error {
	_ = rc.SetWriteDeadline(time.Now().Add(30 * time.Second))
	if _, err := w.Write(b); err != nil {
		return err
	}
	return rc.Flush()
}

// sseEvent is one "job" event: id is the ETag, data the Job on one line
// (a finished job's cached encoding when there is one).
func sseEvent(p polled) []byte {
	data := bytes.TrimSuffix(p.body, []byte("\n"))
	if data == nil {
		data, _ = json.Marshal(p.job)
	}
	var b bytes.Buffer
	b.WriteString("id: ")
	b.WriteString(p.etag)
	b.WriteString("\nevent: job\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
	return b.Bytes()
}
