package main

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
)

// runList is calc list [SERVICE]: the server's services, or SERVICE's
// methods as SERVICE.Method, sorted, one a line (with --json, one JSON
// array), as grpcurl list prints them.
func runList(ctx context.Context, s *session, args []string) int {
	rc, err := newReflectionClient(ctx, s.conn)
	if err != nil {
		return s.fail(err)
	}
	defer rc.close()
	var names []string
	if len(args) == 0 {
		names, err = rc.services()
	} else {
		names, err = methodNames(rc, args[0])
	}
	if err != nil {
		return s.fail(err)
	}
	if s.cfg.json {
		_ = json.NewEncoder(s.stdout).Encode(append([]string{}, names...))
		return exitOK
	}
	for _, n := range names {
		fmt.Fprintln(s.stdout, n)
	}
	return exitOK
}

// methodNames returns the full names of the methods of the service named
// service, sorted.
func methodNames(rc *reflectionClient, service string) ([]string, error) {
	sd, err := rc.service(service)
	if err != nil {
		return nil, err
	}
	var names []string
	for i := range sd.Methods().Len() {
		names = append(names, string(sd.Methods().Get(i).FullName()))
	}
	sort.Strings(names)
	return names, nil
}
