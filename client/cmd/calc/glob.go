package main

import (
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// expressionChars are the characters of calc's expressions: a word of the
// command line with any other character cannot be one.
const expressionChars = "0123456789.+-*/%^() \t\n\r"

// maxNamesShown is how many of the file names globMessage lists.
const maxNamesShown = 8

// globMessage returns what to tell a user whose expression, the words of
// the command line, failed with err because the shell expanded an unquoted
// * into file names; or "" if it did not. It decides so when the server
// refused the expression (INVALID_ARGUMENT, or RESOURCE_EXHAUSTED for a
// long list of names) and a word that cannot be part of an expression
// names an entry of the current directory that * would match: no path
// separator and no leading dot.
func globMessage(words []string, err error) string {
	if c := status.Code(err); c != codes.InvalidArgument && c != codes.ResourceExhausted {
		return ""
	}
	var names, typed []string
	inRun := false
	for _, w := range words {
		if !fileName(w) {
			typed = append(typed, w)
			inRun = false
			continue
		}
		names = append(names, w)
		if !inRun {
			typed = append(typed, "*")
			inRun = true
		}
	}
	if len(names) == 0 {
		return ""
	}
	if len(names) > maxNamesShown {
		names = append(names[:maxNamesShown:maxNamesShown], fmt.Sprintf("and %d more", len(names)-maxNamesShown))
	}
	return fmt.Sprintf("the shell expanded * into file names (%s); quote the expression: calc '%s'", strings.Join(names, " "), strings.Join(typed, " "))
}

// fileName reports whether w, a word of the command line, is not part of
// an expression but the name of an entry of the current directory that the
// shell could have put in place of a *.
func fileName(w string) bool {
	if strings.Trim(w, expressionChars) == "" {
		return false // made of expression characters only, as 3 or 2.5 are
	}
	if strings.HasPrefix(w, ".") || strings.ContainsRune(w, '/') || strings.ContainsRune(w, os.PathSeparator) {
		return false
	}
	_, err := os.Lstat(w)
	return err == nil
}
