package cli

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/spf13/cobra"

	"github.com/agentry-dev/agentry/contract"
	"github.com/agentry-dev/agentry/runner/gitrepo"
)

// checkoutCommand clones the session's repository. In a pod it runs in the checkout init
// container, the only container that ever sees the git credentials.
func checkoutCommand(std IO, code *contract.ExitCode) *cobra.Command {
	var repo, ref, dir, credsDir string
	var cont continuationFlags
	cmd := &cobra.Command{
		Use:   contract.RunnerCmdCheckout + " --repo URL --dir DIR [--ref REF] [--credentials-dir DIR]",
		Short: "Clone a repository into a directory (the pod's checkout step)",
		Long: `Clone a repository into a directory and check out a branch, tag or commit, without a
git binary. The checkout is exactly the commit: symlinks keep their committed targets,
absolute ones included, so the workspace starts clean for git.

--credentials-dir holds the keys of a mounted Secret: username and password (a token) for
http(s), or ssh-privatekey and known_hosts for ssh. An ssh clone without known_hosts is
refused rather than trusting an unknown host key.

--continuation-from-gateway makes the checkout a follow-up session's: after the clone
(at --ref, the earlier session's base commit) it fetches the earlier session's archived
patch from the session gateway with the token in --token-file and applies it to the
working tree, exactly or not at all. Nothing is committed.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if repo == "" || dir == "" {
				*code = contract.ExitUsage
				return usagef("--repo and --dir are required")
			}
			auth, err := gitAuth(repo, credsDir)
			if err != nil {
				*code = contract.ExitUsage
				return err
			}
			commit, err := gitrepo.CloneWithAuth(cmd.Context(), repo, ref, dir, auth, std.Err)
			if err != nil {
				*code = contract.ExitError
				return err
			}
			fmt.Fprintf(std.Out, "checked out %s at %s into %s\n", repo, commit, dir)
			if cont.gateway == "" {
				return nil
			}
			if err := continueCheckout(cmd.Context(), std, cont, dir, commit); err != nil {
				*code = contract.ExitContinuationFailed
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&repo, contract.FlagCheckoutRepo, "", "repository URL or local directory")
	cmd.Flags().StringVar(&ref, contract.FlagRef, "", "branch, tag or commit (default: the remote's default branch)")
	cmd.Flags().StringVar(&dir, contract.FlagCheckoutDir, "", "directory to clone into (empty or absent)")
	cmd.Flags().StringVar(&credsDir, contract.FlagCheckoutCredentialsDir, "", "directory holding git credentials (a mounted Secret)")
	cmd.Flags().StringVar(&cont.gateway, contract.FlagCheckoutFromGateway, "", "apply the archived patch of the session this one continues, fetched from the session gateway at this URL")
	cmd.Flags().StringVar(&cont.tokenFile, contract.FlagCheckoutGatewayTokenFile, "", "with --continuation-from-gateway: the gateway token (the pod's projected token)")
	cmd.Flags().StringVar(&cont.caFile, contract.FlagGatewayCAFile, "", "with --continuation-from-gateway: trust only the CAs in this PEM bundle for the gateway")
	cmd.Flags().BoolVar(&cont.allowPlain, contract.FlagAllowPlainHTTPGateway, false, "with --continuation-from-gateway: accept an http:// gateway URL, sending the token unencrypted")
	return cmd
}

// gitAuth reads credentials for repo from dir.
func gitAuth(repo, dir string) (transport.AuthMethod, error) {
	if dir == "" {
		return nil, nil
	}
	read := func(name string) (string, bool) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", false
		}
		return strings.TrimRight(string(b), "\r\n"), true
	}
	isSSH := strings.HasPrefix(repo, "ssh://") || (!strings.Contains(repo, "://") && strings.Contains(repo, "@"))
	if isSSH {
		key, ok := read("ssh-privatekey")
		if !ok {
			return nil, errors.New("ssh repository: the credentials Secret has no ssh-privatekey key")
		}
		user := "git"
		if at := strings.Index(strings.TrimPrefix(repo, "ssh://"), "@"); at > 0 {
			user = strings.TrimPrefix(repo, "ssh://")[:at]
		}
		auth, err := gitssh.NewPublicKeys(user, []byte(key+"\n"), "")
		if err != nil {
			return nil, fmt.Errorf("ssh-privatekey: %w", err)
		}
		knownHosts := filepath.Join(dir, "known_hosts")
		if _, err := os.Stat(knownHosts); err != nil {
			return nil, errors.New("ssh repository: the credentials Secret has no known_hosts key; add the host's key so it can be verified")
		}
		cb, err := gitssh.NewKnownHostsCallback(knownHosts)
		if err != nil {
			return nil, fmt.Errorf("known_hosts: %w", err)
		}
		auth.HostKeyCallback = cb
		return auth, nil
	}
	if u, err := url.Parse(repo); err == nil && strings.EqualFold(u.Scheme, "http") && !isLoopback(u.Hostname()) {
		// The controller refuses such a session; this is the second line.
		return nil, errors.New("refusing to send credentials over plain http://: use an https:// repository URL")
	}
	password, ok := read("password")
	if !ok {
		return nil, errors.New("http repository: the credentials Secret has no password key (put a token there)")
	}
	user, ok := read("username")
	if !ok {
		user = "git" // most forges accept any user name with a token
	}
	return &githttp.BasicAuth{Username: user, Password: password}, nil
}

// isLoopback reports whether host is this machine (a local test server): traffic to it
// never leaves the pod's network namespace.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
