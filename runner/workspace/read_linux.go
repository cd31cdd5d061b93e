//go:build linux

package workspace

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// On Linux, ReadFiles walks with raw directory descriptors: every directory
// and file is opened relative to its parent's descriptor with O_NOFOLLOW, so
// no path is ever resolved through a symlink (the same guarantee os.Root
// gives), while skipping what os.File costs per file (non-blocking mode,
// poller registration, finalizers). On a large tree that is the difference
// between ripgrep-class speed and twice as slow.
func init() { readFiles = readFilesLinux }

type fdNode struct {
	fd    int
	path  string
	comps []string
	rules []ignoreRule
	refs  atomic.Int32
}

func (n *fdNode) release() {
	if n.refs.Add(-1) == 0 {
		_ = syscall.Close(n.fd)
	}
}

type fdJob struct {
	node *fdNode
	name string
	path string
}

func readFilesLinux(r *Root, ctx context.Context, start string, o ReadOptions, fn func(string, []byte) error) error {
	n0, rel, fi, err := r.startNode(start, WalkOptions{IncludeIgnored: o.IncludeIgnored})
	if err != nil {
		return err
	}
	if n0 == nil {
		return r.readOne(rel, fi, o, fn)
	}
	// The start directory is resolved by os.Root (symlinks inside the
	// workspace allowed, escapes refused); below it nothing is followed.
	f, err := n0.root.Open(".")
	n0.release()
	if err != nil {
		return r.explain(rel, err)
	}
	fd, err := syscall.Dup(int(f.Fd()))
	_ = f.Close()
	if err != nil {
		return r.explain(rel, err)
	}
	root := &fdNode{fd: fd, path: n0.path, comps: n0.comps, rules: n0.patterns}
	root.refs.Store(1)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	jobs := make(chan fdJob, o.Workers*32)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Go(func() {
			bufp := bufPool.Get().(*[]byte)
			defer bufPool.Put(bufp)
			for j := range jobs {
				if ctx.Err() == nil {
					if data, ok := readAt(j.node.fd, j.name, bufp, o.MaxFileBytes); ok {
						if err := fn(j.path, data); err != nil {
							cancel(err)
						}
					}
				}
				j.node.release()
			}
		})
	}
	w := &fdWalker{o: o, jobs: jobs, buf: make([]byte, 64<<10), hidden: r.hidden}
	walkErr := w.walk(ctx, root)
	root.release()
	close(jobs)
	wg.Wait()
	return walkResult(ctx, walkErr)
}

type fdWalker struct {
	o      ReadOptions
	hidden []ignoreRule // .agentryignore
	jobs   chan<- fdJob
	buf    []byte // getdents buffer, reused: entries are copied out before recursing
}

type dirent struct {
	name string
	typ  uint8
}

func (w *fdWalker) walk(ctx context.Context, n *fdNode) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	ents, err := w.list(n.fd)
	if err != nil {
		return nil //nolint:nilerr // unreadable directories are skipped, as ripgrep does
	}
	rules := n.rules
	if !w.o.IncludeIgnored {
		for _, e := range ents {
			if e.name == ".gitignore" && (e.typ == syscall.DT_REG || e.typ == syscall.DT_UNKNOWN) {
				bufp := bufPool.Get().(*[]byte)
				if data, ok := readAt(n.fd, ".gitignore", bufp, 1<<20); ok {
					rules = append(slices.Clip(rules), parseIgnore(data, n.comps)...)
				}
				bufPool.Put(bufp)
				break
			}
		}
	}
	for _, e := range ents {
		if e.name == ".git" {
			continue
		}
		typ := e.typ
		if typ == syscall.DT_UNKNOWN {
			var st unix.Stat_t
			if unix.Fstatat(n.fd, e.name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil {
				continue
			}
			switch st.Mode & unix.S_IFMT {
			case unix.S_IFDIR:
				typ = syscall.DT_DIR
			case unix.S_IFREG:
				typ = syscall.DT_REG
			default:
				continue
			}
		}
		if typ != syscall.DT_DIR && typ != syscall.DT_REG {
			continue // symlinks, devices, sockets
		}
		isDir := typ == syscall.DT_DIR
		var comps []string
		if len(rules) > 0 || len(w.hidden) > 0 || isDir {
			comps = make([]string, len(n.comps)+1)
			copy(comps, n.comps)
			comps[len(n.comps)] = e.name
			if len(rules) > 0 && ignored(rules, comps, isDir) || ignored(w.hidden, comps, isDir) {
				continue
			}
		}
		p := e.name
		if n.path != "" {
			p = n.path + "/" + e.name
		}
		if isDir {
			cfd, err := openat(n.fd, e.name, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC)
			if err != nil {
				continue
			}
			child := &fdNode{fd: cfd, path: p, comps: comps, rules: rules}
			child.refs.Store(1)
			err = w.walk(ctx, child)
			child.release()
			if err != nil {
				return err
			}
			continue
		}
		if w.o.Keep != nil && !w.o.Keep(p) {
			continue
		}
		n.refs.Add(1)
		select {
		case w.jobs <- fdJob{node: n, name: e.name, path: p}:
		case <-ctx.Done():
			n.release()
			return context.Cause(ctx)
		}
	}
	return nil
}

// list reads a directory with getdents64, returning entries with their types.
func (w *fdWalker) list(fd int) ([]dirent, error) {
	var ents []dirent
	for {
		n, err := syscall.ReadDirent(fd, w.buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return ents, nil
		}
		b := w.buf[:n]
		for len(b) > 0 {
			// struct linux_dirent64 { u64 ino; s64 off; u16 reclen; u8 type; char name[]; }
			reclen := int(*(*uint16)(unsafe.Pointer(&b[16])))
			if reclen == 0 || reclen > len(b) {
				break
			}
			typ := b[18]
			name := b[19:reclen]
			for i, c := range name {
				if c == 0 {
					name = name[:i]
					break
				}
			}
			if s := string(name); s != "." && s != ".." {
				ents = append(ents, dirent{name: s, typ: typ})
			}
			b = b[reclen:]
		}
	}
}

func openat(dirfd int, name string, flags int) (int, error) {
	for {
		fd, err := syscall.Openat(dirfd, name, flags, 0)
		if err != syscall.EINTR {
			return fd, err
		}
	}
}

// readAt reads dirfd/name without following a symlink. Non-regular files
// (swapped in after the listing) are skipped; O_NONBLOCK keeps a FIFO from
// blocking the open.
func readAt(dirfd int, name string, bufp *[]byte, max int64) ([]byte, bool) {
	fd, err := openat(dirfd, name, syscall.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC|syscall.O_NONBLOCK|syscall.O_NOCTTY)
	if err != nil {
		return nil, false
	}
	defer syscall.Close(fd)
	var st syscall.Stat_t
	if syscall.Fstat(fd, &st) != nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil, false
	}
	return fillBuffer(func(b []byte) (int, error) {
		for {
			n, err := syscall.Read(fd, b)
			if err == syscall.EINTR {
				continue
			}
			if n < 0 {
				n = 0
			}
			return n, err
		}
	}, st.Size, bufp, max)
}
