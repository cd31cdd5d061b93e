// Command scriptedllm serves a scripted OpenAI-compatible endpoint from a JSON
// file (an array of steps, see package scriptedllm), for trying the runner
// locally and for end-to-end tests that cannot embed the server.
//
//	scriptedllm --listen 127.0.0.1:8089 --script steps.json
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentry-dev/agentry/test/scriptedllm"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8089", "address to listen on")
	script := flag.String("script", "", "JSON file with an array of steps")
	key := flag.String("require-key", "", "answer 401 unless requests carry this bearer token")
	flag.Parse()
	var steps []scriptedllm.Step
	if *script != "" {
		b, err := os.ReadFile(*script)
		if err != nil {
			fmt.Fprintln(os.Stderr, "scriptedllm:", err)
			os.Exit(2)
		}
		if err := json.Unmarshal(b, &steps); err != nil {
			fmt.Fprintf(os.Stderr, "scriptedllm: parsing %s: %v\n", *script, err)
			os.Exit(2)
		}
	}
	s, err := scriptedllm.Listen(*listen, steps...)
	if err != nil {
		fmt.Fprintln(os.Stderr, "scriptedllm:", err)
		os.Exit(1)
	}
	if *key != "" {
		s.RequireKey(*key)
	}
	fmt.Println(s.URL)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
	<-ch
	s.Close()
}
