// Command kubectl-agentry is the `kubectl agentry` plugin: put it on the PATH.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/agentry-dev/agentry/plugin"
)

func main() {
	if err := plugin.Run(context.Background(), os.Stdout, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "error:", err)
		os.Exit(1)
	}
}
