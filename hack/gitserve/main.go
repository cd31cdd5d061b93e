// Command gitserve serves the git repositories under a directory over smart HTTP (git
// http-backend behind net/http/cgi), read-only, so runner pods can clone them: a hostPath or
// file:// URL is not allowed under the restricted Pod Security profile. `make dev` serves a
// sample repository with it on the cluster bridge.
//
//	gitserve --listen 10.203.0.1:18088 --root bin/dev/git   # http://10.203.0.1:18088/sample.git
package main

import (
	"flag"
	"fmt"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"strings"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18088", "address to listen on")
	root := flag.String("root", ".", "directory holding bare repositories")
	flag.Parse()
	if err := http.ListenAndServe(*listen, Handler(*root)); err != nil {
		fmt.Fprintln(os.Stderr, "gitserve:", err)
		os.Exit(1)
	}
}

// Handler serves clones and fetches of the bare repositories under root; pushes are refused.
func Handler(root string) http.Handler {
	git, err := exec.LookPath("git")
	if err != nil {
		git = "/usr/bin/git"
	}
	backend := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/git-receive-pack") || r.URL.Query().Get("service") == "git-receive-pack" {
			http.Error(w, "read-only", http.StatusForbidden)
			return
		}
		backend.ServeHTTP(w, r)
	})
}
