// Package config holds the small vocabulary every component's Config shares:
// validation problems that name the variable, byte sizes written as nginx
// writes them ("1m"), and secrets that print masked.
//
// Components own their Config structs (env tags and defaults live there);
// cmd/onebox composes them and is the only reader of the environment.
package config
