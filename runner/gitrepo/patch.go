package gitrepo

import (
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	fdiff "github.com/go-git/go-git/v5/plumbing/format/diff"
	"github.com/go-git/go-git/v5/utils/diff"
	"github.com/sergi/go-diff/diffmatchpatch"
)

// fileVersion is one side of a file change; it implements fdiff.File.
type fileVersion struct {
	path    string
	mode    filemode.FileMode
	hash    plumbing.Hash
	content []byte
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

func isBinary(b []byte) bool { return bytes.IndexByte(b[:min(len(b), 8000)], 0) >= 0 }

func newFilePatch(from, to *fileVersion) filePatch {
	fp := filePatch{from: from, to: to}
	var a, b []byte
	if from != nil {
		a = from.content
	}
	if to != nil {
		b = to.content
	}
	if isBinary(a) || isBinary(b) {
		fp.binary = true
		return fp
	}
	for _, d := range diff.Do(string(a), string(b)) {
		var op fdiff.Operation
		switch d.Type {
		case diffmatchpatch.DiffEqual:
			op = fdiff.Equal
		case diffmatchpatch.DiffInsert:
			op = fdiff.Add
		case diffmatchpatch.DiffDelete:
			op = fdiff.Delete
		}
		fp.chunks = append(fp.chunks, chunk{content: d.Text, op: op})
	}
	return fp
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

func encode(w io.Writer, fps []filePatch) error {
	p := patch{}
	for _, fp := range fps {
		p.files = append(p.files, fp)
	}
	if err := fdiff.NewUnifiedEncoder(w, fdiff.DefaultContextLines).Encode(p); err != nil {
		return fmt.Errorf("encoding patch: %w", err)
	}
	return nil
}
