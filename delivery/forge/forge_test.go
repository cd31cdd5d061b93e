package forge

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseRepo(t *testing.T) {
	cases := map[string]struct {
		provider, repo string
		want           Repo
		wantErr        bool
	}{
		"github":               {provider: "https://github.com", repo: "https://github.com/o/r.git", want: Repo{"o", "r"}},
		"no .git":              {provider: "https://github.com/", repo: "https://github.com/o/r", want: Repo{"o", "r"}},
		"default port":         {provider: "https://gitea.example.com", repo: "https://gitea.example.com:443/o/r", want: Repo{"o", "r"}},
		"host case":            {provider: "https://Gitea.example.com", repo: "https://gitea.example.com/o/r", want: Repo{"o", "r"}},
		"sub-path":             {provider: "https://example.com/git", repo: "https://example.com/git/o/r.git", want: Repo{"o", "r"}},
		"plain http":           {provider: "http://127.0.0.1:3000", repo: "http://127.0.0.1:3000/o/r.git", want: Repo{"o", "r"}},
		"other host":           {provider: "https://github.com", repo: "https://gitlab.com/o/r", wantErr: true},
		"other port":           {provider: "http://127.0.0.1:3000", repo: "http://127.0.0.1:3001/o/r", wantErr: true},
		"other scheme":         {provider: "https://github.com", repo: "http://github.com/o/r", wantErr: true},
		"lookalike host":       {provider: "https://github.com", repo: "https://github.com.evil.example/o/r", wantErr: true},
		"too deep":             {provider: "https://github.com", repo: "https://github.com/o/r/tree/main", wantErr: true},
		"owner only":           {provider: "https://github.com", repo: "https://github.com/o", wantErr: true},
		"dot-dot":              {provider: "https://github.com", repo: "https://github.com/o/..", wantErr: true},
		"escaped slash":        {provider: "https://github.com", repo: "https://github.com/o/a%2F..%2Fb", wantErr: true},
		"outside the sub-path": {provider: "https://example.com/git", repo: "https://example.com/o/r", wantErr: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			got, err := ParseRepo(tc.provider, tc.repo)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseRepo(%q, %q) = %v, %v; want error %v", tc.provider, tc.repo, got, err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
