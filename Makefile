# onebox: `make test` is the one command that runs every test: lint, unit
# tests (real processes, real MariaDB) and the docker-compose suite.
GO      ?= go
BIN     ?= bin
LDFLAGS ?= -s -w

.PHONY: build test lint unit integration images docs bench up down

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/onebox ./cmd/onebox
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/guestbook ./examples/guestbook

test: lint unit integration

lint:
	@out=$$(gofmt -l $$(find . -name '*.go' -not -path './vendor/*' -not -path './build/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags integration ./...
	cd deploy && $(GO) vet ./...

unit:
	$(GO) test -race -count=1 -timeout 20m ./...
	cd deploy && $(GO) test -count=1 ./...

# The docker-compose suite builds the local images it needs first (no
# registry is needed, see images/).
integration: images
	$(GO) test -tags integration -count=1 -timeout 45m ./docker/... ./integration/...

images:
	./images/build.sh

# The README's first command: the guestbook stack up on http://localhost:8080
# with whichever compose tool exists, pulling where a registry answers and
# otherwise from local images and an offline build context (images/up.sh).
up:
	./images/up.sh

down:
	./images/down.sh

# docs/environment.md is `onebox env`; a unit test fails when it is stale.
docs:
	$(GO) run ./cmd/onebox env > docs/environment.md
