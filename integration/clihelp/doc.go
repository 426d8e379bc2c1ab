// Package clihelp holds the test that every program of the repository, and
// every subcommand of each, answers --help with usage and exit status 0.
package clihelp
