// Package sqsfake is an Amazon SQS queue for tests, spoken to over HTTP
// with the AWS JSON 1.0 protocol that aws-sdk-go-v2's SQS client uses
// (POST /, X-Amz-Target: AmazonSQS.<Operation>, Content-Type:
// application/x-amz-json-1.0). It keeps one queue and its dead-letter
// queue, with the semantics the jobs system relies on: DelaySeconds,
// visibility timeouts, receive counts and a redrive to the dead-letter
// queue after MaxReceiveCount receives. Operations: SendMessage,
// SendMessageBatch, ReceiveMessage, DeleteMessage, DeleteMessageBatch.
package sqsfake

import (
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Sent is one message as it was sent.
type Sent struct {
	Body         string
	DelaySeconds int32
	Batch        bool // by SendMessageBatch
}

type message struct {
	id, body, receipt string
	visibleAt         time.Time
	receives          int
	sentAt            time.Time
}

// Queue is a fake SQS queue behind an httptest server.
type Queue struct {
	srv *httptest.Server
	// URL is the queue's URL, as QueueUrl.
	URL string
	// MaxReceiveCount moves a message to the dead-letter queue when it is
	// received again after that many receives (0: never).
	MaxReceiveCount int

	mu      sync.Mutex
	msgs    []*message
	dead    []*message
	sent    []Sent
	refused map[string]bool // bodies whose sends fail
}

// New starts a queue; it stops when the test ends through Close.
func New() *Queue {
	q := &Queue{refused: map[string]bool{}}
	q.srv = httptest.NewServer(http.HandlerFunc(q.serve))
	q.URL = q.srv.URL + "/000000000000/jobs"
	return q
}

// Endpoint is the base endpoint for the SDK client (BaseEndpoint).
func (q *Queue) Endpoint() string { return q.srv.URL }

// Close stops the server.
func (q *Queue) Close() { q.srv.Close() }

// Refuse makes every later send of body fail (QueueDoesNotExist for
// SendMessage, a failed entry in SendMessageBatch), or succeed again.
func (q *Queue) Refuse(body string, refuse bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.refused[body] = refuse
}

// Sent returns every message accepted so far, in order.
func (q *Queue) Sent() []Sent {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]Sent(nil), q.sent...)
}

// Len is how many messages the queue holds (visible, delayed or in flight).
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.msgs)
}

// DeadLetters returns the bodies moved to the dead-letter queue.
func (q *Queue) DeadLetters() []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make([]string, len(q.dead))
	for i, m := range q.dead {
		out[i] = m.body
	}
	return out
}

// apiError is the JSON 1.0 error shape.
type apiError struct {
	status int
	code   string
	msg    string
}

func (q *Queue) serve(w http.ResponseWriter, r *http.Request) {
	op, ok := strings.CutPrefix(r.Header.Get("X-Amz-Target"), "AmazonSQS.")
	if r.Method != http.MethodPost || !ok || r.Header.Get("Content-Type") != "application/x-amz-json-1.0" {
		writeError(w, apiError{http.StatusBadRequest, "InvalidAction", "not an AWS JSON 1.0 SQS request"})
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ") {
		writeError(w, apiError{http.StatusForbidden, "MissingAuthenticationToken", "request is not signed"})
		return
	}
	var in map[string]json.RawMessage
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		writeError(w, apiError{http.StatusBadRequest, "InvalidParameterValue", err.Error()})
		return
	}
	var url string
	if aerr := decodeField(in, "QueueUrl", &url); aerr != nil {
		writeError(w, *aerr)
		return
	}
	if url != q.URL {
		writeError(w, apiError{http.StatusBadRequest, "QueueDoesNotExist", "The specified queue does not exist."})
		return
	}
	handlers := map[string]func(map[string]json.RawMessage) (any, *apiError){
		"SendMessage":        q.sendMessage,
		"SendMessageBatch":   q.sendMessageBatch,
		"ReceiveMessage":     q.receiveMessage,
		"DeleteMessage":      q.deleteMessage,
		"DeleteMessageBatch": q.deleteMessageBatch,
	}
	h, ok := handlers[op]
	if !ok {
		writeError(w, apiError{http.StatusBadRequest, "UnsupportedOperation", op + " is not supported by the fake"})
		return
	}
	out, aerr := h(in)
	if aerr != nil {
		writeError(w, *aerr)
		return
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_ = json.NewEncoder(w).Encode(out) // a failed reply shows on the client's side
}

func writeError(w http.ResponseWriter, e apiError) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("x-amzn-query-error", "AWS.SimpleQueueService."+e.code+";Sender")
	w.WriteHeader(e.status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + e.code, "message": e.msg}) // as above
}

// decodeField decodes the request field name into v, as SQS does: an absent
// field leaves v as it is, a malformed one is InvalidParameterValue.
func decodeField(in map[string]json.RawMessage, name string, v any) *apiError {
	raw, ok := in[name]
	if !ok {
		return nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return &apiError{http.StatusBadRequest, "InvalidParameterValue", name + ": " + err.Error()}
	}
	return nil
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}

// enqueue adds a message; the caller holds q.mu.
func (q *Queue) enqueue(body string, delay int32, batch bool) (string, *apiError) {
	if delay < 0 || delay > 900 {
		return "", &apiError{http.StatusBadRequest, "InvalidParameterValue", "DelaySeconds must be between 0 and 900"}
	}
	if q.refused[body] {
		return "", &apiError{http.StatusBadRequest, "QueueDoesNotExist", "The specified queue does not exist."}
	}
	now := time.Now()
	m := &message{id: uuid.NewString(), body: body, visibleAt: now.Add(time.Duration(delay) * time.Second), sentAt: now}
	q.msgs = append(q.msgs, m)
	q.sent = append(q.sent, Sent{Body: body, DelaySeconds: delay, Batch: batch})
	return m.id, nil
}

func (q *Queue) sendMessage(in map[string]json.RawMessage) (any, *apiError) {
	var body string
	var delay int32
	if aerr := decodeField(in, "MessageBody", &body); aerr != nil {
		return nil, aerr
	}
	if aerr := decodeField(in, "DelaySeconds", &delay); aerr != nil {
		return nil, aerr
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	id, err := q.enqueue(body, delay, false)
	if err != nil {
		return nil, err
	}
	return map[string]string{"MessageId": id, "MD5OfMessageBody": md5Hex(body)}, nil
}

func (q *Queue) sendMessageBatch(in map[string]json.RawMessage) (any, *apiError) {
	var entries []struct {
		ID           string `json:"Id"`
		MessageBody  string
		DelaySeconds int32
	}
	if aerr := decodeField(in, "Entries", &entries); aerr != nil {
		return nil, aerr
	}
	if len(entries) == 0 || len(entries) > 10 {
		return nil, &apiError{http.StatusBadRequest, "TooManyEntriesInBatchRequest", "1 to 10 entries"}
	}
	type ok struct{ Id, MessageId, MD5OfMessageBody string }
	type failed struct {
		Id, Code, Message string
		SenderFault       bool
	}
	out := struct {
		Successful []ok
		Failed     []failed
	}{Successful: []ok{}, Failed: []failed{}}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range entries {
		id, err := q.enqueue(e.MessageBody, e.DelaySeconds, true)
		if err != nil {
			out.Failed = append(out.Failed, failed{Id: e.ID, Code: err.code, Message: err.msg, SenderFault: true})
			continue
		}
		out.Successful = append(out.Successful, ok{Id: e.ID, MessageId: id, MD5OfMessageBody: md5Hex(e.MessageBody)})
	}
	return out, nil
}

func (q *Queue) receiveMessage(in map[string]json.RawMessage) (any, *apiError) {
	max, visibility, wait := 1, 30, 0
	if aerr := decodeField(in, "MaxNumberOfMessages", &max); aerr != nil {
		return nil, aerr
	}
	if aerr := decodeField(in, "VisibilityTimeout", &visibility); aerr != nil {
		return nil, aerr
	}
	if aerr := decodeField(in, "WaitTimeSeconds", &wait); aerr != nil {
		return nil, aerr
	}
	if max < 1 || max > 10 {
		return nil, &apiError{http.StatusBadRequest, "InvalidParameterValue", "MaxNumberOfMessages must be 1 to 10"}
	}
	deadline := time.Now().Add(time.Duration(min(wait, 20)) * time.Second)
	for {
		if got := q.take(max, time.Duration(visibility)*time.Second); len(got) > 0 || !time.Now().Before(deadline) {
			return map[string]any{"Messages": got}, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// take receives up to max visible messages, redriving to the dead-letter
// queue those received too often.
func (q *Queue) take(max int, visibility time.Duration) []map[string]any {
	q.mu.Lock()
	defer q.mu.Unlock()
	now := time.Now()
	got := []map[string]any{}
	keep := q.msgs[:0]
	for _, m := range q.msgs {
		if len(got) == max || now.Before(m.visibleAt) {
			keep = append(keep, m)
			continue
		}
		if q.MaxReceiveCount > 0 && m.receives >= q.MaxReceiveCount {
			q.dead = append(q.dead, m)
			continue
		}
		m.receives++
		m.receipt = uuid.NewString()
		m.visibleAt = now.Add(visibility)
		keep = append(keep, m)
		got = append(got, map[string]any{
			"MessageId": m.id, "ReceiptHandle": m.receipt, "Body": m.body, "MD5OfBody": md5Hex(m.body),
			"Attributes": map[string]string{
				"ApproximateReceiveCount": strconv.Itoa(m.receives),
				"SentTimestamp":           strconv.FormatInt(m.sentAt.UnixMilli(), 10),
			},
		})
	}
	q.msgs = keep
	return got
}

// remove deletes the message with that receipt handle; the caller holds q.mu.
func (q *Queue) remove(receipt string) *apiError {
	for i, m := range q.msgs {
		if m.receipt == receipt && receipt != "" {
			q.msgs = append(q.msgs[:i], q.msgs[i+1:]...)
			return nil
		}
	}
	return &apiError{http.StatusBadRequest, "ReceiptHandleIsInvalid", fmt.Sprintf("receipt handle %q is invalid", receipt)}
}

func (q *Queue) deleteMessage(in map[string]json.RawMessage) (any, *apiError) {
	var receipt string
	if aerr := decodeField(in, "ReceiptHandle", &receipt); aerr != nil {
		return nil, aerr
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.remove(receipt); err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

func (q *Queue) deleteMessageBatch(in map[string]json.RawMessage) (any, *apiError) {
	var entries []struct {
		ID            string `json:"Id"`
		ReceiptHandle string
	}
	if aerr := decodeField(in, "Entries", &entries); aerr != nil {
		return nil, aerr
	}
	type ok struct{ Id string }
	type failed struct {
		Id, Code, Message string
		SenderFault       bool
	}
	out := struct {
		Successful []ok
		Failed     []failed
	}{Successful: []ok{}, Failed: []failed{}}
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, e := range entries {
		if err := q.remove(e.ReceiptHandle); err != nil {
			out.Failed = append(out.Failed, failed{Id: e.ID, Code: err.code, Message: err.msg, SenderFault: true})
			continue
		}
		out.Successful = append(out.Successful, ok{Id: e.ID})
	}
	return out, nil
}
