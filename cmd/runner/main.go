// Command runner runs one Agentry agent session: inside a session's pod, or
// locally with `runner run --repo DIR --task "..."`. See docs/runner.md.
package main

import (
	"os"

	"github.com/agentry-dev/agentry/runner/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
