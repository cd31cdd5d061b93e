package gitrepo

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"
	"syscall"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	fdiff "github.com/go-git/go-git/v5/plumbing/format/diff"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/utils/diff"
	"github.com/sergi/go-diff/diffmatchpatch"
)

// fileVersion is one side of a file change; it implements fdiff.File.
type fileVersion struct {
	path string
	mode filemode.FileMode
	// hash is zero for a large working-tree file whose hash was not needed.
	hash plumbing.Hash
	size int64
	// content is the whole content when whole is set, else its first
	// binarySniff bytes (enough to tell binary from text).
	content []byte
	whole   bool
}

func (f *fileVersion) Hash() plumbing.Hash     { return f.hash }
func (f *fileVersion) Mode() filemode.FileMode { return f.mode }
func (f *fileVersion) Path() string            { return f.path }

func modeOf(fi fs.FileInfo) filemode.FileMode {
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		return filemode.Symlink
	case fi.Mode()&0o111 != 0:
		return filemode.Executable
	default:
		return filemode.Regular
	}
}

type chunk struct {
	content string
	op      fdiff.Operation
}

func (c chunk) Content() string           { return c.content }
func (c chunk) Type() fdiff.Operation     { return c.op }
func (p filePatch) IsBinary() bool        { return p.binary }
func (p filePatch) Chunks() []fdiff.Chunk { return p.chunks }
func (p filePatch) Files() (fdiff.File, fdiff.File) {
	// Typed nils must become untyped nils: the encoder checks `from == nil`.
	var from, to fdiff.File
	if p.from != nil {
		from = p.from
	}
	if p.to != nil {
		to = p.to
	}
	return from, to
}

type filePatch struct {
	from, to *fileVersion
	binary   bool
	chunks   []fdiff.Chunk
}

// binarySniff is how much of a file decides binary or text: a NUL byte in
// it means binary, as for git.
const binarySniff = 8000

func isBinary(b []byte) bool { return bytes.IndexByte(b[:min(len(b), binarySniff)], 0) >= 0 }

// diffTimeout bounds the line diff of one file (at most MaxFileBytes a side);
// past it the rest becomes one deletion and one insertion, still a valid patch.
const diffTimeout = 5 * time.Second

func lineChunks(a, b []byte) []fdiff.Chunk {
	var chunks []fdiff.Chunk
	for _, d := range diff.DoWithTimeout(string(a), string(b), diffTimeout) {
		var op fdiff.Operation
		switch d.Type {
		case diffmatchpatch.DiffEqual:
			op = fdiff.Equal
		case diffmatchpatch.DiffInsert:
			op = fdiff.Add
		case diffmatchpatch.DiffDelete:
			op = fdiff.Delete
		}
		chunks = append(chunks, chunk{content: d.Text, op: op})
	}
	return chunks
}

func (p filePatch) stat() FileStat {
	name := ""
	if p.to != nil {
		name = p.to.path
	} else if p.from != nil {
		name = p.from.path
	}
	s := FileStat{Path: name, Binary: p.binary}
	for _, c := range p.chunks {
		n := strings.Count(c.Content(), "\n")
		if !strings.HasSuffix(c.Content(), "\n") && c.Content() != "" {
			n++
		}
		switch c.Type() {
		case fdiff.Add:
			s.Additions += n
		case fdiff.Delete:
			s.Deletions += n
		}
	}
	return s
}

type patch struct{ files []fdiff.FilePatch }

func (p patch) FilePatches() []fdiff.FilePatch { return p.files }
func (p patch) Message() string                { return "" }

// patchBuilder assembles a patch one file at a time, so at most one file's
// two sides (each at most MaxFileBytes) and the patch text are in memory.
type patchBuilder struct {
	opts    Options
	out     bytes.Buffer
	one     bytes.Buffer
	stats   []FileStat
	omitted []OmittedFile
}

func (b *patchBuilder) patch() Patch {
	p := Patch{Files: b.stats, Omitted: b.omitted}
	if b.out.Len() > 0 {
		p.Text = b.out.Bytes()
	}
	return p
}

// baseSide reads name from the base commit: its whole content up to
// MaxFileBytes, else its beginning only.
func (b *patchBuilder) baseSide(repo *git.Repository, tree *object.Tree, name string) (*fileVersion, error) {
	if tree == nil {
		return nil, nil
	}
	e, err := tree.FindEntry(name)
	if err != nil || !e.Mode.IsFile() {
		return nil, nil // absent, a directory or a submodule
	}
	blob, err := repo.BlobObject(e.Hash)
	if err != nil {
		return nil, fmt.Errorf("reading %s from base commit: %w", name, err)
	}
	rd, err := blob.Reader()
	if err != nil {
		return nil, fmt.Errorf("reading %s from base commit: %w", name, err)
	}
	defer rd.Close()
	v := &fileVersion{path: name, mode: e.Mode, hash: e.Hash, size: blob.Size}
	if v.content, v.whole, err = readHead(rd, blob.Size, b.opts.MaxFileBytes); err != nil {
		return nil, fmt.Errorf("reading %s from base commit: %w", name, err)
	}
	return v, nil
}

// readHead reads all of r if size is at most max, else its first binarySniff
// bytes. whole reports which.
func readHead(r io.Reader, size, max int64) (content []byte, whole bool, err error) {
	if size <= max {
		content, err = io.ReadAll(io.LimitReader(r, max+1))
		if err != nil {
			return nil, false, err
		}
		if int64(len(content)) <= max {
			return content, true, nil
		}
		return content[:min(len(content), binarySniff)], false, nil // bigger than it said
	}
	content = make([]byte, binarySniff)
	n, err := io.ReadFull(r, content)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, false, err
	}
	return content[:n], false, nil
}

// diskSide reads name from the working tree through root: never through a
// symlink (a symlink is its target text, as git stores it) and never outside
// the workspace. from is the base side, which decides whether a large file
// must be hashed (streaming) to tell if it changed.
func (b *patchBuilder) diskSide(root *os.Root, name string, from *fileVersion) (*fileVersion, error) {
	// As for git, a path with a symlink (or a file) as a leading directory
	// does not exist in the working tree.
	comps := strings.Split(name, "/")
	for i := 1; i < len(comps); i++ {
		fi, err := root.Lstat(path.Join(comps[:i]...))
		if err != nil || !fi.IsDir() {
			return nil, nil //nolint:nilerr // a component that is gone or not a directory has nothing to read
		}
	}
	fi, err := root.Lstat(name)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	switch {
	case fi.Mode()&fs.ModeSymlink != 0:
		t, err := root.Readlink(name)
		if err != nil {
			return nil, fmt.Errorf("reading symlink %s: %w", name, err)
		}
		return &fileVersion{path: name, mode: filemode.Symlink, hash: plumbing.ComputeHash(plumbing.BlobObject, []byte(t)),
			size: int64(len(t)), content: []byte(t), whole: true}, nil
	case fi.Mode().IsRegular():
		return b.readFile(root, name, fi, from)
	default:
		return nil, nil // directories (submodules), sockets, FIFOs: not part of a patch
	}
}

func (b *patchBuilder) readFile(root *os.Root, name string, fi fs.FileInfo, from *fileVersion) (*fileVersion, error) {
	// O_NONBLOCK: a FIFO swapped in since the Lstat must not block the open.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	defer f.Close()
	ofi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if !os.SameFile(fi, ofi) || !ofi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s changed while the patch was being built", name)
	}
	v := &fileVersion{path: name, mode: modeOf(fi), size: ofi.Size()}
	if v.content, v.whole, err = readHead(f, v.size, b.opts.MaxFileBytes); err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if v.whole {
		v.size = int64(len(v.content))
		v.hash = plumbing.ComputeHash(plumbing.BlobObject, v.content)
		return v, nil
	}
	// A large file is hashed only when that decides something: whether it
	// changed at all (same size as the base), or the index line of a binary.
	if (from != nil && from.size == v.size) || isBinary(v.content) {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		h := plumbing.NewHasher(plumbing.BlobObject, v.size)
		if n, err := io.CopyN(h, f, v.size); err != nil || n != v.size {
			return nil, fmt.Errorf("%s changed while the patch was being built", name)
		}
		v.hash = h.Sum()
	}
	return v, nil
}

// add appends the change from one side to the other, or lists it as omitted.
func (b *patchBuilder) add(from, to *fileVersion) error {
	if from == nil && to == nil {
		return nil
	}
	sameContent := from != nil && to != nil && !to.hash.IsZero() && from.hash == to.hash
	if sameContent && from.mode == to.mode {
		return nil
	}
	fp := filePatch{from: from, to: to}
	if from != nil {
		fp.binary = isBinary(from.content)
	}
	if to != nil {
		fp.binary = fp.binary || isBinary(to.content)
	}
	switch {
	case sameContent || fp.binary:
		// A mode change alone, or "Binary files differ": no content needed.
	case (from != nil && !from.whole) || (to != nil && !to.whole):
		b.omit(from, to, fmt.Sprintf("text file over the %s per-file limit", byteSize(b.opts.MaxFileBytes)))
		return nil
	default:
		var a, c []byte
		if from != nil {
			a = from.content
		}
		if to != nil {
			c = to.content
		}
		fp.chunks = lineChunks(a, c)
	}
	b.one.Reset()
	if err := fdiff.NewUnifiedEncoder(&b.one, fdiff.DefaultContextLines).Encode(patch{files: []fdiff.FilePatch{fp}}); err != nil {
		return fmt.Errorf("encoding patch: %w", err)
	}
	if int64(b.out.Len()+b.one.Len()) > b.opts.MaxPatchBytes {
		b.omit(from, to, fmt.Sprintf("its diff would take the patch over its %s limit", byteSize(b.opts.MaxPatchBytes)))
		return nil
	}
	b.out.Write(b.one.Bytes())
	b.stats = append(b.stats, fp.stat())
	return nil
}

func (b *patchBuilder) omit(from, to *fileVersion, reason string) {
	v := to
	if v == nil {
		v = from
	}
	b.omitted = append(b.omitted, OmittedFile{Path: v.path, Size: v.size, Reason: reason})
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d bytes", n)
}
