package tools

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/agentry-dev/agentry/runner/workspace"
)

// ReadFile returns a file's lines with line numbers, a window at a time.
type ReadFile struct {
	typed[readArgs]
	WS *workspace.Root
	// MaxLines is the default and maximum window; 0 means 2000.
	MaxLines int
	// MaxLineBytes shortens longer lines; 0 means 2000.
	MaxLineBytes int
	// MaxBytes bounds the output; 0 means 100 KiB.
	MaxBytes int
}

func (*ReadFile) Name() string { return "read_file" }
func (*ReadFile) Kind() Kind   { return KindRead }

func (t *ReadFile) Describe(args json.RawMessage) string { return describeArg(args, "path") }

type readArgs struct {
	Path   string `json:"path" jsonschema:"File path relative to the workspace root"`
	Offset int    `json:"offset,omitempty" jsonschema:"First line to return (1-based). Default 1"`
	Limit  int    `json:"limit,omitempty" jsonschema:"Maximum number of lines to return. Default 2000"`
}

func (readArgs) bounds() bounds     { return bounds{"offset": {min: 1}, "limit": {min: 1}} }
func (a *readArgs) missing() string { return missing("path", a.Path) }

func (*ReadFile) Description() string { return doc("read_file") }

func (t *ReadFile) Execute(_ context.Context, raw json.RawMessage) (string, error) {
	a, err := parse[readArgs](t, raw)
	if err != nil {
		return "", err
	}
	maxLines := or(t.MaxLines, 2000)
	maxLineBytes := or(t.MaxLineBytes, 2000)
	maxBytes := or(t.MaxBytes, 100<<10)
	if a.Offset < 1 {
		a.Offset = 1
	}
	if a.Limit < 1 || a.Limit > maxLines {
		a.Limit = maxLines
	}
	f, rel, err := t.WS.Open(a.Path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("%s: %w", rel, err)
	}
	if fi.IsDir() {
		return "", fmt.Errorf("%s is a directory; use list_dir to see its entries", rel)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s is not a regular file", rel)
	}
	br := bufio.NewReaderSize(f, 64<<10)
	head, _ := br.Peek(8 << 10)
	if bytes.IndexByte(head, 0) >= 0 {
		return "", fmt.Errorf("%s is a binary file (%d bytes); read_file only returns text. Use bash (e.g. `file %s` or `xxd %s | head`) to inspect it", rel, fi.Size(), rel, rel)
	}
	if fi.Size() == 0 {
		return fmt.Sprintf("(%s is empty)", rel), nil
	}

	var out strings.Builder
	line, shown, last := 0, 0, 0
	full := true
	for {
		text, long, err := readLine(br, maxLineBytes)
		if errors.Is(err, io.EOF) && text == nil {
			break
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return "", fmt.Errorf("reading %s: %w", rel, err)
		}
		line++
		if line >= a.Offset && shown < a.Limit && full {
			entry := fmt.Sprintf("%6d\t%s", line, text)
			if long > 0 {
				entry += fmt.Sprintf("… [line truncated: %d more bytes]", long)
			}
			if out.Len()+len(entry)+1 > maxBytes {
				full = false
			} else {
				out.WriteString(entry)
				out.WriteByte('\n')
				shown++
				last = line
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
	}
	if a.Offset > line {
		return "", fmt.Errorf("offset %d is past the end of %s, which has %d lines", a.Offset, rel, line)
	}
	if shown < line-a.Offset+1 {
		fmt.Fprintf(&out, "[showing lines %d-%d of %d; call read_file with offset=%d to continue]\n", a.Offset, last, line, last+1)
	}
	return out.String(), nil
}

// readLine returns the next line without its newline, cut (at a
// rune boundary) at limit bytes; long is the number of bytes dropped. Lines of any length are
// consumed without buffering them whole, so a 10 MB minified file costs
// nothing extra.
func readLine(br *bufio.Reader, limit int) (text []byte, long int, err error) {
	for {
		chunk, e := br.ReadSlice('\n')
		keep := len(chunk)
		if e == nil {
			keep-- // drop '\n'
		}
		if room := limit - len(text); room > 0 {
			text = append(text, chunk[:min(keep, room)]...)
			long += max(0, keep-room)
		} else {
			long += keep
		}
		switch {
		case e == nil:
			return finishLine(text, long), long, nil
		case errors.Is(e, bufio.ErrBufferFull):
			continue
		case e == io.EOF:
			if len(chunk) == 0 && text == nil {
				return nil, 0, io.EOF
			}
			return finishLine(text, long), long, io.EOF
		default:
			return nil, 0, e
		}
	}
}

func finishLine(text []byte, long int) []byte {
	text = bytes.TrimSuffix(text, []byte{'\r'})
	// A cut in the middle of a multi-byte rune leaves up to 3 stray bytes.
	for i := 0; long > 0 && i < 3 && len(text) > 0; i++ {
		if r, size := utf8.DecodeLastRune(text); r != utf8.RuneError || size != 1 {
			break
		}
		text = text[:len(text)-1]
	}
	if text == nil {
		text = []byte{}
	}
	return text
}

func or(v, def int) int {
	if v > 0 {
		return v
	}
	return def
}
