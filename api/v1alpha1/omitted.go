package v1alpha1

import "github.com/agentry-dev/agentry/contract"

// OmittedFilesFrom converts the runner's list of omitted files into status, within the
// field's bounds (at most contract.MaxOmittedInSummary entries, paths and reasons cut on a
// character boundary).
func OmittedFilesFrom(in []contract.OmittedFile) []OmittedFile {
	var out []OmittedFile
	for i, o := range in {
		if i == contract.MaxOmittedInSummary {
			break
		}
		out = append(out, OmittedFile{Path: contract.TruncateUTF8(o.Path, 4096), SizeBytes: o.Size, Reason: contract.TruncateUTF8(o.Reason, 256)})
	}
	return out
}
