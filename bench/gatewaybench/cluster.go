package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	v1 "github.com/agentry-dev/agentry/api/v1alpha1"
	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/gatewaytls"
	"github.com/agentry-dev/agentry/test/controlplane"
	"github.com/agentry-dev/agentry/test/s3server"
)

const (
	operatorNS  = "agentry-system"
	bucket      = "agentry"
	providerKey = "sk-bench-provider-key"
	// managerBinary is the name the manager is built under; its user agent starts with it.
	managerBinary = "agentry-manager"
)

// buildManager builds the real manager (cmd/) into dir.
func buildManager(dir string) (string, error) {
	bin := filepath.Join(dir, managerBinary)
	cmd := exec.Command("go", "build", "-o", bin, "./cmd")
	cmd.Dir = controlplane.RepoRoot()
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the manager: %w", err)
	}
	return bin, nil
}

// s3Counter is a reverse proxy in front of versitygw counting requests by kind, so the
// S3 requests the gateway makes per event are measured at the server's door.
type s3Counter struct {
	addr  string
	srv   *http.Server
	mu    sync.Mutex
	count map[string]int64
	on    atomic.Bool
}

func startS3Counter(target string) (*s3Counter, error) {
	u, err := url.Parse("http://" + target)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &s3Counter{addr: ln.Addr().String(), count: map[string]int64{}}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(u)
		r.Out.Host = r.In.Host // the client signed this Host (SigV4)
	}}
	rp.Transport = &http.Transport{MaxIdleConnsPerHost: 256}
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if c.on.Load() {
			c.mu.Lock()
			c.count[s3Kind(r)]++
			c.mu.Unlock()
		}
		rp.ServeHTTP(w, r)
	})}
	go func() { _ = c.srv.Serve(ln) }()
	return c, nil
}

// s3Kind names an S3 request as the S3 API does.
func s3Kind(r *http.Request) string {
	q := r.URL.Query()
	path := strings.Trim(r.URL.Path, "/")
	switch {
	case r.Method == http.MethodGet && !strings.Contains(path, "/"):
		return "ListObjects"
	case r.Method == http.MethodGet:
		return "GetObject"
	case r.Method == http.MethodPut && q.Has("partNumber"):
		return "UploadPart"
	case r.Method == http.MethodPut:
		return "PutObject"
	case r.Method == http.MethodHead:
		return "Head"
	case r.Method == http.MethodDelete:
		return "DeleteObject"
	}
	return r.Method
}

func (c *s3Counter) snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int64, len(c.count))
	for k, v := range c.count {
		out[k] = v
	}
	return out
}

func (c *s3Counter) reset() {
	c.mu.Lock()
	c.count = map[string]int64{}
	c.mu.Unlock()
}

// startS3 starts the S3 server in dir with the archive bucket.
func startS3(ctx context.Context, dir string) (*s3server.Server, error) {
	s3, err := s3server.Start(filepath.Join(dir, "s3"))
	if err != nil {
		return nil, err
	}
	if err := makeBucket(ctx, s3); err != nil {
		s3.Stop()
		return nil, err
	}
	return s3, nil
}

func makeBucket(ctx context.Context, s3 *s3server.Server) error {
	mc, err := minio.New(s3.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(s3.AccessKey, s3.SecretKey, "")})
	if err != nil {
		return err
	}
	return mc.MakeBucket(ctx, bucket, minio.MakeBucketOptions{})
}

// manager is the real manager binary running as a child process.
type manager struct {
	cmd        *exec.Cmd
	done       chan error
	gatewayURL string
	metricsURL string
	logPath    string
	// pprofURL is the manager's /debug/pprof (--pprof-bind-address); empty when not served.
	pprofURL string
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func startManager(bin, dir string, env *controlplane.Env, s3 *s3server.Server, s3Endpoint string, extra ...string) (*manager, error) {
	var ports [4]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		ports[i] = p
	}
	pprof := "127.0.0.1:" + strconv.Itoa(ports[3])
	m, err := launchManager(bin, filepath.Join(dir, "manager.log"), [3]int(ports[:3]), env, s3, s3Endpoint, append([]string{"--pprof-bind-address", pprof}, extra...)...)
	if err != nil {
		return nil, err
	}
	m.pprofURL = "http://" + pprof + "/debug/pprof"
	return m, nil
}

// launchManager starts the manager on the given gateway, metrics and health ports, with
// extra flags after the bench's, appending to logPath (a restarted replica keeps one log).
func launchManager(bin, logPath string, ports [3]int, env *controlplane.Env, s3 *s3server.Server, s3Endpoint string, extra ...string) (*manager, error) {
	gw := "127.0.0.1:" + strconv.Itoa(ports[0])
	m := &manager{
		gatewayURL: "https://" + gw,
		metricsURL: "http://127.0.0.1:" + strconv.Itoa(ports[1]) + "/metrics",
		logPath:    logPath,
		done:       make(chan error, 1),
	}
	logf, err := os.OpenFile(m.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	m.cmd = exec.Command(bin,
		"--kubeconfig", env.Kubeconfig,
		"--metrics-bind-address", "127.0.0.1:"+strconv.Itoa(ports[1]),
		"--health-probe-bind-address", "127.0.0.1:"+strconv.Itoa(ports[2]),
		"--gateway-bind-address", gw,
		"--gateway-url", m.gatewayURL,
		"--gateway-tls", "managed",
		"--operator-namespace", operatorNS,
		"--gateway-namespace", operatorNS,
		"--console-bind-address", "0",
		"--s3-endpoint", "http://"+s3Endpoint,
		"--s3-bucket", bucket,
		"--zap-log-level", "error",
	)
	m.cmd.Args = append(m.cmd.Args, extra...)
	m.cmd.Env = append(os.Environ(), "AWS_ACCESS_KEY_ID="+s3.AccessKey, "AWS_SECRET_ACCESS_KEY="+s3.SecretKey, "AWS_REGION=us-east-1")
	m.cmd.Stdout, m.cmd.Stderr = logf, logf
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the manager: %w", err)
	}
	go func() { m.done <- m.cmd.Wait(); logf.Close() }()
	return m, nil
}

func (m *manager) pid() int { return m.cmd.Process.Pid }

func (m *manager) stop() {
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.done
	}
}

// waitGateway waits until the gateway answers /healthz over TLS with the CA the manager
// published, and returns a transport that trusts only that CA, as a runner pod's does.
func (m *manager) waitGateway(ctx context.Context, env *controlplane.Env, dir string, conns int) (*http.Transport, error) {
	caFile := filepath.Join(dir, "gateway-ca.crt")
	for {
		select {
		case err := <-m.done:
			out, _ := os.ReadFile(m.logPath)
			return nil, fmt.Errorf("manager exited: %w: %s", err, tail(out, 2000))
		default:
		}
		cm := &corev1.ConfigMap{}
		if err := env.Client.Get(ctx, types.NamespacedName{Namespace: operatorNS, Name: "agentry-gateway-ca"}, cm); err == nil && cm.Data[contract.GatewayCAKey] != "" {
			if err := os.WriteFile(caFile, []byte(cm.Data[contract.GatewayCAKey]), 0o600); err != nil {
				return nil, err
			}
			tr, err := gatewaytls.Transport(caFile)
			if err != nil {
				return nil, err
			}
			tr.MaxIdleConns, tr.MaxIdleConnsPerHost, tr.MaxConnsPerHost = 0, conns, 0
			resp, err := (&http.Client{Transport: tr, Timeout: 2 * time.Second}).Get(m.gatewayURL + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					return tr, nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return nil, errors.New("the gateway did not come up: " + ctx.Err().Error())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// installOperator creates what an install holds: the operator namespace, the provider's
// key Secret and the default ModelProvider pointing at the scripted model.
func installOperator(ctx context.Context, env *controlplane.Env, llmURL string, key bool) error {
	c := env.Client
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: operatorNS}}); err != nil {
		return err
	}
	if err := c.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "llm-key", Namespace: operatorNS},
		Data: map[string][]byte{"apiKey": []byte(providerKey)}}); err != nil {
		return err
	}
	p := &v1.ModelProvider{ObjectMeta: metav1.ObjectMeta{Name: "default"}, Spec: v1.ModelProviderSpec{BaseURL: llmURL, DefaultModel: "bench-model"}}
	if key {
		p.Spec.APIKeySecretRef = &v1.SecretKeyRef{Name: "llm-key", Key: "apiKey"}
	}
	return c.Create(ctx, p)
}
