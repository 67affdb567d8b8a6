package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// A poller sends status polls over one connection of its own (net/http's
// pool for the net/http client) and reports the HTTP status of each.
type poller interface {
	get(path, token, ifNoneMatch string) (status int, err error)
	close()
}

// loadClient makes one poller per load-generator worker; close releases
// what the pollers left open.
type loadClient interface {
	newPoller() poller
	close()
}

// netHTTPClient polls through net/http, as the generated Go client does.
type netHTTPClient struct {
	base   string
	client *http.Client
}

func newNetHTTPClient(base string, conc int) loadClient {
	return &netHTTPClient{base: base, client: &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conc * 2,
			MaxIdleConnsPerHost: conc * 2,
			MaxConnsPerHost:     conc,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}}
}

func (c *netHTTPClient) newPoller() poller { return c }
func (c *netHTTPClient) close()            { c.client.CloseIdleConnections() }

func (c *netHTTPClient) get(path, token, ifNoneMatch string) (int, error) {
	req, err := http.NewRequest(http.MethodGet, c.base+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// leanClient is the load generator's own HTTP/1.1 client, for the same
// reason pgbench is written in C: the generator shares the CPUs with what it
// measures, and net/http's client (two goroutines per connection, a request
// and a response object per poll) costs about as much CPU per poll as the
// server's whole read path. It keeps one connection per worker alive, writes
// each request in one write and reads the answer with a reused buffer; it
// speaks just enough HTTP/1.1 for GET (Content-Length and chunked bodies,
// Connection: close).
type leanClient struct{ addr string }

// newLeanClient polls the server at base ("http://host:port").
func newLeanClient(base string, _ int) loadClient {
	return leanClient{addr: strings.TrimPrefix(base, "http://")}
}

func (c leanClient) close()            {} // each leanConn closes its own connection
func (c leanClient) newPoller() poller { return &leanConn{addr: c.addr} }

type leanConn struct {
	addr string
	conn net.Conn
	br   *bufio.Reader
	req  []byte
}

func (c *leanConn) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *leanConn) get(path, token, ifNoneMatch string) (int, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, 10*time.Second)
		if err != nil {
			return 0, err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	c.req = append(c.req[:0], "GET "...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, c.addr...)
	c.req = append(c.req, "\r\nUser-Agent: jobsd-bench\r\nAuthorization: Bearer "...)
	c.req = append(c.req, token...)
	if ifNoneMatch != "" {
		c.req = append(c.req, "\r\nIf-None-Match: "...)
		c.req = append(c.req, ifNoneMatch...)
	}
	c.req = append(c.req, "\r\n\r\n"...)
	_ = c.conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return 0, err
	}
	status, keep, err := c.readResponse()
	if err != nil || !keep {
		c.close()
	}
	return status, err
}

var errMalformed = errors.New("malformed HTTP response")

// readResponse reads one response and discards its body.
func (c *leanConn) readResponse() (status int, keepAlive bool, err error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	length, chunked, keepAlive := -1, false, true
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return status, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return status, false, fmt.Errorf("%w: header %q", errMalformed, line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case bytes.EqualFold(name, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(value)); err != nil || length < 0 {
				return status, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(value, []byte("chunked"))
		case bytes.EqualFold(name, []byte("Connection")):
			keepAlive = !bytes.EqualFold(value, []byte("close"))
		}
	}
	switch {
	case chunked:
		err = c.discardChunks()
	case length >= 0:
		_, err = c.br.Discard(length)
	case status != http.StatusNotModified && status != http.StatusNoContent:
		return status, false, fmt.Errorf("%w: no length and no chunks", errMalformed)
	}
	return status, keepAlive && err == nil, err
}

func (c *leanConn) discardChunks() error {
	for {
		line, err := c.br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size, err := strconv.ParseInt(string(bytes.TrimRight(line, "\r\n")), 16, 64)
		if err != nil || size < 0 {
			return fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if _, err := c.br.Discard(int(size) + 2); err != nil { // the chunk and its CRLF
			return err
		}
		if size == 0 {
			return nil // no trailers from jobsd
		}
	}
}
