package gitserver

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"
)

// SSHServer serves the same bare repositories over SSH, as a forge's git over SSH does:
// public-key authentication for one key, and only git-upload-pack and git-receive-pack.
type SSHServer struct {
	// Addr is host:port; a repository name.git is at ssh://git@Addr/name.git.
	Addr string
	// ClientKeyPEM is the private key (OpenSSH PEM) the server accepts; KnownHosts is a
	// known_hosts line for the server's host key.
	ClientKeyPEM []byte
	KnownHosts   []byte

	mu     sync.Mutex
	pushes int
}

// Pushes counts receive-pack sessions.
func (s *SSHServer) Pushes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pushes
}

// StartSSH serves srv's repositories over SSH until the test ends.
func (srv *Server) StartSSH(t testing.TB) *SSHServer {
	t.Helper()
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostSigner, err := ssh.NewSignerFromKey(hostPriv)
	if err != nil {
		t.Fatal(err)
	}
	clientPub, clientPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := ssh.NewPublicKey(clientPub)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
		if string(key.Marshal()) == string(allowed.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(hostSigner)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	s := &SSHServer{Addr: l.Addr().String(), ClientKeyPEM: pem.EncodeToMemory(block)}
	host, port, _ := net.SplitHostPort(s.Addr)
	s.KnownHosts = []byte(fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(hostSigner.PublicKey())))
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(c, cfg, srv.Root)
		}
	}()
	return s
}

func (s *SSHServer) serve(c net.Conn, cfg *ssh.ServerConfig, root string) {
	conn, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		_ = c.Close()
		return
	}
	defer conn.Close()
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			_ = nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go s.session(ch, chReqs, root)
	}
}

func (s *SSHServer) session(ch ssh.Channel, reqs <-chan *ssh.Request, root string) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" || len(req.Payload) < 4 {
			_ = req.Reply(false, nil)
			continue
		}
		command := string(req.Payload[4:])
		service, repo, ok := strings.Cut(command, " ")
		repo = strings.Trim(repo, "'\"")
		if !ok || (service != "git-upload-pack" && service != "git-receive-pack") || strings.Contains(repo, "..") {
			_ = req.Reply(false, nil)
			return
		}
		_ = req.Reply(true, nil)
		if service == "git-receive-pack" {
			s.mu.Lock()
			s.pushes++
			s.mu.Unlock()
		}
		cmd := exec.Command("git", strings.TrimPrefix(service, "git-"), filepath.Join(root, filepath.Clean("/"+repo)))
		cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
		code := uint32(0)
		if err := cmd.Run(); err != nil {
			code = 1
		}
		status := make([]byte, 4)
		binary.BigEndian.PutUint32(status, code)
		_, _ = ch.SendRequest("exit-status", false, status)
		return
	}
}
