// Package s3server runs versitygw, a real S3 server, as a child process for tests and for
// local runs. The binary is built by hack/build-versitygw.sh into bin/.
package s3server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is host:port on loopback: plain HTTP, or HTTPS when started by StartTLS.
	Endpoint  string
	AccessKey string
	SecretKey string
	// Dir is the directory backing the buckets (one sub-directory per bucket).
	Dir string

	bin  string
	port int
	cmd  *exec.Cmd
	done chan error
	logf *os.File

	// certFile and keyFile, when set, make the server speak HTTPS.
	certFile, keyFile string
}

// Binary returns the versitygw binary: $AGENTRY_VERSITYGW, or bin/versitygw.
func Binary() string {
	if b := os.Getenv("AGENTRY_VERSITYGW"); b != "" {
		return b
	}
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "bin", "versitygw")
}

// Start starts versitygw on a free loopback port, backed by dir (created if missing).
func Start(dir string) (*Server, error) { return StartTLS(dir, "", "") }

// StartTLS is Start serving HTTPS with the certificate and key in certFile and keyFile
// (PEM); with both empty it serves plain HTTP.
func StartTLS(dir, certFile, keyFile string) (*Server, error) {
	bin := Binary()
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("versitygw not found at %s: run 'make setup' first: %w", bin, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &Server{
		Endpoint:  net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		AccessKey: "agentry" + randomHex(6),
		SecretKey: randomHex(20),
		Dir:       dir,
		bin:       bin,
		port:      port,
		certFile:  certFile,
		keyFile:   keyFile,
	}
	return s, s.start()
}

func (s *Server) start() error {
	logf, err := os.CreateTemp("", "versitygw-*.log")
	if err != nil {
		return err
	}
	s.logf = logf
	args := []string{"--port", s.Endpoint, "--access", s.AccessKey, "--secret", s.SecretKey, "--quiet"}
	if s.certFile != "" {
		args = append(args, "--cert", s.certFile, "--key", s.keyFile)
	}
	s.cmd = exec.Command(s.bin, append(args, "posix", s.Dir)...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Its own process group, so a test's interrupt does not race our orderly stop.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("starting versitygw: %w", err)
	}
	s.done = make(chan error, 1)
	go func() { s.done <- s.cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-s.done:
			out, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("versitygw exited at start: %w: %s", err, out)
		default:
		}
		if c, err := net.DialTimeout("tcp", s.Endpoint, 200*time.Millisecond); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = s.Stop()
	return fmt.Errorf("versitygw did not listen on %s within 15s", s.Endpoint)
}

// Stop stops the server; the data directory stays.
func (s *Server) Stop() error {
	if s.cmd == nil || s.cmd.Process == nil {
		return nil
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case err = <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		err = <-s.done
	}
	s.cmd = nil
	if s.logf != nil {
		s.logf.Close()
		os.Remove(s.logf.Name())
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return nil // killed by our signal
	}
	return err
}

// Restart starts the server again on the same address with the same data and keys: an
// outage, as clients see it.
func (s *Server) Restart(ctx context.Context) error {
	if err := s.Stop(); err != nil {
		return err
	}
	return s.start()
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
