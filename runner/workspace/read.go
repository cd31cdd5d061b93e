package workspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"slices"
	"sync"
)

// ReadOptions tunes ReadFiles.
type ReadOptions struct {
	// IncludeIgnored also reads what .gitignore excludes. .git is never read.
	IncludeIgnored bool
	// Workers is the number of files read and processed at once; 0 means GOMAXPROCS.
	Workers int
	// Keep, if set, is asked before a file is opened.
	Keep func(path string) bool
	// MaxFileBytes skips larger files; 0 means 256 MiB.
	MaxFileBytes int64
}

// ReadFiles reads every regular file under start (or start itself, when it
// is a file) and calls fn with its workspace-relative path and content, from
// up to Workers goroutines at once. data is only valid during the call.
// Symlinks are never followed; unreadable files are skipped. fn returning
// fs.SkipAll stops early without error; any other error stops and is returned.
func (r *Root) ReadFiles(ctx context.Context, start string, o ReadOptions, fn func(path string, data []byte) error) error {
	if o.Workers < 1 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	if o.MaxFileBytes <= 0 {
		o.MaxFileBytes = 256 << 20
	}
	return readFiles(r, ctx, start, o, fn)
}

// readFiles is the implementation; Linux swaps in a raw-syscall walker.
var readFiles = readFilesPortable

// readFilesPortable walks with os.Root handles per directory.
func readFilesPortable(r *Root, ctx context.Context, start string, o ReadOptions, fn func(string, []byte) error) error {
	n, rel, fi, err := r.startNode(start, WalkOptions{IncludeIgnored: o.IncludeIgnored})
	if err != nil {
		return err
	}
	if n == nil {
		return r.readOne(rel, fi, o, fn)
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	type job struct {
		node *dirNode
		name string
		path string
	}
	jobs := make(chan job, o.Workers*16)
	var wg sync.WaitGroup
	for range o.Workers {
		wg.Go(func() {
			bufp := bufPool.Get().(*[]byte)
			defer bufPool.Put(bufp)
			for j := range jobs {
				if ctx.Err() == nil {
					if f, err := j.node.root.Open(j.name); err == nil {
						data, ok := readAll(f, bufp, o.MaxFileBytes)
						_ = f.Close()
						if ok {
							if err := fn(j.path, data); err != nil {
								cancel(err)
							}
						}
					}
				}
				j.node.release()
			}
		})
	}
	walkErr := r.walkDir(ctx, n, WalkOptions{IncludeIgnored: o.IncludeIgnored}, func(e Entry) (bool, error) {
		if !e.Type.IsRegular() || (o.Keep != nil && !o.Keep(e.Path)) {
			return true, nil
		}
		e.node.refs.Add(1)
		select {
		case jobs <- job{node: e.node, name: e.name, path: e.Path}:
			return true, nil
		case <-ctx.Done():
			e.node.release()
			return false, context.Cause(ctx)
		}
	})
	n.release()
	close(jobs)
	wg.Wait()
	return walkResult(ctx, walkErr)
}

// walkResult picks the error to report after a parallel walk: fn's error,
// else the walk's, with fs.SkipAll meaning success.
func walkResult(ctx context.Context, walkErr error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) {
		return ignoreSkipAll(cause)
	}
	if walkErr != nil && !errors.Is(walkErr, fs.SkipAll) {
		return walkErr
	}
	return ignoreSkipAll(context.Cause(ctx))
}

func (r *Root) readOne(rel string, fi fs.FileInfo, o ReadOptions, fn func(string, []byte) error) error {
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: not a regular file", display(rel))
	}
	f, err := r.root.Open(rel)
	if err != nil {
		return r.explain(rel, err)
	}
	defer f.Close()
	bufp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bufp)
	data, ok := readAll(f, bufp, o.MaxFileBytes)
	if !ok {
		return nil
	}
	return ignoreSkipAll(fn(rel, data))
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

// readAll reads f into the pooled buffer, growing it when needed; files over
// max are skipped rather than read partially.
func readAll(f *os.File, bufp *[]byte, max int64) ([]byte, bool) {
	size := int64(0)
	if fi, err := f.Stat(); err == nil {
		size = fi.Size()
	}
	return fillBuffer(func(b []byte) (int, error) { return f.Read(b) }, size, bufp, max)
}

// fillBuffer reads until EOF into *bufp (kept for reuse unless huge).
func fillBuffer(read func([]byte) (int, error), size int64, bufp *[]byte, max int64) ([]byte, bool) {
	if size > max {
		return nil, false
	}
	buf := (*bufp)[:0]
	if int64(cap(buf)) < size+1 {
		buf = make([]byte, 0, size+512)
	}
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= max {
				return nil, false
			}
			buf = slices.Grow(buf, len(buf))
		}
		n, err := read(buf[len(buf):cap(buf)])
		if n > 0 {
			buf = buf[:len(buf)+n]
		}
		if errors.Is(err, io.EOF) || (err == nil && n == 0) {
			break
		}
		if err != nil {
			return nil, false
		}
	}
	if cap(buf) <= 8<<20 {
		*bufp = buf
	}
	return buf, true
}
