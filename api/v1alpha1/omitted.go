package v1alpha1

import (
	"unicode/utf8"

	"github.com/agentry-dev/agentry/contract"
)

// OmittedFilesFrom converts the runner's list of omitted files into status, within the
// field's bounds (at most contract.MaxOmittedInSummary entries, paths and reasons cut on a
// character boundary).
func OmittedFilesFrom(in []contract.OmittedFile) []OmittedFile {
	var out []OmittedFile
	for i, o := range in {
		if i == contract.MaxOmittedInSummary {
			break
		}
		out = append(out, OmittedFile{Path: cut(o.Path, 4096), SizeBytes: o.Size, Reason: cut(o.Reason, 256)})
	}
	return out
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
