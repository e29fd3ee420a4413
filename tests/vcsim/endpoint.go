package main

// An endpoint is one HTTPS SOAP port (the vCenter's or one host's) that the
// control surface can take away and bring back on the SAME port:
//   - up: serving;
//   - down: the listener and every open connection are closed, so clients
//     get "connection refused" (a dead vCenter or host);
//   - frozen: connections are accepted (and open ones kept) but nothing read
//     from them is processed, not even the TLS handshake (a hung VM). Leaving
//     frozen closes every connection that was held.

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

const (
	stateUp     = "up"
	stateDown   = "down"
	stateFrozen = "frozen"
)

var errThawed = errors.New("connection held while the endpoint was frozen")

type endpoint struct {
	name    string // "vcenter" or a host name
	addr    string // 127.0.0.1:PORT, fixed for the endpoint's life
	tls     *tls.Config
	handler http.Handler
	stats   *stats // this endpoint's share of GET /stats

	mu    sync.Mutex // guards state and srv (held across srv.Close)
	state string
	srv   *http.Server

	// gateMu guards only thaw: connections consult it on every read and
	// write, including the close_notify that srv.Close writes while mu is held.
	gateMu sync.Mutex
	thaw   chan struct{} // closed when the endpoint leaves "frozen"
}

// newEndpoint listens on addr ("127.0.0.1:0" picks a port) and serves.
func newEndpoint(name, addr string, tlsConf *tls.Config, h http.Handler) (*endpoint, error) {
	e := &endpoint{name: name, tls: tlsConf, handler: h, stats: newStats(), state: stateDown}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	e.addr = ln.Addr().String()
	e.mu.Lock()
	e.serveLocked(ln)
	e.state = stateUp
	e.mu.Unlock()
	return e, nil
}

func (e *endpoint) url() string { return fmt.Sprintf("https://%s/sdk", e.addr) }

func (e *endpoint) port() int {
	if a, err := net.ResolveTCPAddr("tcp", e.addr); err == nil {
		return a.Port
	}
	return 0
}

func (e *endpoint) serveLocked(ln net.Listener) {
	srv := &http.Server{
		Handler:  e.handler,
		ErrorLog: log.New(io.Discard, "", 0), // TLS handshake noise from probing clients
		ConnState: func(c net.Conn, cs http.ConnState) {
			if cs == http.StateNew {
				e.stats.addConnection()
				X.stats.addConnection()
			}
		},
	}
	e.srv = srv
	go func() {
		err := srv.Serve(tls.NewListener(&gateListener{Listener: ln, e: e}, e.tls))
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			log.Printf("endpoint %s: %s", e.name, err)
		}
	}()
}

func (e *endpoint) getState() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.state
}

// setState moves the endpoint to up, down or frozen.
func (e *endpoint) setState(want string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if want == e.state {
		return nil
	}
	switch want {
	case stateUp, stateDown, stateFrozen:
	default:
		return fmt.Errorf("state must be up, down or frozen, got %q", want)
	}
	if e.state == stateFrozen {
		e.gateMu.Lock()
		close(e.thaw) // held connections fail and are closed by the server
		e.thaw = nil
		e.gateMu.Unlock()
	}
	if want == stateDown {
		if e.srv != nil {
			_ = e.srv.Close()
			e.srv = nil
		}
		e.state = stateDown
		log.Printf("endpoint %s (%s) down", e.name, e.addr)
		return nil
	}
	if e.srv == nil {
		ln, err := listenAgain(e.addr)
		if err != nil {
			return fmt.Errorf("re-listening on %s: %w", e.addr, err)
		}
		e.serveLocked(ln)
	}
	if want == stateFrozen {
		e.gateMu.Lock()
		e.thaw = make(chan struct{})
		e.gateMu.Unlock()
	}
	e.state = want
	log.Printf("endpoint %s (%s) %s", e.name, e.addr, want)
	return nil
}

// listenAgain binds the same port again (Go sets SO_REUSEADDR, so only a
// racing process could hold it; retry briefly).
func listenAgain(addr string) (net.Listener, error) {
	var err error
	for i := 0; i < 20; i++ {
		var ln net.Listener
		if ln, err = net.Listen("tcp", addr); err == nil {
			return ln, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil, err
}

// close stops serving for good (simulator shutdown).
func (e *endpoint) close() {
	_ = e.setState(stateDown)
}

// hold blocks while the endpoint is frozen; it returns an error if the
// connection was held (it is then closed).
func (e *endpoint) hold() error {
	e.gateMu.Lock()
	ch := e.thaw
	e.gateMu.Unlock()
	if ch == nil {
		return nil
	}
	<-ch
	return errThawed
}

type gateListener struct {
	net.Listener
	e *endpoint
}

func (l *gateListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &gateConn{Conn: c, e: l.e}, nil
}

// gateConn stops reading and writing while its endpoint is frozen (an
// answer to a request that was already in progress is held too).
type gateConn struct {
	net.Conn
	e *endpoint
}

func (c *gateConn) Read(b []byte) (int, error) {
	if err := c.e.hold(); err != nil {
		return 0, err
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		// The data may have arrived while frozen: do not act on it.
		if herr := c.e.hold(); herr != nil {
			return 0, herr
		}
	}
	return n, err
}

func (c *gateConn) Write(b []byte) (int, error) {
	if err := c.e.hold(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}
