# The two commands of the README: `make run` starts the service on its
# embedded default, `make test` runs every test. Both install what they need.

GO       ?= go
FUZZTIME ?= 10s
ARGS     ?=

.PHONY: run test build vet fuzz sdk-test clean

run:
	$(GO) run ./cmd/affinity serve $(ARGS)

build:
	$(GO) build -o bin/affinity ./cmd/affinity

test: vet
	$(GO) test -count=1 ./...
	$(MAKE) fuzz
	$(MAKE) sdk-test

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './sdk-js/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./...

# Short fuzz runs of every parser and codec, on top of their seed corpora
# (which `go test` above already runs). FUZZTIME=5m for a longer hunt.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeBatch$$' -fuzztime=$(FUZZTIME) ./tracker/event
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeRecord$$' -fuzztime=$(FUZZTIME) ./tracker/event
	$(GO) test -run='^$$' -fuzz='^FuzzDecodeProfile$$' -fuzztime=$(FUZZTIME) ./profile

sdk-test:
	cd sdk-js && npm ci --no-audit --no-fund && npm run build && npm test

clean:
	rm -rf bin sdk-js/node_modules sdk-js/dist
