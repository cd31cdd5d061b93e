// Command httpc is the HTTPS client of the e2e suite's hostile pods (image
// agentry/e2e-tools:dev): what an attacker's toolchain image would carry, since busybox's
// wget cannot handshake with a TLS 1.2+ server that requires signature_algorithms. It prints
// the status line and up to 4 KiB of the body, and exits 0 whenever a response came back.
//
//	httpc [-k] [-H 'Name: value']... [-d BODY] URL
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

type headers []string

func (h *headers) String() string     { return strings.Join(*h, ", ") }
func (h *headers) Set(v string) error { *h = append(*h, v); return nil }

func main() {
	insecure := flag.Bool("k", false, "do not verify the server's certificate")
	data := flag.String("d", "", "POST this body")
	timeout := flag.Duration("T", 10*time.Second, "timeout")
	var hs headers
	flag.Var(&hs, "H", "request header 'Name: value' (repeatable)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: httpc [-k] [-H 'Name: value']... [-d BODY] URL")
		os.Exit(2)
	}
	method, body := http.MethodGet, io.Reader(nil)
	if *data != "" {
		method, body = http.MethodPost, strings.NewReader(*data)
	}
	req, err := http.NewRequest(method, flag.Arg(0), body)
	if err != nil {
		fmt.Println("httpc:", err)
		os.Exit(1)
	}
	req.Header.Set("Content-Type", "application/json")
	for _, h := range hs {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	c := &http.Client{Timeout: *timeout, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: *insecure}}} //nolint:gosec // an attacker's client
	resp, err := c.Do(req)
	if err != nil {
		fmt.Println("httpc:", err)
		os.Exit(1)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Printf("%s %s\n%s\n", resp.Proto, resp.Status, b)
}
