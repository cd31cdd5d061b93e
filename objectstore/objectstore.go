// Package objectstore is the S3 client set-up shared by the gateway's archive and the
// runner's S3 sink: where the bucket is, how the endpoint is trusted and which credentials
// sign the requests. Each side keeps its own flags and layout of objects.
package objectstore

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// The environment variables credentials are read from (the names AWS tools use), never
// flags: a flag shows in process listings.
const (
	EnvAccessKey    = "AWS_ACCESS_KEY_ID"
	EnvSecretKey    = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken = "AWS_SESSION_TOKEN"
)

// Config locates a bucket and says how to reach it.
type Config struct {
	// Endpoint is host:port or an http(s):// URL; the URL's scheme decides TLS.
	Endpoint string
	Bucket   string
	// Prefix is prepended to every key the user of the client writes.
	Prefix string
	Region string
	// Insecure uses plain HTTP for a host:port endpoint.
	Insecure bool
	// CAFile is a PEM bundle; when set, only its CAs are trusted for an https endpoint (an
	// object store with a private CA).
	CAFile string
	// AccessKey, SecretKey and SessionToken sign requests; SessionToken is set for
	// temporary credentials (STS) and sent with every request.
	AccessKey    string
	SecretKey    string
	SessionToken string
	// MaxRetries bounds the client's own retries of one request (0: the client's default).
	MaxRetries int
	// OpTimeout, when set, bounds one object operation of the client's user.
	OpTimeout time.Duration
}

// CredentialsFromEnv sets the credentials from EnvAccessKey, EnvSecretKey and
// EnvSessionToken.
func (c *Config) CredentialsFromEnv(getenv func(string) string) {
	c.AccessKey, c.SecretKey, c.SessionToken = getenv(EnvAccessKey), getenv(EnvSecretKey), getenv(EnvSessionToken)
}

// Host is the endpoint's host:port and whether it is reached over TLS.
func (c Config) Host() (host string, secure bool) {
	if u, err := url.Parse(c.Endpoint); err == nil && u.Host != "" && (u.Scheme == "http" || u.Scheme == "https") {
		return u.Host, u.Scheme == "https"
	}
	return c.Endpoint, !c.Insecure
}

// New returns a client for cfg's endpoint. It does not contact the endpoint.
func New(cfg Config) (*minio.Client, error) {
	host, secure := cfg.Host()
	if host == "" || cfg.Bucket == "" {
		return nil, errors.New("S3 endpoint and bucket are required")
	}
	opts := &minio.Options{
		Creds:      credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, cfg.SessionToken),
		Secure:     secure,
		Region:     cfg.Region,
		MaxRetries: cfg.MaxRetries,
	}
	if cfg.CAFile != "" {
		tr, err := transportTrusting(cfg.CAFile)
		if err != nil {
			return nil, err
		}
		opts.Transport = tr
	}
	c, err := minio.New(host, opts)
	if err != nil {
		return nil, fmt.Errorf("configuring S3 client for %s: %w", host, err)
	}
	return c, nil
}

// transportTrusting is the default transport trusting only caFile's certificates.
func transportTrusting(caFile string) (*http.Transport, error) {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading S3 CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("S3 CA file %s holds no certificates", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return tr, nil
}
