// Package web holds the tracking page query-api serves at / (plain HTML, CSS and JavaScript,
// embedded in the binary: no build step, no external fonts or scripts, works offline).
package web

import "embed"

// Static is the page's files, at the root of the FS under static/.
//
//go:embed static
var Static embed.FS
