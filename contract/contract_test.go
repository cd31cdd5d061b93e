package contract_test

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/agentry-dev/agentry/contract"
)

func TestOutcomesMapToDistinctExitCodes(t *testing.T) {
	want := map[contract.Outcome]contract.ExitCode{
		contract.OutcomeCompleted:      0,
		contract.OutcomeError:          1,
		contract.OutcomeMaxTurns:       3,
		contract.OutcomeBudgetExceeded: 4,
		contract.OutcomeCancelled:      5,
		contract.OutcomeTimeout:        6,
		contract.OutcomeModelError:     7,
		contract.OutcomeSetupFailed:    8,
	}
	for o, code := range want {
		if got := o.ExitCode(); got != code {
			t.Errorf("%s.ExitCode() = %d, want %d (the numbers are a published contract)", o, got, code)
		}
		if back, ok := contract.OutcomeForExitCode(code); !ok || back != o {
			t.Errorf("OutcomeForExitCode(%d) = %s, %v", code, back, ok)
		}
	}
	if contract.Outcome("Bogus").ExitCode() != contract.ExitError {
		t.Error("unknown outcomes must not exit 0")
	}
	if _, ok := contract.OutcomeForExitCode(contract.ExitUsage); ok {
		t.Error("ExitUsage is not a session outcome")
	}
}

func TestSummaryAlwaysFitsTheTerminationMessage(t *testing.T) {
	obj := &contract.Object{URI: "s3://bucket/team-a/fix-flaky-test/transcript.jsonl", SizeBytes: 123456, SHA256: strings.Repeat("a", 64)}
	cases := map[string]string{
		"short":          "done",
		"long ascii":     strings.Repeat("x", 20000),
		"escape heavy":   strings.Repeat("\"\n\t\\<>&\x01", 3000),
		"multi-byte":     strings.Repeat("日本語の要約。", 2000),
		"exactly around": strings.Repeat("y", 3500),
	}
	for name, msg := range cases {
		t.Run(name, func(t *testing.T) {
			s := contract.Summary{Outcome: contract.OutcomeCompleted, Message: msg, Transcript: obj, Patch: obj, Model: "gpt-4.1", BaseCommit: strings.Repeat("b", 40)}
			b, err := s.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > contract.MaxTerminationMessageBytes {
				t.Fatalf("%d bytes > %d", len(b), contract.MaxTerminationMessageBytes)
			}
			var back contract.Summary
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatalf("not valid JSON: %v", err)
			}
			if back.Transcript == nil || back.Version != contract.SchemaVersion {
				t.Errorf("pointers and version must survive truncation: %+v", back)
			}
			if len(msg) < 1000 && back.Message != msg {
				t.Errorf("short message changed: %q", back.Message)
			}
			if len(b) < 3000 && len(msg) > 4096 {
				t.Errorf("message truncated more than needed: %d bytes", len(b))
			}
		})
	}
}
