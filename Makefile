# Everything a fresh machine needs, with only python3, git and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= samples/01-sgx-xcr0-abi.mbox

.PHONY: demo test lint bench fuzz clean kvm-index

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	@echo "== kvm-review review $(DEMO) (text)"
	@$(BIN)/kvm-review review $(DEMO) --fail-on never
	@echo
	@echo "== the replies it would send (--format email)"
	@$(BIN)/kvm-review review $(DEMO) --format email --fail-on never

lint: $(STAMP)
	$(BIN)/ruff check reviewer tests bench

test: lint
	$(BIN)/kvm-review rules test
	$(BIN)/pytest -q -p no:cacheprovider

bench: $(STAMP)
	$(BIN)/python bench/run.py
	$(BIN)/python bench/webbench.py
	@if command -v public-inbox-httpd >/dev/null; then $(BIN)/python bench/run.py --bot; \
	else echo "bench: bot triage not measured: it needs public-inbox (apt-get install public-inbox)"; fi

fuzz: $(STAMP)
	KVM_REVIEW_FUZZ_EXAMPLES=200000 $(BIN)/pytest -q -p no:cacheprovider tests/test_fuzz.py

# the shipped call-graph index, from Debian's linux-source-6.12 (installed when root)
kvm-index: $(STAMP)
	$(BIN)/python -m reviewer.kvm.generate

clean:
	rm -rf $(VENV) build *.egg-info
