# The two commands of the README: `make run` starts the service on its
# embedded default, `make test` runs every test. Both install what they need.

GO       ?= go
# The linter, pinned; `go run` fetches it from the module proxy once.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
FUZZTIME ?= 1000000x
ARGS     ?=

.PHONY: run test build vet fuzz sdk-test browser-deps bench bench-quick redis-deps clean

# The demo shop is on: a new user opens http://127.0.0.1:8080/demo/ and sees
# their own interests move.
run:
	$(GO) run ./cmd/affinity serve --demo $(ARGS)

build:
	$(GO) build -o bin/affinity ./cmd/affinity

test: vet redis-deps
	$(GO) test -count=1 ./...
	$(MAKE) fuzz
	$(MAKE) sdk-test

vet:
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './sdk-js/*')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Short fuzz runs of every parser and codec, on top of their seed corpora
# (which `go test` above already runs): the wire formats for FUZZTIME, the
# rest for FUZZTIME_REST — a few seconds each here. The budgets count
# executions, not time: Go 1.26's coordinator can fail a clean run with
# "context deadline exceeded" when a wall-clock -fuzztime ends on a loaded
# machine (golang/go#75804, fixed in Go 1.27). For a longer hunt:
# FUZZTIME=5m FUZZTIME_REST=5m (a real finding writes testdata/fuzz/...).
FUZZTIME_REST ?= 100000x
FUZZ_WIRE = ./tracker/event:FuzzDecodeBatch ./tracker/event:FuzzDecodeRecord ./tracker/event:FuzzSegmentDecode
FUZZ_REST = ./profile:FuzzDecodeProfile ./profile/segment:FuzzParse \
	./profile/catalog:FuzzParseNDJSON ./profile/catalog:FuzzParseCSV ./profile/catalog:FuzzParseYML \
	./profile/catalog:FuzzDecodeProduct ./profile/query:FuzzDecodeCursor ./profile/builder:FuzzDecodeSeen \
	./storage/state:FuzzSplitVisitorValue ./storage:FuzzDecodeRecordValue \
	./profile/membership:FuzzDecodeValues ./profile/membership:FuzzParseChangeJSON ./profile:FuzzPartialDecode ./profile/query:FuzzJSONToCSV \
	./internal/duration:FuzzParse ./internal/codec:FuzzReader \
	./profile/importer:FuzzParseNDJSON ./profile/importer:FuzzParseCSV ./profile/importer:FuzzDecodeID \
	./profile/people:FuzzParseID \
	./profile/lists:FuzzParseCSV ./profile/lists:FuzzParseNDJSON ./profile/lists:FuzzDecodeHead \
	./profile/campaign:FuzzParseToken ./profile/campaign:FuzzDecodeEngagement \
	./profile/campaign:FuzzDecodeCampaignRecord ./profile/campaign:FuzzSumCounterRows ./profile/campaign:FuzzRecordHead \
	./profile/cluster:FuzzDecodeMeta ./profile/query:FuzzParsePartitions ./profile/query:FuzzMergeStreams ./profile/query:FuzzDecodeEmailJoin ./profile/query:FuzzDecodeFeedCursor ./profile/query:FuzzDecodeHandedMarks ./profile/query:FuzzCSVRowEmail \
	./profile/defs:FuzzDecodeRecord ./profile/defs:FuzzErasedBody
fuzz:
	@set -e; for t in $(FUZZ_WIRE); do \
		echo "fuzz $$t for $(FUZZTIME)"; $(GO) test -run='^$$' -fuzz="^$${t#*:}\$$" -fuzztime=$(FUZZTIME) $${t%%:*}; done; \
	for t in $(FUZZ_REST); do \
		echo "fuzz $$t for $(FUZZTIME_REST)"; $(GO) test -run='^$$' -fuzz="^$${t#*:}\$$" -fuzztime=$(FUZZTIME_REST) $${t%%:*}; done

# The snippet: unit tests in Node, then the browser tests (headless Chromium
# against the real binary; they need `go` and dist/sdk.js from the build).
sdk-test: browser-deps
	cd sdk-js && npm ci --no-audit --no-fund && npm run build && npm test && npm run test:server && npm run test:browser

# Debian's Chromium for the browser tests, installed only when missing.
browser-deps:
	@if [ ! -x /usr/bin/chromium ]; then \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing chromium (apt-get)"; \
		$$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi

# The benchmarks (bench/): every scenario with its peers, interleaved in one
# run; tables on stdout, JSON in bench-report.json, SVG charts beside it.
# ARGS="--scenario ingest --rounds 9" etc.; bench-quick is the smoke run.
bench: redis-deps
	$(GO) run ./bench/cmd/affinity-bench $(ARGS)

bench-quick: redis-deps
	$(GO) run ./bench/cmd/affinity-bench --quick $(ARGS)

# Debian's redis-server for the build scenario's peer, installed only when missing.
redis-deps:
	@if ! command -v redis-server >/dev/null; then \
		sudo=; [ "$$(id -u)" = 0 ] || sudo=sudo; \
		echo "installing redis-server (apt-get)"; \
		$$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server; \
	fi

clean:
	rm -rf bin sdk-js/node_modules sdk-js/dist
