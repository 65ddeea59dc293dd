# onebox: build, test, lint. `make test` is the one command that runs every test.
GO      ?= go
BIN     ?= bin
LDFLAGS ?= -s -w

.PHONY: build test unit lint

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/onebox ./cmd/onebox

test: lint unit

unit:
	$(GO) test -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
