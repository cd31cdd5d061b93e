package contract

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"
)

// MaxTerminationMessageBytes is the kubelet's limit for a container's
// termination message.
const MaxTerminationMessageBytes = 4096

// Object points at an artifact in storage; bulky data never goes in status or
// in the termination message, only this pointer.
type Object struct {
	URI       string `json:"uri"`
	SizeBytes int64  `json:"sizeBytes"`
	SHA256    string `json:"sha256,omitempty"`
}

// Summary is the runner's termination message: what the controller and the
// gateway need to complete status without reading the transcript.
type Summary struct {
	Version    int       `json:"v"`
	Outcome    Outcome   `json:"outcome"`
	ExitCode   ExitCode  `json:"exitCode"`
	Message    string    `json:"message,omitempty"` // the model's final answer, or the error
	Turns      int       `json:"turns"`
	ToolCalls  int       `json:"toolCalls"`
	Usage      Usage     `json:"usage"`
	Diff       DiffStats `json:"diff"`
	BaseCommit string    `json:"baseCommit,omitempty"`
	Model      string    `json:"model,omitempty"`
	Events     int64     `json:"events"`
	Transcript *Object   `json:"transcript,omitempty"`
	Patch      *Object   `json:"patch,omitempty"`
}

// Encode marshals the summary, shortening Message (and, if pointers alone are
// too big, dropping them) so the result always fits the termination-message
// limit. The rest of the fields are bounded in size by construction.
func (s Summary) Encode() ([]byte, error) {
	s.Version = SchemaVersion
	if len(s.Diff.Omitted) > MaxOmittedInSummary {
		s.Diff.Omitted = s.Diff.Omitted[:MaxOmittedInSummary]
	}
	b, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("encoding summary: %w", err)
	}
	if len(b) <= MaxTerminationMessageBytes {
		return b, nil
	}
	// JSON escaping makes the encoded size of a message hard to predict
	// (a control character takes six bytes), so search for the longest
	// prefix that fits.
	msg := s.Message
	fits := func(n int) ([]byte, bool) {
		s.Message = ""
		if n > 0 {
			s.Message = TruncateUTF8(msg, n) + " […]"
		}
		out, err := json.Marshal(s)
		return out, err == nil && len(out) <= MaxTerminationMessageBytes
	}
	lo, hi := 0, len(msg)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if _, ok := fits(mid); ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	b, _ = fits(lo)
	if len(b) > MaxTerminationMessageBytes {
		s.Transcript, s.Patch = nil, nil
		if b, err = json.Marshal(s); err != nil {
			return nil, fmt.Errorf("encoding summary: %w", err)
		}
	}
	return b, nil
}

// TruncateUTF8 cuts s to at most n bytes without splitting a character.
func TruncateUTF8(s string, n int) string {
	if n >= len(s) {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
