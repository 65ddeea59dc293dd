//go:build integration

package integration

import (
	"testing"

	"onebox/internal/browsertest"
)

// pageInChromium drives the guestbook page of a running stack in headless
// Chromium: sign, see it listed, reload, and see the page's error for a
// message of only spaces.
func pageInChromium(t *testing.T, s *stack) {
	browsertest.GuestbookCheck(t, s.base)
}
