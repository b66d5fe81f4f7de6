package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/weirhq/weir/client"
)

// defaultServer is the node's client port when neither --server nor $WEIR_SERVER says.
const defaultServer = "127.0.0.1:7420"

// globalFlags takes the flags given before the command (only --server) off args.
func globalFlags(args []string) (rest []string, server string, err error) {
	for len(args) > 0 {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		if !strings.HasPrefix(args[0], "-") || name != "server" {
			break
		}
		args = args[1:]
		if !hasValue {
			if len(args) == 0 {
				return nil, "", fmt.Errorf("%w: flag needs an argument: --server", errUsage)
			}
			value, args = args[0], args[1:]
		}
		if value == "" {
			return nil, "", fmt.Errorf("%w: --server: empty address", errUsage)
		}
		server = value
	}
	if len(args) == 0 {
		return nil, "", fmt.Errorf("%w: no command after the global flags", errUsage)
	}
	return args, server, nil
}

// serverFlag registers --server on a client command's flags; its default is the global
// --server, else $WEIR_SERVER, else 127.0.0.1:7420.
func serverFlag(fs *flag.FlagSet, env cli) *string {
	def := env.server
	if def == "" && env.getenv != nil {
		def = env.getenv("WEIR_SERVER")
	}
	if def == "" {
		def = defaultServer
	}
	return fs.String("server", def, "node client port HOST:PORT (or $WEIR_SERVER)")
}

// connect dials the node for a client command.
func connect(server string) (*client.Client, error) {
	if server == "" {
		return nil, fmt.Errorf("%w: --server: empty address", errUsage)
	}
	c, err := client.Dial(server)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the node at %s (--server or $WEIR_SERVER): %w", server, err)
	}
	return c, nil
}
