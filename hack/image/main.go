// Command image builds a single-layer OCI image from files on the host and writes it as a
// docker-archive tarball that `ctr images import` (and `kind load image-archive`) accept. It is
// how the dev cluster and the e2e tests get the manager, runner and pause images on a machine
// with no Docker engine and no registry.
//
//	go run ./hack/image --tag agentry/runner:dev --out bin/images/runner.tar \
//	  --file bin/runner=/usr/local/bin/runner --busybox /bin/busybox \
//	  --file /etc/ssl/certs/ca-certificates.crt=/etc/ssl/certs/ca-certificates.crt \
//	  --entrypoint /usr/local/bin/runner --user 65532
//
// The layer is reproducible (fixed modification times, sorted entries), so rebuilding an
// unchanged image yields the same digest and re-importing it is a no-op.
package main

import (
	"archive/tar"
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// nonRootUID is the user the images declare and the runner pod runs as.
const nonRootUID = 65532

type fileList []string

func (f *fileList) String() string     { return strings.Join(*f, ",") }
func (f *fileList) Set(s string) error { *f = append(*f, s); return nil }

type entry struct {
	hdr  tar.Header
	data []byte
}

func main() {
	var files, dirs, bindCaps fileList
	tag := flag.String("tag", "", "image reference, e.g. agentry/runner:dev")
	out := flag.String("out", "", "docker-archive tarball to write")
	busybox := flag.String("busybox", "", "static busybox binary to install at /bin/busybox with a link per applet")
	entrypoint := flag.String("entrypoint", "", "entrypoint (space-separated)")
	user := flag.String("user", strconv.Itoa(nonRootUID), "user the image runs as")
	flag.Var(&files, "file", "HOST=IMAGE path of a file to add (repeatable)")
	flag.Var(&dirs, "dir", "empty directory to create, world-writable with the sticky bit when it is /tmp (repeatable)")
	flag.Var(&bindCaps, "net-bind-service", "IMAGE path of an added file to give the file capability cap_net_bind_service=+ep (repeatable)")
	flag.Parse()
	if *tag == "" || *out == "" {
		fmt.Fprintln(os.Stderr, "image: --tag and --out are required")
		os.Exit(2)
	}
	if err := build(*tag, *out, *busybox, *entrypoint, *user, files, dirs, bindCaps); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

func build(tag, out, busybox, entrypoint, user string, files, dirs, bindCaps []string) error {
	ref, err := name.NewTag(tag)
	if err != nil {
		return fmt.Errorf("parsing tag %q: %w", tag, err)
	}
	entries := map[string]entry{}
	addDir := func(p string, mode int64, uid int) {
		for d := p; d != "/" && d != "."; d = path.Dir(d) {
			if _, ok := entries[d]; !ok {
				entries[d] = entry{hdr: tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o755}}
			}
		}
		e := entries[p]
		e.hdr.Mode, e.hdr.Uid, e.hdr.Gid = mode, uid, uid
		entries[p] = e
	}
	addFile := func(p string, data []byte, mode int64) {
		addDir(path.Dir(p), 0o755, 0)
		entries[p] = entry{hdr: tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(p, "/"), Mode: mode, Size: int64(len(data))}, data: data}
	}
	for _, f := range files {
		host, img, ok := strings.Cut(f, "=")
		if !ok || !path.IsAbs(img) {
			return fmt.Errorf("--file %q: want HOST=/absolute/image/path", f)
		}
		data, err := os.ReadFile(host)
		if err != nil {
			return err
		}
		st, err := os.Stat(host)
		if err != nil {
			return err
		}
		addFile(img, data, int64(st.Mode().Perm()))
	}
	for _, d := range dirs {
		if d == "/tmp" {
			addDir(d, 0o1777, 0)
			continue
		}
		addDir(d, 0o755, nonRootUID)
	}
	// A passwd and group file so tools that look the user up (git, ssh, a shell prompt) find it.
	addFile("/etc/passwd", []byte("root:x:0:0:root:/root:/bin/sh\nagentry:x:65532:65532:agentry:/home/agentry:/bin/sh\n"), 0o644)
	addFile("/etc/group", []byte("root:x:0:\nagentry:x:65532:\n"), 0o644)
	if busybox != "" {
		data, err := os.ReadFile(busybox)
		if err != nil {
			return err
		}
		addFile("/bin/busybox", data, 0o755)
		list, err := exec.Command(busybox, "--list").Output()
		if err != nil {
			return fmt.Errorf("listing busybox applets: %w", err)
		}
		for _, applet := range strings.Fields(string(list)) {
			p := "/bin/" + applet
			if _, taken := entries[p]; taken || applet == "busybox" {
				continue
			}
			entries[p] = entry{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: strings.TrimPrefix(p, "/"), Linkname: "busybox", Mode: 0o777}}
		}
	}

	for _, p := range bindCaps {
		e, ok := entries[p]
		if !ok || e.hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("--net-bind-service %q: not a file added with --file", p)
		}
		e.hdr.PAXRecords = map[string]string{"SCHILY.xattr.security.capability": netBindServiceCap()}
		entries[p] = e
	}

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := make([]string, 0, len(entries))
	for p := range entries {
		names = append(names, p)
	}
	sort.Strings(names)
	epoch := time.Unix(0, 0)
	for _, p := range names {
		e := entries[p]
		e.hdr.ModTime, e.hdr.Format = epoch, tar.FormatPAX
		if err := tw.WriteHeader(&e.hdr); err != nil {
			return err
		}
		if _, err := tw.Write(e.data); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layerBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerBytes)), nil })
	if err != nil {
		return fmt.Errorf("creating layer: %w", err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", "amd64"
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.User = user
	cfg.Config.Env = []string{"PATH=/usr/local/bin:/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	if entrypoint != "" {
		cfg.Config.Entrypoint = strings.Fields(entrypoint)
	}
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return err
	}
	tmp := out + ".tmp"
	if err := tarball.WriteToFile(tmp, ref, img); err != nil {
		return fmt.Errorf("writing %s: %w", out, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("%s %s\n", ref.Name(), digest)
	return os.Rename(tmp, out)
}

// netBindServiceCap is the security.capability extended attribute (struct vfs_cap_data,
// revision 2) for cap_net_bind_service=+ep. A non-root process cannot bind a port below 1024;
// with this file capability, and NET_BIND_SERVICE in the container's capability set (the only
// capability the restricted Pod Security profile lets a pod add), it can, even with
// allowPrivilegeEscalation false: the runtime already grants the process the capability, so
// the no_new_privs rule (nothing gained on exec) leaves it. This is how CoreDNS's own image listens on port 53.
func netBindServiceCap() string {
	const (
		revision2       = 0x02000000
		flagEffective   = 0x000001
		capNetBindServe = 10
	)
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], revision2|flagEffective)
	binary.LittleEndian.PutUint32(b[4:], 1<<capNetBindServe) // permitted, capabilities 0-31
	return string(b)                                         // inheritable and 32-63 stay zero
}
